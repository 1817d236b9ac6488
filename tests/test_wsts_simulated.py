"""The built-in WSTS-layout set (issue 19, deliverable 4): simulator fires written once into the
cache as published WildfireSpreadTS GeoTIFFs, read back by the same reader as the real files.
The set is real files on disk, the reader the project's; the simulator's state to compare band 22
with is re-simulated from the settings (the writer keeps none)."""
from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from conftest import compose_config, one_line_error, run_module
from emberformer.data import simulator
from emberformer.data.wsts import layout
from emberformer.data.wsts.datamodule import WSTSDataModule
from emberformer.data.wsts.folds import FOLDS, YEARS
from emberformer.data.wsts.on_device import finish
from emberformer.data.wsts.simulated import (SETTINGS_FILE, SimulatedSettings, ensure_simulated, simulate_fire,
                                             year_world)

TINY = {"fires_per_year": 2, "min_size": 16, "max_size": 26, "min_days": 6, "max_days": 7,
        "steps_per_day": 1, "seed": 3}


@pytest.fixture(scope="module")
def sim_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("wsts_sim_cache")


@pytest.fixture(scope="module")
def sim_root(sim_cache) -> Path:
    return ensure_simulated(sim_cache, TINY, progress=False)


def read_fires(root: Path) -> dict[tuple[int, str], tuple[list[Path], np.ndarray]]:
    """Every fire through the reader's own listing and day reader: raw days [T, 23, H, W]."""
    assert layout.detect_format(root, "auto") == "tif"
    return {(src.year, src.name): (list(src.files), np.stack([layout.read_tif_day(p) for p in src.files]))
            for src in layout.list_fires(root, YEARS, "tif")}


def resimulated() -> dict[tuple[int, str], tuple[simulator.World, object]]:
    s = SimulatedSettings.checked(TINY)
    out = {}
    with simulator.isolated_torch():
        for year in YEARS:
            w = year_world(s, year)
            for k in range(1, s.fires_per_year + 1):
                fire = simulate_fire(s, w, year, k)
                out[year, fire.name] = (w, fire)
    return out


def test_the_set_is_the_published_tif_layout_read_by_the_reader(sim_root):
    fires = read_fires(sim_root)
    assert sorted({y for y, _ in fires}) == list(YEARS)
    assert len(fires) == len(YEARS) * TINY["fires_per_year"]
    sizes = set()
    for (year, name), (files, days) in fires.items():
        assert TINY["min_days"] <= len(files) <= TINY["max_days"]
        first = date.fromisoformat(files[0].stem)
        assert first.year == year
        assert [p.stem for p in files] == [(first + timedelta(days=i)).isoformat() for i in range(len(files))]
        with tifffile.TiffFile(files[0]) as tif:  # stored as published: 23 float32 bands
            assert tif.series[0].dtype == np.float32 and tif.series[0].shape[0] == 23
        assert days.dtype == np.float32 and days.shape[1] == 23
        h, w = days.shape[2:]
        assert TINY["min_size"] <= h <= TINY["max_size"] and TINY["min_size"] <= w <= TINY["max_size"]
        sizes.add((h, w))
        assert not np.isnan(np.delete(days, 22, axis=1)).any(), f"{year}/{name}: NaN outside band 22"
    assert len(sizes) > 1  # image sizes differ from fire to fire


