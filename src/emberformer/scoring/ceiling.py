"""The simulator ceiling: how well the best possible predictor does on the built-in fires.

The built-in data is drawn from a stochastic simulator, so even a predictor that knows the terrain,
the weather and the simulator's full hidden state cannot foresee which cells catch fire next. For
each sample (sequence s, input frames 0..t, target frame t+1) the ceiling restores the simulator's
full state at frame t (burning AND burned-out cells, which the masks cannot tell apart), runs the
``steps_per_frame`` simulator steps that separate two frames with weather row t, ``samples`` times
with different random seeds, and predicts ``p > threshold`` where p is the fraction of runs in which
a pixel is burning or burned. Pixel counts are pooled over the split with the suite's own
:class:`~emberformer.scoring.metrics.PixelMetrics`, so the numbers read like ``test/*`` of a run.

The state is recovered by re-simulating the sequence (:func:`replay`:
the generator is a pure function of its settings) and checked against the frames on disk. Each run
draws from its own seeded generator exactly as the simulator would with that seed, so the result is
deterministic; it is cached per data set, split and ensemble size under ``<cache_dir>/ceiling/``.
"""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from emberformer.data import synthetic
from emberformer.scoring.metrics import Calibration, PixelMetrics

CEILING_VERSION = 1
NO_SIMULATOR = "Simulator ceiling: not available for this data (no simulator state to restore; only data=synthetic has one)"


@dataclass
class Replay:
    """One generated sequence re-simulated with everything the simulator had (see :func:`replay`)."""

    seq_id: int
    env: dict  # p_veg, p_den, slope, ... as given to the simulator (torch tensors)
    weather: dict  # the scenario's columns (WS, WD, ...), row t = frame t
    states: np.ndarray  # bool [frames, 2, H, W]: burning, burned at each frame
    steps_per_frame: int


def replay(seq_ids, *, num_sequences: int, size: int, max_frames: int, steps_per_frame: int,
           seed: int) -> dict[int, Replay]:
    """Re-simulate sequences ``seq_ids`` (1-based, as in the layout) of the built-in data set with
    these settings; return the simulator's full state at every frame.

    Generation is a pure function of the settings, so this reproduces exactly the frames that
    :func:`emberformer.data.synthetic.generate` wrote (``states.any(1)`` equals them) and also
    recovers what the masks do not show: which cells still burn and which have burned out.
    """
    s = synthetic._validated(num_sequences, size, max_frames, steps_per_frame, seed)
    ent = s["seed"] % 2**64
    raster = synthetic._make_landscape(np.random.default_rng([ent, 0]), synthetic._raster_size(s["size"]))
    n_weather = min(s["num_sequences"], synthetic.MAX_WEATHER_FILES)
    weathers = [synthetic._make_weather(np.random.default_rng([ent, 1, j]), s["max_frames"])
                for j in range(n_weather)]
    out: dict[int, Replay] = {}
    with synthetic._isolated_torch():
        for k in seq_ids:
            if not 1 <= int(k) <= s["num_sequences"]:
                raise ValueError(f"sequence {k}: the data set has sequences 1..{s['num_sequences']}")
            seq = synthetic._simulate_sequence(ent, int(k), raster, weathers, s, record=True)
            env = seq.env if seq.env is not None else synthetic._environment(  # nothing burnable
                np.zeros((6, size, size), dtype=np.float32), np.zeros((size, size), dtype=bool))
            assert seq.states is not None
            out[int(k)] = Replay(int(k), env, weathers[seq.weather], np.stack(seq.states), s["steps_per_frame"])
    return out


def run_seeds(data_seed: int, seq_id: int, t: int, samples: int) -> list[int]:
    """The ensemble's simulator seeds for sample (seq_id, t): a pure function of its arguments."""
    rng = np.random.default_rng([int(data_seed) % 2**64, 7, int(seq_id), int(t)])
    return [int(x) for x in rng.integers(0, 2**62, size=samples)]


