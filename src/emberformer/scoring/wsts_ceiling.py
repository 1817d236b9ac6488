"""The simulator ceiling on the built-in WSTS-layout set (``data=wsts``, ``data.root: null``).

As for the built-in PNG fires (:mod:`emberformer.scoring.ceiling`), the best possible predictor
knows the terrain, the weather and the simulator's full hidden state. For each sample (fire f,
input days ..d, target: day d + 1's active fire) it restores the simulator's state at the end of
day d (burning and burned-out cells, re-simulated from the settings:
:func:`~emberformer.data.wsts.simulated.simulate_fire`), runs the ``steps_per_day`` steps of day
d + 1 with weather row d ``samples`` times, and takes p = the fraction of runs in which a cell
burns after any step of that day, which is what "active fire" means in this set. p > threshold is
scored against the target on the sample's own window (the centre crop the model is scored on,
its ``valid`` pixels), growth counted against the last input day, with the suite's
:class:`~emberformer.scoring.metrics.PixelMetrics`, so the numbers read like a run's ``test/*``.
The restored state is checked against the files: the re-simulated active fire of days d and
d + 1 must equal the sample's ``fire_today`` and ``target``.

Deterministic (each run's seed from :func:`~emberformer.scoring.ceiling.run_seeds`) and cached
per data set, fold, split, ``n_leading_observations``, ensemble size and threshold under
``<cache_dir>/ceiling/``.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from emberformer.data import simulator
from emberformer.data.wsts.simulated import SimulatedFire, simulate_fire, year_world
from emberformer.files import atomic
from emberformer.scoring.ceiling import ceiling_result, check_ensemble, run_seeds, step_states
from emberformer.scoring.metrics import Calibration, PixelMetrics

VERSION = 2  # 2: Brier score and the reliability table in the result


def _fire_number(name: str, year: int) -> int:
    """k of ``fire_{year}{k:03d}``, the writer's fire names."""
    prefix = f"fire_{year}"
    if not name.startswith(prefix) or not name[len(prefix):].isdigit():
        raise RuntimeError(f"fire {year}/{name}: not a fire of the built-in WSTS set")
    return int(name[len(prefix):])


def _cache_file(data: Any, split: str, samples: int, threshold: float) -> tuple[Path, dict]:
    key = {"version": VERSION, "data": Path(data.root).name, "settings": data.simulated.as_dict(),
           "fold": data.fold.index, "split": split, "n_leading_observations": data.n_leading_observations,
           "samples": int(samples), "threshold": float(threshold)}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return Path(data.cache_dir).expanduser() / "ceiling" / f"{Path(data.root).name}-{split}-{digest}.json", key


def active_probability(fire: SimulatedFire, weather: dict, steps_per_day: int, day: int,
                       seeds: list[int]) -> np.ndarray:
    """p [H, W]: the fraction of the ensemble's runs from the state at the end of ``day`` in which
    a cell burns after any step of day + 1. Must run inside ``simulator.isolated_torch``."""
    rep = simulator.Replay(0, fire.env, weather, fire.states, steps_per_day)
    active = None
    for _, state in step_states(rep, day, seeds, 1):
        active = state[:, 0] if active is None else active | state[:, 0]
    assert active is not None
    return active.float().mean(0).numpy()


def compute(data: Any, split: str = "test", samples: int = 32, threshold: float = 0.5,
            progress: bool = True) -> dict[str, dict[str, float]] | None:
    """``{"ceiling": {...}, "copy_last": {...}}`` on ``split`` of a WSTS data module on the built-in
    set (keys as ``PixelMetrics.compute`` plus ``ece`` and ``samples``); cached."""
    check_ensemble(data, samples, threshold)
    path, key = _cache_file(data, split, samples, threshold)
    try:
        cached = json.loads(path.read_text())
        if isinstance(cached, dict) and cached.get("key") == key:
            return cached["result"]
    except (OSError, ValueError):
        pass
    s, ds = data.simulated, data.datasets[split]
    names = ("ceiling", "copy_last")
    pixels = {n: PixelMetrics(threshold) for n in names}
    calib = {n: Calibration() for n in names}
    worlds: dict[int, simulator.World] = {}
    fires: dict[tuple[int, str], SimulatedFire] = {}
    bar = tqdm(range(len(ds)), desc=f"Simulator ceiling ({split})", disable=not progress, unit="sample",
               dynamic_ncols=True, mininterval=0.5)
    with simulator.isolated_torch():
        for i in bar:
            k, t = ds.samples[i]
            cached_fire = ds.fires[k]
            label = (cached_fire.year, cached_fire.name)
            if label not in fires:
                if cached_fire.year not in worlds:
                    worlds[cached_fire.year] = year_world(s, cached_fire.year)
                fires[label] = simulate_fire(s, worlds[cached_fire.year], cached_fire.year,
                                             _fire_number(cached_fire.name, cached_fire.year))
            fire, w = fires[label], worlds[cached_fire.year]
            day = t + ds.n - 1  # the last input day
            item = ds[i]
            (top, left, h, wd), _ = ds.crop_window(i, 0)
            win = (slice(top, top + h), slice(left, left + wd))
            tgt, valid, today = item["target"][None], item["valid"][None], item["fire_today"][None] > 0.5
            for what, mask, got in (("target", fire.active[day + 1], tgt), ("fire_today", fire.active[day], today)):
                if not np.array_equal(mask[win], got[0, 0, :h, :wd].numpy() > 0.5):
                    raise RuntimeError(f"fire {cached_fire.label}, day {day}: the re-simulated {what} differs "
                                       "from the data (was the set written by another generator version?)")
            seeds = run_seeds(s.seed, cached_fire.year * 1000 + fire.k, day, samples)
            p = active_probability(fire, w.weathers[fire.weather], s.steps_per_day, day, seeds)
            prob = torch.zeros_like(tgt)
            prob[0, 0, :h, :wd] = torch.from_numpy(p[win])
            for name, pr in (("ceiling", prob), ("copy_last", today.float())):
                pixels[name].update(pr, tgt, valid, today)
                calib[name].update(pr, tgt, valid)
    result = {name: ceiling_result(pixels[name], calib[name], len(ds)) for name in names}
    atomic.write_text(path, json.dumps({"key": key, "result": result}, indent=1) + "\n")
    return result
