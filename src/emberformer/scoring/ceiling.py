"""The simulator ceiling: how well the best possible predictor does on the built-in fires.

The built-in data is drawn from a stochastic simulator, so even a predictor that knows the terrain,
the weather and the simulator's full hidden state cannot foresee which cells catch fire next. For
each sample (sequence s, input frames 0..t, target frame t+1) the ceiling restores the simulator's
full state at frame t (burning AND burned-out cells, which the masks cannot tell apart), runs the
``steps_per_frame`` simulator steps that separate two frames with weather row t, ``samples`` times
with different random seeds, and predicts ``p > threshold`` where p is the fraction of runs in which
a pixel is burning or burned. Pixel counts are pooled over the split with the suite's own
:class:`~emberformer.scoring.metrics.PixelMetrics`, so the numbers read like ``test/*`` of a run.

The state is recovered by re-simulating the sequence (:func:`emberformer.data.simulator.replay`:
the generator is a pure function of its settings) and checked against the frames on disk; the
ensemble steps with the simulator's own spread probabilities and ignition rule. Each run
draws from its own seeded generator exactly as the simulator would with that seed, so the result is
deterministic; it is cached per data set, split, ensemble size and threshold under
``<cache_dir>/ceiling/``. One loop (:func:`_scores`) serves the one-step ceiling and the ceiling
by lead time: one step is lead 1.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from emberformer.data import simulator
from emberformer.data.simulator import Replay
from emberformer.files import atomic
from emberformer.scoring.metrics import Calibration, PixelMetrics, check_threshold

CEILING_VERSION = 2  # 2: Brier score and the reliability table in the result
NO_SIMULATOR = "Simulator ceiling: not available for this data (no simulator state to restore; only data=synthetic and the built-in set of data=wsts have one)"


def run_seeds(data_seed: int, seq_id: int, t: int, samples: int) -> list[int]:
    """The ensemble's simulator seeds for sample (seq_id, t): a pure function of its arguments."""
    rng = np.random.default_rng([int(data_seed) % 2**64, 7, int(seq_id), int(t)])
    return [int(x) for x in rng.integers(0, 2**62, size=samples)]


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
    for step, (_, state) in enumerate(step_states(rep, t, seeds, horizon), start=1):
        if step % rep.steps_per_frame == 0:
            yield state


def step_states(rep: Replay, t: int, seeds: list[int], horizon: int = 1) -> Iterator[tuple[int, torch.Tensor]]:
    """(lead, state) after every simulator step of the ensemble run from frame t (``steps_per_frame``
    steps per lead, states bool [R, 2, H, W]): what the WSTS ceiling needs to see a cell that burns
    during a day (:mod:`emberformer.scoring.wsts_ceiling`)."""
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
        p, p_continue = simulator.propagation(rep.env, rep.weather["WS"][t + i], rep.weather["WD"][t + i])
        for _ in range(rep.steps_per_frame):
            burning, burned = state[:, 0], state[:, 1]
            for r, g in enumerate(gens):  # compute(): rand_like(p_ignite) twice per step
                torch.rand((H, W), generator=g, out=rand_prop[r])
                torch.rand((H, W), generator=g, out=rand_cont[r])
            p_ign = simulator.ignition_probability(p, burning.to(p.dtype))
            ignite = torch.where(~(burning | burned), torch.relu(p_ign - rand_prop), 0) > 0
            burn_out = torch.where(burning, torch.relu(rand_cont - p_continue), 0) > 0
            state = torch.stack(((burning | ignite) & ~burn_out, burned | burn_out), dim=1)
            yield i + 1, state


def ensemble_probability(states: torch.Tensor) -> torch.Tensor:
    """The ensemble's probability [H, W] from its runs' states bool [R, 2, H, W]: the fraction of
    runs in which a pixel is burning or burned, the best probability forecast there is (its Brier
    score is the ceiling's ``brier``)."""
    return states.any(dim=1).float().mean(0)


