"""Tests of the built-in synthetic data generator (emberformer.data.synthetic)."""
from __future__ import annotations

import csv
import json
import math
import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

try:
    import emberformer  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from emberformer.data import simulator, synthetic
from emberformer.data.frames import decode_mask
from emberformer.data.simulator import wd_to_towards_ccw_east
from emberformer.data.synthetic import ensure_synthetic, generate

TINY = dict(num_sequences=4, size=40, max_frames=5, steps_per_frame=2)


def _sequences(root: Path) -> dict[str, list[np.ndarray]]:
    """{sequence id without padding: [fire masks]} read back from disk."""
    out = {}
    for d in sorted((root / "fire_frames").iterdir()):
        k = str(int(re.fullmatch(r"sequence_(\d+)", d.name).group(1)))
        out[k] = [decode_mask(p) for p in sorted(d.glob("fire_*.png"))]
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny") / "data"
    assert generate(root, **TINY, seed=0, progress=False) == root
    return root


def test_layout_files_agree(tiny: Path):
    land = tiny / "landscape"
    assert (land / "Input_Geotiff.tif").is_file()
    raster = tifffile.imread(land / "Input_Geotiff.tif")
    _, ny, nx = raster.shape

    indices = json.loads((land / "indices.json").read_text())
    seqs = _sequences(tiny)
    assert sorted(indices, key=int) == sorted(seqs, key=int) == ["1", "2", "3", "4"]
    assert sorted(p.name for p in (tiny / "fire_frames").iterdir())[0] == "sequence_001"
    for k, (y0, y1, x0, x1) in indices.items():
        assert (y1 - y0, x1 - x0) == (TINY["size"], TINY["size"])
        assert 0 <= y0 < y1 <= ny and 0 <= x0 < x1 <= nx

    history = (land / "WeatherHistory.csv").read_text().splitlines()
    assert len(history) == TINY["num_sequences"]
    for line in history:
        assert "Weathers/" in line
        assert (land / "Weathers" / line.split("Weathers/")[-1]).is_file()

    for k, masks in seqs.items():
        name = f"sequence_{int(k):03d}"
        fire = sorted((tiny / "fire_frames" / name).glob("fire_*.png"))
        iso = sorted((tiny / "isochrones" / name).glob("iso_*.png"))
        assert [p.name for p in fire] == [f"fire_{t:03d}.png" for t in range(len(fire))]
        assert [p.name[4:] for p in iso] == [p.name[5:] for p in fire]
        assert 2 <= len(fire) <= TINY["max_frames"]
        for f, i in zip(fire, iso):
            with Image.open(f) as im:
                assert im.size == (TINY["size"], TINY["size"])
            np.testing.assert_array_equal(decode_mask(f), decode_mask(i))


