"""The end of a run: best.pt on the test split beside copy-last and the simulator ceiling, the
summary that goes to the logger and the closing block on the console."""
from __future__ import annotations

import math
import time
from typing import Any

from emberformer.training import console, distributed
from emberformer.training.checkpoint import load as load_checkpoint
from emberformer.training.epoch import score_split
from emberformer.training.run_setup import RunSetup
from emberformer.training.run_state import NonFiniteLoss, RunState


def prefixed(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}{k}": v for k, v in metrics.items()}


def ceiling_summary(run: RunSetup, summary: dict[str, Any]) -> dict[str, Any]:
    """``ceiling/test_*`` (the simulator's own ensemble on the test split: data=synthetic and the
    built-in set of data=wsts) and the share of the copy-last -> ceiling gap that best.pt closes
    in the data's headline metric (``gap_closed/test_f1``; ``gap_closed/test_ap`` on WSTS, which
    the benchmark scores by AP)."""
    from emberformer.scoring import ceiling  # imports the simulator (pytorchfire): only when used

    ceil = ceiling.ceiling_scores(run.data, "test", run.settings.ceiling_samples, run.settings.thresh,
                                  progress=run.settings.progress)
    if ceil is None:  # no simulator behind the data: one line was printed
        return {}
    out: dict[str, Any] = prefixed("ceiling/test_", {k: v for k, v in ceil.items()
                                                      if k not in ("ece", "samples", "reliability")})
    key = getattr(run.data, "primary_metric", "f1")
    gap = ceiling.gap_closed(summary[f"test/{key}"], summary[f"copy_last/test_{key}"], ceil[key])
    if gap is not None:
        out[f"gap_closed/test_{key}"] = gap
    if ceil["growth_f1"] > 0:
        out["ceiling_share/test_growth_f1"] = summary["test/growth_f1"] / ceil["growth_f1"]
    return out


def limited_test_pass(run: RunSetup) -> str | None:
    """The line that says why the ceiling is left out when ``trainer.limit_batches`` cut the test
    pass short (None when the test pass saw the whole split). The ceiling scores every sample of
    the split: beside a model and copy-last scored on a part of it, its gap-closed share would
    compare different samples."""
    limit, batches = run.settings.limit_batches, len(run.loaders["test"])
    if limit is None or limit >= batches:
        return None
    return (f"Simulator ceiling: left out (no ceiling test line, no gap closed): trainer.limit_batches={limit} "
            f"scored only {limit} of the test split's {batches} batches, and the ceiling scores the whole split; "
            f"leave trainer.limit_batches out to compare them")


def finish(run: RunSetup, state: RunState, copy_last_val: dict[str, float] | None, started: float) -> float:
    """Summary of the run: best epoch, copy-last, and best.pt on the test split; returns the best
    monitored value (the sweep objective). The wall time runs from ``started`` to the end of the
    test pass and ceiling: the whole run."""
    distributed.barrier()  # rank 0 may still be writing best.pt
    early, s = run.early, run.settings
    summary: dict[str, Any] = {
        "best/" + early.monitor: early.best_value, "best/epoch": early.best_epoch,
        "params_used": run.learner.n_params, "device": run.hardware.describe(), "wall_time_s": 0.0,
        **run.data.describe(),
        **prefixed("best/", state.best_metrics),
    }
    if state.started_from:
        summary["started_from"] = state.started_from
    if copy_last_val is not None:
        summary.update(prefixed("copy_last/val_", copy_last_val))
    best_path = run.checkpoints.path("best")
    if s.evaluate_test and state.started_from and not best_path.is_file() and run.main:
        print(f"No test pass: no epoch of this run improved {early.monitor} on the checkpoint it started "
              f"from, so it has no best.pt of its own", flush=True)
    if s.evaluate_test and not run.pruning.pruned and len(run.data.datasets["test"]) \
            and best_path.is_file():  # a pruned trial is not worth a test pass
        model = run.learner.model
        model.load_state_dict(load_checkpoint(best_path, map_location=run.device)["model"])
        test, _, copy_test = score_split(run, "test", None, copy_last=True, net=model)
        summary.update(prefixed("test/", test))
        summary.update(prefixed("copy_last/test_", copy_test or {}))
        if run.main and s.ceiling_samples:
            cut = limited_test_pass(run)
            if cut:
                print(cut, flush=True)
            else:
                summary.update(ceiling_summary(run, summary))
    summary["wall_time_s"] = round(time.time() - started, 1)
    run.summary = summary
    if run.main:
        run.logger.summary(summary)
        print(console.results(summary, early.monitor, early.best_value, early.best_epoch,
                              getattr(run.data, "primary_metric", "f1")))
        print(console.complete(), flush=True)
    best = early.best_value
    if not math.isfinite(best):
        raise NonFiniteLoss(f"no finite {early.monitor} in any epoch")
    return float(best)