def ceiling_result(pixels: PixelMetrics, calib: Calibration, samples: int) -> dict[str, Any]:
    """PixelMetrics' values with ``ece``, ``samples`` and the ``reliability`` table (per
    probability bin: pixels, mean probability, observed frequency) that evaluate draws."""
    out: dict[str, Any] = pixels.compute()
    out["ece"] = calib.compute()
    out["samples"] = samples
    out["reliability"] = calib.table()
    return out


def _cache_file(data: Any, split: str, samples: int, threshold: float, horizon: int,
                pairs: list[tuple[int, int]] | None) -> tuple[Path, dict]:
    """Where the result for these arguments is cached, and the key it is stored with.

    ``pairs`` None (every sample of the split, lead 1): ``ceiling/<data>-<split>-<digest>.json``;
    given: ``ceiling/by_lead/<data>-<split>-h<horizon>-<digest>.json``.
    """
    root = Path(data.prepare_root())  # synthetic-<hash of the generator version and settings>
    key = {"version": CEILING_VERSION, "data": root.name, "settings": dict(data.gen), "split": split,
           "sequences": sorted(int(i) for i in data.datasets[split].seq_ids), "samples": int(samples),
           "threshold": float(threshold)}
    folder = Path(data.cache_dir).expanduser() / "ceiling"
    if pairs is None:
        return folder / f"{root.name}-{split}-{_digest(key)}.json", key
    key.update(horizon=int(horizon), pairs=[[int(sid), int(t)] for sid, t in pairs])
    return folder / "by_lead" / f"{root.name}-{split}-h{horizon}-{_digest(key)}.json", key


def _digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def _simulator_settings(data: Any, samples: int, threshold: float) -> dict | None:
    """The generator settings of a synthetic data module (set up), or None with a one-line notice."""
    gen = getattr(data, "gen", None)
    if gen is None:
        print(NO_SIMULATOR, flush=True)
        return None
    check_ensemble(data, samples, threshold)
    return gen


def check_ensemble(data: Any, samples: int, threshold: float) -> None:
    """``ceiling.samples`` and ``metrics.pred_thresh`` checked (one-line ValueError naming the
    key), and ``data`` set up: what every simulator ceiling needs before its first run."""
    if int(samples) < 1:
        raise ValueError(f"ceiling.samples must be >= 1, got {samples}")
    check_threshold(threshold)
    if not data.datasets:
        data.setup()


def _read_cache(path: Path, key: dict) -> Any | None:
    """A cached result written for ``key``; None when absent, for another key, or unreadable."""
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return cached["result"] if isinstance(cached, dict) and cached.get("key") == key else None


def _observed_frame(ds: Any, rep: Replay, sid: int, t: int) -> np.ndarray:
    """Frame t of sequence ``sid`` from the cache, checked against the re-simulated state."""
    last = ds.frame(sid, "fire", t)
    if not np.array_equal(rep.states[t].any(0), last):
        raise RuntimeError(f"sequence {sid}: the re-simulated frame {t} differs from the data "
                           f"(was the data set made by another generator version?)")
    return last