def _propagation(env: dict, ws: float, wd: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The simulator's per-neighbour spread probabilities [H, W, 3, 3] under one weather row, and
    its p_continue (built by the generator's own model class)."""
    params = {name: torch.tensor(float(v)) for name, v in synthetic.SIM_PARAMS.items()}
    model = synthetic._CachedWildfireModel(env_data=env, params=params)
    model.eval()
    model.set_weather(float(ws), float(synthetic.wd_to_towards_ccw_east(wd)))
    model.p_ignite()
    assert model._p_propagate is not None
    return model._p_propagate, model.p_continue.detach()


def _p_ignite(p: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Batched ``_CachedWildfireModel.p_ignite``: p [H, W, 3, 3], burning b [R, H, W] float -> [R, H, W].

    The same operations in the same order as the generator's model, so each run's probabilities
    are bit-identical to those of a single simulation."""
    keep = torch.ones_like(b)
    keep[:, :-1, :-1] *= 1 - p[:-1, :-1, 0, 0] * b[:, 1:, 1:]
    keep[:, :-1, :] *= 1 - p[:-1, :, 0, 1] * b[:, 1:, :]
    keep[:, :-1, 1:] *= 1 - p[:-1, 1:, 0, 2] * b[:, 1:, :-1]
    keep[:, :, :-1] *= 1 - p[:, :-1, 1, 0] * b[:, :, 1:]
    keep[:, :, 1:] *= 1 - p[:, 1:, 1, 2] * b[:, :, :-1]
    keep[:, 1:, :-1] *= 1 - p[1:, :-1, 2, 0] * b[:, :-1, 1:]
    keep[:, 1:, :] *= 1 - p[1:, :, 2, 1] * b[:, :-1, :]
    keep[:, 1:, 1:] *= 1 - p[1:, 1:, 2, 2] * b[:, :-1, :-1]
    return 1 - keep


def ensemble_states(rep: Replay, t: int, seeds: list[int], lead: int = 1) -> torch.Tensor:
    """Run the simulator from its true state at frame t for ``lead`` frames, once per seed.

    Returns the final states, bool [R, 2, H, W] (burning, burned). Weather row t + i drives the
    steps from frame t + i to t + i + 1, as in generation. Run r draws its random numbers exactly
    as ``WildfireModel.compute`` does after ``reset(seed=seeds[r])``.
    """
    for state in lead_states(rep, t, seeds, lead):
        pass
    return state


def lead_states(rep: Replay, t: int, seeds: list[int], horizon: int = 1) -> Iterator[torch.Tensor]:
    """The ensemble's states bool [R, 2, H, W] at frames t + 1 .. t + horizon, one per lead, from
    one run: the state at lead k is exactly ``ensemble_states(rep, t, seeds, k)``."""
    if horizon < 1 or t + horizon > len(rep.weather["WS"]):
        raise ValueError(f"lead {horizon} from frame {t} runs past the weather rows ({len(rep.weather['WS'])})")
    R = len(seeds)
    start = torch.from_numpy(rep.states[t])
    H, W = start.shape[-2:]
    state = start.unsqueeze(0).repeat(R, 1, 1, 1)
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    rand_prop = torch.empty(R, H, W)
    rand_cont = torch.empty(R, H, W)
    for i in range(horizon):
        p, p_continue = _propagation(rep.env, rep.weather["WS"][t + i], rep.weather["WD"][t + i])
        for _ in range(rep.steps_per_frame):
            burning, burned = state[:, 0], state[:, 1]
            for r, g in enumerate(gens):  # compute(): rand_like(p_ignite) twice per step
                torch.rand((H, W), generator=g, out=rand_prop[r])
                torch.rand((H, W), generator=g, out=rand_cont[r])
            p_ign = _p_ignite(p, burning.to(p.dtype))
            ignite = torch.where(~(burning | burned), torch.relu(p_ign - rand_prop), 0) > 0
            burn_out = torch.where(burning, torch.relu(rand_cont - p_continue), 0) > 0
            state = torch.stack(((burning | ignite) & ~burn_out, burned | burn_out), dim=1)
        yield state


def ensemble_probability(rep: Replay, t: int, seeds: list[int], lead: int = 1) -> np.ndarray:
    """p [H, W] float32: the share of runs in which a pixel is burning or burned ``lead`` frames on."""
    return ensemble_states(rep, t, seeds, lead).any(dim=1).float().mean(0).numpy()


def _unpack(packed: np.ndarray, width: int) -> np.ndarray:
    return np.unpackbits(np.asarray(packed), axis=-1)[..., :width].astype(bool)


def _result(pixels: PixelMetrics, calib: Calibration, samples: int) -> dict[str, float]:
    out = pixels.compute()
    out["ece"] = calib.compute()
    out["samples"] = samples
    return out


def _cache_file(data: Any, split: str, samples: int, threshold: float) -> tuple[Path, dict]:
    root = Path(data.prepare_root())  # synthetic-<hash of the generator version and settings>
    key = {"version": CEILING_VERSION, "data": root.name, "settings": dict(data.gen), "split": split,
           "sequences": sorted(int(i) for i in data.datasets[split].seq_ids), "samples": int(samples),
           "threshold": float(threshold)}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    path = Path(data.cache_dir).expanduser() / "ceiling" / f"{root.name}-{split}-{digest}.json"
    return path, key


def _simulator_settings(data: Any, samples: int) -> dict | None:
    """The generator settings of a synthetic data module (set up), or None with a one-line notice."""
    gen = getattr(data, "gen", None)
    if gen is None:
        print(NO_SIMULATOR, flush=True)
        return None
    if int(samples) < 1:
        raise ValueError(f"ceiling.samples must be >= 1, got {samples}")
    if not data.datasets:
        data.setup()
    return gen


def _read_cache(path: Path, key: dict) -> Any | None:
    """A cached result written for ``key``; None when absent, for another key, or unreadable."""
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return cached["result"] if isinstance(cached, dict) and cached.get("key") == key else None


def _write_cache(path: Path, key: dict, result: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps({"key": key, "result": result}, indent=1) + "\n")
    os.replace(tmp, path)


def _observed_frame(ds: Any, rep: Any, sid: int, t: int) -> np.ndarray:
    """Frame t of sequence ``sid`` from the cache, checked against the re-simulated state."""
    last = _unpack(ds._map(sid, "fire")[t], rep.states.shape[-1])
    if not np.array_equal(rep.states[t].any(0), last):
        raise RuntimeError(f"sequence {sid}: the re-simulated frame {t} differs from the data "
                           f"(was the data set made by another generator version?)")
    return last


def compute(data: Any, split: str = "test", samples: int = 32, threshold: float = 0.5,
            progress: bool = True) -> dict[str, dict[str, float]] | None:
    """``{"ceiling": {...}, "copy_last": {...}}`` on ``split`` of a set-up synthetic data module.

    Both are scored on the same samples with PixelMetrics (keys as ``PixelMetrics.compute`` plus
    ``ece`` and ``samples``). None, with a one-line notice, for data without a simulator.
    Cached: a second call with the same data, split, samples and threshold reads the file back.
    """
    gen = _simulator_settings(data, samples)
    if gen is None:
        return None
    if not 0 < float(threshold) < 1:
        raise ValueError(f"ceiling threshold must be in (0, 1), got {threshold}")
    path, key = _cache_file(data, split, samples, threshold)
    cached = _read_cache(path, key)
    if cached is not None:
        return cached
    ds = data.datasets[split]
    reps = replay(ds.seq_ids, **gen)
    pixels = {name: PixelMetrics(threshold) for name in ("ceiling", "copy_last")}
    calib = {name: Calibration() for name in ("ceiling", "copy_last")}
    bar = tqdm(ds.samples, desc=f"Simulator ceiling ({split})", disable=not progress, unit="sample",
               dynamic_ncols=True, mininterval=0.5)
    with synthetic._isolated_torch():
        for sid, t in bar:
            rep = reps[sid]
            last = _observed_frame(ds, rep, sid, t)
            target = _unpack(ds._map(sid, "iso")[t + 1], rep.states.shape[-1])
            prob = ensemble_probability(rep, t, run_seeds(gen["seed"], sid, t, samples))
            as4 = (lambda a: torch.from_numpy(np.ascontiguousarray(a))[None, None])
            tgt, lst = as4(target).float(), as4(last)
            mask = torch.ones_like(lst)
            for name, pr in (("ceiling", as4(prob)), ("copy_last", lst.float())):
                pixels[name].update(pr, tgt, mask, lst)
                calib[name].update(pr, tgt, mask)
    n = len(ds.samples)
    result = {name: _result(pixels[name], calib[name], n) for name in pixels}
    _write_cache(path, key, result)
    return result


def ceiling_scores(data: Any, split: str = "test", samples: int = 32, threshold: float = 0.5,
                   progress: bool = True) -> dict[str, float] | None:
    """The simulator ceiling's metrics on ``split`` (None, with a one-line notice, off synthetic data)."""
    out = compute(data, split, samples, threshold, progress)
    return None if out is None else out["ceiling"]


def by_lead(data: Any, split: str, samples: int, horizon: int, pairs: list[tuple[int, int]],
            threshold: float = 0.5, progress: bool = True) -> dict[int, dict[str, float]] | None:
    """The ceiling at leads 1..``horizon`` on the samples ``pairs`` ((sequence, t), each with
    ``horizon`` real frames after t): ``{lead: metrics}`` as :func:`compute`'s ``"ceiling"``.

    Each sample's ensemble (the seeds of the one-step ceiling) runs from the true state at frame t
    through the weather rows t, t+1, ... in order; p > ``threshold`` at frame t + lead is scored
    against that frame, growth counted against frame t. Cached under ``<cache_dir>/ceiling/by_lead/``.
    None, with a one-line notice, for data without a simulator.
    """
    gen = _simulator_settings(data, samples)
    if gen is None:
        return None
    path, key = _cache_file(data, split, samples, threshold)
    key.update(horizon=int(horizon), pairs=[[int(sid), int(t)] for sid, t in pairs])
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    path = path.parent / "by_lead" / f"{Path(data.prepare_root()).name}-{split}-h{horizon}-{digest}.json"
    cached = _read_cache(path, key)
    if cached is not None:
        return {int(k): v for k, v in cached.items()}
    ds = data.datasets[split]
    reps = replay(sorted({sid for sid, _ in pairs}), **gen)
    pixels = {k: PixelMetrics(threshold) for k in range(1, horizon + 1)}
    calib = {k: Calibration() for k in range(1, horizon + 1)}
    bar = tqdm(pairs, desc=f"Simulator ceiling ({split}, leads 1..{horizon})", disable=not progress,
               unit="sample", dynamic_ncols=True, mininterval=0.5)
    as4 = (lambda a: torch.from_numpy(np.ascontiguousarray(a))[None, None])
    with synthetic._isolated_torch():
        for sid, t in bar:
            rep = reps[sid]
            W = rep.states.shape[-1]
            lst = as4(_observed_frame(ds, rep, sid, t))
            mask = torch.ones_like(lst)
            seeds = run_seeds(gen["seed"], sid, t, samples)
            for lead, state in enumerate(lead_states(rep, t, seeds, horizon), start=1):
                prob = as4(state.any(dim=1).float().mean(0).numpy())
                tgt = as4(_unpack(ds._map(sid, "iso")[t + lead], W)).float()
                pixels[lead].update(prob, tgt, mask, lst)
                calib[lead].update(prob, tgt, mask)
    result = {k: _result(pixels[k], calib[k], len(pairs)) for k in pixels}
    _write_cache(path, key, result)
    return result


def gap_closed(model_f1: float, copy_last_f1: float, ceiling_f1: float) -> float | None:
    """Share of the copy-last -> ceiling F1 gap a model closes (None when there is no gap)."""
    gap = ceiling_f1 - copy_last_f1
    return None if gap <= 0 else (model_f1 - copy_last_f1) / gap