def test_band_22_is_hhmm_exactly_where_the_simulator_burned(sim_root):
    fires, truth = read_fires(sim_root), resimulated()
    assert set(fires) == set(truth)
    for key, (files, days) in fires.items():
        w, fire = truth[key]
        af = days[:, 22]
        assert af.shape == fire.active.shape
        np.testing.assert_array_equal(np.isfinite(af), fire.active)
        hhmm = af[np.isfinite(af)]
        assert hhmm.size > 0 and (hhmm == np.round(hhmm)).all()
        assert ((hhmm // 100 >= 1) & (hhmm // 100 <= 23) & (hhmm % 100 <= 59)).all()
        for t in range(len(files)):
            # "burning during the day": every cell burning at the day's end is active, every active
            # cell has caught fire by then, and none of them had burned out the day before
            assert fire.active[t][fire.states[t][0]].all()
            assert fire.states[t].any(0)[fire.active[t]].all()
            if t > 0:
                assert not fire.states[t - 1][1][fire.active[t]].any()
        assert fire.active.any(axis=(1, 2)).any()


def test_the_bands_carry_the_simulator_world_in_published_units(sim_root):
    fires, truth = read_fires(sim_root), resimulated()
    agree = []
    for key, (files, days) in fires.items():
        w, fire = truth[key]
        y0, y1, x0, x1 = fire.window
        crop = w.raster[:, y0:y1, x0:x1]
        weather = w.weathers[fire.weather]
        land = crop[0] != simulator.NODATA
        for t, day in enumerate(days):
            np.testing.assert_array_equal(day[14][land], crop[0][land])            # elevation m
            np.testing.assert_array_equal(day[12], crop[1])                        # slope deg
            assert (day[6] == np.float32(weather["WS"][t])).all()                   # wind m/s: the simulator's
            assert (day[7] == np.float32(weather["WD"][t])).all()                   # wind from, degrees
        for b in (7, 13, 19):
            assert ((days[:, b] >= 0) & (days[:, b] < 360)).all()
        lc = days[:, 16]
        assert ((lc >= 1) & (lc <= 17) & (lc == np.round(lc))).all()
        assert ((days[:, 8] > 230) & (days[:, 8] < days[:, 9]) & (days[:, 9] < 330)).all()   # Kelvin
        assert ((days[:, 20] > -30) & (days[:, 20] < 50)).all()                              # forecast: C
        assert ((days[:, 3] >= -2000) & (days[:, 3] <= 10000)).all()                        # NDVI x 1e4
        assert (days[:, 5] >= 0).all() and ((days[:, 11] > 0) & (days[:, 11] < 0.03)).all()
        # aspect: north half (270..90 degrees) where the simulator's north-facing band says so
        north = (days[0, 13] >= 270) | (days[0, 13] <= 90)
        sloped = (crop[1] > 0.5) & land
        agree.append(north[sloped] == (crop[5] > 0)[sloped])
    agree = np.concatenate(agree)
    assert agree.size > 100 and agree.mean() > 0.9


def test_every_fold_has_train_val_and_test_samples(sim_cache, sim_root):
    for k in range(len(FOLDS)):
        dm = WSTSDataModule(root=None, fold=k, cache_dir=str(sim_cache), simulated=TINY, progress=False)
        dm.setup()
        assert dm.root == sim_root
        assert all(len(dm.datasets[s]) > 0 for s in ("train", "val", "test")), (k, dm.describe())
    dm = WSTSDataModule(root=None, fold=0, n_leading_observations=5, cache_dir=str(sim_cache),
                        simulated=TINY, progress=False)
    dm.setup()
    test = dm.datasets["test"]
    assert len(test.fires) == TINY["fires_per_year"]
    assert len(test) == sum(f.days - 5 for f in test.fires) > 0  # a fire of D days gives D - 5
    batch = finish(next(iter(dm.loader("test"))), torch.device("cpu"))   # lean: the device makes it
    assert batch["target"].sum() > 0  # tomorrow's active fire is in the target


def test_a_second_build_reuses_the_set_and_a_changed_setting_writes_another(sim_cache, sim_root, capsys):
    before = {p: p.stat().st_mtime_ns for p in sim_root.rglob("*")}
    folders = sorted(p.name for p in sim_cache.iterdir())
    assert ensure_simulated(sim_cache, dict(TINY), progress=False) == sim_root
    assert {p: p.stat().st_mtime_ns for p in sim_root.rglob("*")} == before
    assert sorted(p.name for p in sim_cache.iterdir()) == folders
    dm = WSTSDataModule(root=None, cache_dir=str(sim_cache), simulated=TINY, progress=False)
    dm.setup()
    assert "built-in simulated WildfireSpreadTS set" in capsys.readouterr().out
    other = ensure_simulated(sim_cache, {**TINY, "seed": 4}, progress=False)
    assert other != sim_root and other.parent == sim_cache
    a, b = read_fires(sim_root), read_fires(other)
    assert any(k not in b or a[k][1].shape != b[k][1].shape or not np.array_equal(a[k][1], b[k][1], equal_nan=True)
               for k in a)


def test_a_damaged_set_is_written_again_with_a_notice(tmp_path, capsys):
    root = ensure_simulated(tmp_path, TINY, progress=False)
    victim = next(root.rglob("*.tif"))
    victim.write_bytes(victim.read_bytes()[:100])
    assert ensure_simulated(tmp_path, TINY, progress=False) == root
    assert "is damaged" in capsys.readouterr().out
    assert (root / SETTINGS_FILE).is_file() and layout.read_tif_day(victim).shape[0] == 23


def test_config_data_wsts_with_root_null_builds_the_built_in_set(tmp_path):
    cfg = compose_config("data=wsts", f"data.cache_dir={tmp_path}")
    assert cfg.data.root is None
    dm = instantiate(cfg.data)
    assert dm.simulated == SimulatedSettings.checked(dict(cfg.data.simulated))
    with pytest.raises(InstantiationException, match=r"data\.simulated\.max_size must be >= 16, got 8"):
        instantiate(compose_config("data=wsts", "data.simulated.max_size=8").data)
    with pytest.raises(InstantiationException, match=r"data\.simulated\.min_days \(9\) must be <= data\.simulated\.max_days"):
        instantiate(compose_config("data=wsts", "data.simulated.min_days=9", "data.simulated.max_days=7").data)
    with pytest.raises(InstantiationException, match=r"data\.simulated\.fires is not a setting .*fires_per_year"):
        instantiate(compose_config("data=wsts", "+data.simulated.fires=3").data)


@pytest.mark.slow
def test_a_bad_simulated_setting_is_one_line_exit_2(run_env, tmp_path):
    proc = run_module("train", ["data=wsts", "data.simulated.seed=x1", "logger=none",
                                f"hydra.run.dir={tmp_path / 'run'}"], run_env, tmp_path)
    assert "data.simulated.seed must be an integer, got 'x1'" in one_line_error(proc)