def _scores(data: Any, split: str, samples: int, threshold: float, horizon: int,
            pairs: list[tuple[int, int]] | None, progress: bool) -> dict[int, dict[str, dict]] | None:
    """The one ceiling loop: ``{lead: {"ceiling": metrics, "copy_last": metrics}}`` for leads
    1..``horizon`` on the samples ``pairs`` ((sequence, t); None: every sample of ``split``).

    Each sample's ensemble (seeds from :func:`run_seeds`) runs from the true state at frame t
    through the weather rows t, t+1, ... in order; p > ``threshold`` at frame t + lead is scored
    against that frame, growth counted against frame t; copy-last predicts frame t. Cached (see
    :func:`_cache_file`); None, with a one-line notice, for data without a simulator.
    """
    gen = _simulator_settings(data, samples, threshold)
    if gen is None:
        return None
    path, key = _cache_file(data, split, samples, threshold, horizon, pairs)
    cached = _read_cache(path, key)
    if cached is not None:
        return {1: cached} if pairs is None else {int(k): {"ceiling": v} for k, v in cached.items()}
    ds = data.datasets[split]
    todo = list(ds.samples) if pairs is None else pairs
    reps = simulator.replay(sorted({sid for sid, _ in todo}), **gen)
    names, leads = ("ceiling", "copy_last"), range(1, horizon + 1)
    pixels = {(k, n): PixelMetrics(threshold) for k in leads for n in names}
    calib = {(k, n): Calibration() for k in leads for n in names}
    desc = f"Simulator ceiling ({split})" if pairs is None else f"Simulator ceiling ({split}, leads 1..{horizon})"
    bar = tqdm(todo, desc=desc, disable=not progress, unit="sample", dynamic_ncols=True, mininterval=0.5)
    as4 = (lambda a: torch.from_numpy(np.ascontiguousarray(a))[None, None])
    with simulator.isolated_torch():
        for sid, t in bar:
            rep = reps[sid]
            lst = as4(_observed_frame(ds, rep, sid, t))
            mask = torch.ones_like(lst)
            for lead, state in enumerate(lead_states(rep, t, run_seeds(gen["seed"], sid, t, samples), horizon),
                                         start=1):
                tgt = as4(ds.frame(sid, "iso", t + lead)).float()
                for name, pr in (("ceiling", as4(ensemble_probability(state).numpy())),
                                 ("copy_last", lst.float())):
                    pixels[lead, name].update(pr, tgt, mask, lst)
                    calib[lead, name].update(pr, tgt, mask)
    result = {k: {n: ceiling_result(pixels[k, n], calib[k, n], len(todo)) for n in names} for k in leads}
    stored = result[1] if pairs is None else {k: r["ceiling"] for k, r in result.items()}
    atomic.write_text(path, json.dumps({"key": key, "result": stored}, indent=1) + "\n")
    return result


def compute(data: Any, split: str = "test", samples: int = 32, threshold: float = 0.5,
            progress: bool = True) -> dict[str, dict[str, float]] | None:
    """``{"ceiling": {...}, "copy_last": {...}}`` on ``split`` of a set-up synthetic data module:
    the one-step ceiling, i.e. :func:`by_lead` at lead 1 on every sample of the split.

    Both are scored on the same samples with PixelMetrics at ``threshold`` (the model's
    ``metrics.pred_thresh``; keys as ``PixelMetrics.compute`` plus ``ece`` and ``samples``). None,
    with a one-line notice, for data without a simulator. Cached: a second call with the same
    data, split, samples and threshold reads the file back.
    """
    if getattr(data, "simulated", None) is not None:  # data=wsts on its built-in simulated set
        from emberformer.scoring import wsts_ceiling

        return wsts_ceiling.compute(data, split, samples, threshold, progress)
    out = _scores(data, split, samples, threshold, 1, None, progress)
    return None if out is None else out[1]


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
    through the weather rows t, t+1, ... in order. Cached under ``<cache_dir>/ceiling/by_lead/``.
    None, with a one-line notice, for data without a simulator.
    """
    out = _scores(data, split, samples, threshold, horizon, list(pairs), progress)
    return None if out is None else {k: r["ceiling"] for k, r in out.items()}


# a share of a gap narrower than this is noise over a tiny denominator (120.0%, -0.0%), not news
GAP_MARGIN = 0.01


def gap_closed(model: float, copy_last: float, ceiling: float, *, lower_is_better: bool = False) -> float | None:
    """Share of the copy-last -> ceiling gap on one score (F1, AP, ...) that a model closes; None when the
    ceiling is not ahead of copy-last by more than GAP_MARGIN (no gap worth a share)."""
    gap = (copy_last - ceiling) if lower_is_better else (ceiling - copy_last)
    if gap <= GAP_MARGIN:
        return None
    return (copy_last - model) / gap if lower_is_better else (model - copy_last) / gap
