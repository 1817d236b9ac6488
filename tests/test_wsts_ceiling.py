"""The simulator ceiling on the built-in WSTS set (issue 19, deliverable 4): the ensemble from the
restored simulator state, scored like the model on the test split's windows; real files, the
project's reader and simulator, no mocks."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emberformer.data import simulator
from emberformer.data.wsts.datamodule import WSTSDataModule
from emberformer.data.wsts.simulated import SimulatedSettings, simulate_fire, year_world
from emberformer.scoring import ceiling
from emberformer.scoring.ceiling import NO_SIMULATOR, run_seeds
from emberformer.scoring.wsts_ceiling import active_probability

def dilate(mask: np.ndarray, cells: int) -> np.ndarray:
    """Cells within Chebyshev distance ``cells`` of a True cell (the 8-neighbour reach)."""
    out = mask.copy()
    for _ in range(cells):
        pad = np.pad(out, 1)
        out = np.logical_or.reduce([pad[1 + dy:1 + dy + mask.shape[0], 1 + dx:1 + dx + mask.shape[1]]
                                    for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
    return out


TINY = {"fires_per_year": 2, "min_size": 16, "max_size": 26, "min_days": 6, "max_days": 7,
        "steps_per_day": 2, "seed": 5}


@pytest.fixture(scope="module")
def dm(tmp_path_factory) -> WSTSDataModule:
    data = WSTSDataModule(root=None, fold=0, cache_dir=str(tmp_path_factory.mktemp("wsts_ceil")),
                          simulated=TINY, progress=False)
    data.setup()
    return data


def test_the_ceiling_is_scored_on_the_test_samples_and_cached(dm):
    out = ceiling.compute(dm, "test", samples=8, threshold=0.5, progress=False)
    assert set(out) == {"ceiling", "copy_last"}
    assert out["ceiling"]["samples"] == out["copy_last"]["samples"] == len(dm.datasets["test"]) > 0
    assert out["copy_last"]["growth_f1"] == 0.0  # copy-last never predicts a new cell
    assert out["ceiling"]["f1"] > out["copy_last"]["f1"]
    assert out["ceiling"]["growth_f1"] > 0
    files = list((Path(dm.cache_dir) / "ceiling").glob(f"{dm.root.name}-test-*.json"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    assert ceiling.ceiling_scores(dm, "test", 8, 0.5, progress=False) == out["ceiling"]
    assert files[0].stat().st_mtime_ns == stamp  # read back, not computed again
    other = ceiling.compute(dm, "test", samples=4, threshold=0.5, progress=False)
    assert other["copy_last"] == out["copy_last"] and other["ceiling"] != out["ceiling"]


def test_the_ensemble_spreads_only_where_the_restored_state_allows(dm):
    """p > 0 only on cells not burned out at the day's end and within steps_per_day cells of a
    burning one (the automaton moves fire one neighbour per step); p = 1 is never on burned cells."""
    s = SimulatedSettings.checked(TINY)
    w = year_world(s, 2021)
    with simulator.isolated_torch():
        fire = simulate_fire(s, w, 2021, 1)
        for day in range(fire.days - 1):
            p = active_probability(fire, w.weathers[fire.weather], s.steps_per_day, day,
                                   run_seeds(s.seed, 2021001, day, 16))
            burning, burned = fire.states[day]
            reach = dilate(burning, s.steps_per_day)
            assert not (p > 0)[burned | ~reach].any()
            assert ((p >= 0) & (p <= 1)).all()
            if burning.any():
                assert p.max() > 0


def test_a_real_root_has_no_ceiling(dm, tmp_path, capsys):
    real = WSTSDataModule(root=str(dm.root), cache_dir=str(tmp_path), progress=False)
    real.setup()
    assert ceiling.compute(real, "test", 8, 0.5, progress=False) is None
    assert NO_SIMULATOR in capsys.readouterr().out