def test_weather_files(tiny: Path):
    files = sorted((tiny / "landscape" / "Weathers").glob("Weather*.csv"))
    assert len(files) == min(TINY["num_sequences"], 16)
    for f in files:
        with open(f, newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert len(rows) >= TINY["max_frames"]
        assert {"WS", "WD"} <= set(rows[0]) and len(rows[0]) >= 3
        ws = np.array([float(r["WS"]) for r in rows])
        wd = np.array([float(r["WD"]) for r in rows])
        assert ws.min() >= 0 and ws.max() <= 15
        assert wd.min() >= 0 and wd.max() < 360


def test_masks_grow_monotonically(tiny: Path):
    for k, masks in _sequences(tiny).items():
        assert masks[0].any(), f"sequence {k} has no ignition"
        for a, b in zip(masks, masks[1:]):
            assert not (a & ~b).any(), f"sequence {k}: fire shrank"
        assert masks[-1].sum() > masks[0].sum(), f"sequence {k} never grows"
        assert masks[-1].mean() < 0.95  # does not burn the whole window


def test_geotiff_bands(tiny: Path):
    raster = tifffile.imread(tiny / "landscape" / "Input_Geotiff.tif")
    assert raster.dtype == np.float32 and raster.shape[0] == 6
    assert raster.shape[1] == raster.shape[2] >= 4 * TINY["size"]
    elev, slope, veg, den, burnable, north = raster
    assert (elev == -9999).any()
    assert set(np.unique(burnable)) == {0.0, 1.0}
    assert (burnable[elev == -9999] == 0).all()
    assert set(np.unique(veg)) == {1.0, 2.0, 3.0}
    assert den.min() >= 0 and den.max() <= 1
    assert slope.min() >= 0 and slope.max() < 90
    assert set(np.unique(north)) == {-1.0, 1.0}
    with tifffile.TiffFile(tiny / "landscape" / "Input_Geotiff.tif") as tif:
        page = tif.pages[0]
        assert page.is_tiled and page.compression == 8  # deflate


def test_deterministic_per_seed(tiny: Path, tmp_path: Path):
    again = generate(tmp_path / "again", **TINY, seed=0, progress=False)
    other = generate(tmp_path / "other", **TINY, seed=1, progress=False)
    idx = lambda r: json.loads((r / "landscape" / "indices.json").read_text())  # noqa: E731
    assert idx(again) == idx(tiny)
    a, b = _sequences(tiny), _sequences(again)
    assert a.keys() == b.keys()
    for k in a:
        assert len(a[k]) == len(b[k])
        for x, y in zip(a[k], b[k]):
            np.testing.assert_array_equal(x, y)
    assert (tiny / "landscape" / "WeatherHistory.csv").read_text() == (
        again / "landscape" / "WeatherHistory.csv"
    ).read_text()

    c = _sequences(other)
    differs = idx(other) != idx(tiny) or any(
        len(a[k]) != len(c[k]) or any((x != y).any() for x, y in zip(a[k], c[k])) for k in a
    )
    assert differs


def test_callers_torch_state_untouched(tmp_path: Path):
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    threads = torch.get_num_threads()
    generate(tmp_path / "d", num_sequences=1, size=16, max_frames=3, steps_per_frame=1, seed=5, progress=False)
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.get_num_threads() == threads
    assert torch.is_grad_enabled()


def test_cached_model_matches_pytorchfire():
    from pytorchfire import WildfireModel

    g = torch.Generator().manual_seed(0)
    n = 23
    env = {
        "p_veg": torch.rand(n, n, generator=g) - 0.5,
        "p_den": torch.rand(n, n, generator=g) * 0.6 - 0.3,
        "wind_velocity": torch.zeros(n, n),
        "wind_towards_direction": torch.zeros(n, n),
        "slope": torch.randn(n, n, 3, 3, generator=g) * 8,
        "initial_ignition": torch.rand(n, n, generator=g) > 0.6,
    }
    with simulator.isolated_torch():
        model = simulator.fire_model(env)
        model.reset(seed=0)
        for ws, towards in [(7.0, 33.0), (0.0, 0.0), (14.0, 250.0)]:
            model.set_weather(ws, towards)
            torch.testing.assert_close(model.p_ignite(), WildfireModel.p_ignite(model), atol=1e-6, rtol=0)


def test_ensure_synthetic_reuses_and_keys_by_settings(tmp_path: Path, monkeypatch):
    cache = tmp_path / "cache"
    root = ensure_synthetic(cache, **TINY, seed=3, progress=False)
    assert root.parent == cache and re.fullmatch(r"synthetic-[0-9a-f]{12}", root.name)
    settings = json.loads((root / "settings.json").read_text())
    assert settings["size"] == TINY["size"] and settings["generator_version"] == synthetic.GENERATOR_VERSION
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert root.stat().st_mode == fresh.stat().st_mode  # a normal folder, not a private temp dir
    (root / "marker").write_text("x")
    mtime = (root / "settings.json").stat().st_mtime_ns

    def no_generate(*a, **k):
        raise AssertionError("regenerated although the data set exists")

    monkeypatch.setattr(synthetic, "generate", no_generate)
    t0 = time.perf_counter()
    assert ensure_synthetic(cache, **TINY, seed=3, progress=False) == root
    assert time.perf_counter() - t0 < 1.0
    assert (root / "marker").exists() and (root / "settings.json").stat().st_mtime_ns == mtime
    monkeypatch.undo()

    other = ensure_synthetic(cache, **{**TINY, "max_frames": 4}, seed=3, progress=False)
    assert other != root and (other / "settings.json").is_file()
    assert sorted(p.name for p in cache.iterdir()) == sorted([root.name, other.name])  # no temp left


def test_ensure_synthetic_expands_user(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    root = ensure_synthetic("~/c", num_sequences=1, size=16, max_frames=2, steps_per_frame=1, seed=0, progress=False)
    assert root.parent == tmp_path / "c" and (root / "landscape" / "indices.json").is_file()


def test_interrupted_generation_is_not_reused(tmp_path: Path, monkeypatch):
    cache = tmp_path / "cache"
    real = synthetic.generate

    def interrupted(root, **kw):
        (Path(root) / "landscape").mkdir(parents=True)
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "generate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ensure_synthetic(cache, **TINY, seed=0, progress=False)
    assert list(cache.iterdir()) == []
    monkeypatch.setattr(synthetic, "generate", real)
    root = ensure_synthetic(cache, **TINY, seed=0, progress=False)
    assert len(_sequences(root)) == TINY["num_sequences"]


def test_wind_direction_conversion():
    assert wd_to_towards_ccw_east(0) == 270
    assert wd_to_towards_ccw_east(90) == 180
    assert wd_to_towards_ccw_east(180) == 90
    assert wd_to_towards_ccw_east(270) == 0
    assert wd_to_towards_ccw_east(315) == 315
    np.testing.assert_array_equal(wd_to_towards_ccw_east(np.array([0, 90, 359])), [270, 180, 271])


def test_directional_slope_convention():
    # elevation rises 3 m per row northward (rows increase southward)
    elev = np.tile((300.0 - 3.0 * np.arange(6))[:, None], (1, 5)).astype(np.float32)
    s = simulator.directional_slope(elev)
    up = math.degrees(math.atan(3 / 30))
    diag = math.degrees(math.atan(3 / (30 * math.sqrt(2))))
    assert s[2, 2, 0, 1] == pytest.approx(up, abs=1e-4)  # fire moving north runs uphill
    assert s[2, 2, 2, 1] == pytest.approx(-up, abs=1e-4)  # moving south: downhill
    assert s[2, 2, 1, 2] == pytest.approx(0, abs=1e-6)  # moving east: flat
    assert s[2, 2, 0, 0] == pytest.approx(diag, abs=1e-4)  # north-west diagonal
    assert (s[0, :, 2, :] == 0).all() and (s[:, 0, :, 2] == 0).all()  # source beyond the border
    elev[3, 3] = simulator.NODATA
    s = simulator.directional_slope(elev)
    assert (s[3, 3] == 0).all() and s[2, 3, 0, 1] == 0  # lake cells and their neighbours


def test_wind_pushes_fire_downwind():
    n = 41
    ign = torch.zeros(n, n, dtype=torch.bool)
    ign[20, 20] = True
    env = {
        "p_veg": torch.zeros(n, n),
        "p_den": torch.zeros(n, n),
        "wind_velocity": torch.zeros(n, n),
        "wind_towards_direction": torch.zeros(n, n),
        "slope": torch.zeros(n, n, 3, 3),
        "initial_ignition": ign,
    }
    weather = {"WS": np.full(6, 10.0), "WD": np.full(6, 270)}  # from the west: blows east
    with simulator.isolated_torch():
        frames = simulator.run_fire(env, weather, 6, 2, torch_seed=0)
    cy, cx = np.argwhere(frames[-1]).mean(axis=0)
    assert cx - 20 > 3 and abs(cy - 20) < (cx - 20) / 2


@pytest.mark.parametrize(
    "key,value",
    [("num_sequences", 0), ("size", 8), ("max_frames", 1), ("steps_per_frame", 0), ("size", 40.5)],
)
def test_bad_settings_raise(tmp_path: Path, key, value):
    kw = {**TINY, "seed": 0, key: value}
    with pytest.raises(ValueError, match=f"data.{key}"):
        generate(tmp_path / "x", **kw, progress=False)
    with pytest.raises(ValueError, match=f"data.{key}"):
        ensure_synthetic(tmp_path / "c", **kw, progress=False)
    assert not (tmp_path / "c").exists()
