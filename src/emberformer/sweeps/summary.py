"""One table for a whole multirun (grid or Optuna): every job's objective, state and folder.

Each job writes ``result.json`` into its own folder (``write_result``); the Hydra callback
``SweepSummary`` reads them all when the multirun ends, wherever the jobs ran (joblib workers,
SLURM nodes), and writes ``summary.csv`` into the sweep folder, best first. For an Optuna study the
study's storage is the authority on each trial's state (complete / pruned / failed), and the
folder also gets ``summary.md`` and Optuna's plots (``emberformer.sweeps.insight``, imported only
then: Hydra loads this callback at every start, and Optuna takes seconds to import).

Every multirun whose jobs reached a test pass also ends with the test scores of each job beside
copy-last's on the same samples and pixels, and their mean +- std over the jobs (the form the
WildfireSpreadTS benchmark reports its 12 folds in), the monitored metric first; the same table
goes to ``test_scores.csv``.

A grid multirun also ends with the comparison table (``summary.md``, its numbers per job in
``summary.csv``): one row per model (the jobs that differ only in ``seed``, as mean +- std), with
test AP, F1, growth F1, Brier score, parameters, epochs and wall time, and below them copy-last
and the simulator ceiling on the same test samples (``python -m emberformer.train -m
model=copy_last,logistic,convlstm,unet,emberformer,emberformer_skip``; README, "Baselines").

Grid multiruns: a failed job does not end the sweep in a traceback. Its failure is one line
(``Error: job N (overrides): message``), every other job still runs, the summary lists it with its
reason, and the multirun exits with status 1. An Optuna sweep goes on past failed trials too; one
that completed none of its trials (every one failed) exits with status 1 and one line saying so,
so that scripts and schedulers do not take it for a success.
"""
from __future__ import annotations

import csv
import json
import math
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from emberformer.files import locks
from emberformer.sweeps.pruning import TRIAL_ENV

# the comparison's scores of best.pt on the test split (summary.md, summary.csv's test_* columns)
COMPARED = ("ap", "f1", "growth_f1", "brier")
FIELDS = ["rank", "trial", "state", "status", "objective", "best_epoch", "epochs", "model",
          *(f"test_{k}" for k in COMPARED), "params", "wall_time_s", "overrides", "run_dir", "reason"]
STATUS_STATE = {"ok": "complete", "pruned": "pruned", "failed": "failed", "stopped": "failed"}


def state_of_status(status: str) -> str:
    return STATUS_STATE.get(status, status)


def rank_rows(rows: list[dict[str, Any]], mode: str) -> list[dict[str, Any]]:
    """Complete first (best objective first), then pruned (best first), then failed and the rest."""
    order = {"complete": 0, "pruned": 1}

    def key(r: dict[str, Any]) -> tuple[int, float]:
        v = r.get("objective")
        finite = isinstance(v, (int, float)) and math.isfinite(v)
        group = order.get(r.get("state", ""), 2)
        return (group if finite or group == 2 else 2, (-v if mode == "max" else v) if finite else 0.0)

    rows.sort(key=key)
    for i, r in enumerate(rows, 1):
        r["rank"] = i
    return rows


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        for r in rows:
            model_test = (r.get("test") or {}).get("model", {})
            row = {k: r.get(k) for k in FIELDS} | {f"test_{k}": model_test.get(k) for k in COMPARED}
            row["reason"] = " ".join(str(row["reason"] or "").split())  # one line per job
            w.writerow(row)


REPORT_LOCK = ".summary.lock"  # two sweeps on one study write its report one after the other


@dataclass
class SweepTally:
    """How many trials the Optuna sweeper of this process ran, and how many failed: the sweeper
    counts, ``SweepSummary`` reads it when the multirun ends (both run in the sweep's process)."""

    trials: int = 0
    failed: int = 0

    def start(self) -> None:
        self.trials = self.failed = 0

    def add(self, trials: int, failed: int) -> None:
        self.trials += trials
        self.failed += failed


SWEEP_TALLY = SweepTally()


def _epochs_run(run_dir: Path) -> int | None:
    """The last epoch logged in the job's metrics.jsonl."""
    path = Path(run_dir) / "metrics.jsonl"
    last = None
    try:
        for line in path.read_text().splitlines():
            if '"epoch"' in line and '"val/' in line:  # an epoch-end record
                ep = json.loads(line).get("epoch")
                if isinstance(ep, int):
                    last = max(ep, last or 0)
    except (OSError, ValueError):
        return None
    return last


TEST_METRICS = ("ap", "f1", "iou", "prec", "rec")


def test_scores(summary: dict[str, Any]) -> dict[str, dict[str, float]] | None:
    """A run summary's test scores of best.pt, of copy-last and (with a simulator behind the
    data) of the ceiling; None without a test pass."""
    if "test/f1" not in summary:
        return None
    keys = (*TEST_METRICS, *(k for k in COMPARED if k not in TEST_METRICS))
    out = {who: {k: float(summary[f"{prefix}{k}"]) for k in keys if f"{prefix}{k}" in summary}
           for who, prefix in (("model", "test/"), ("copy_last", "copy_last/test_"), ("ceiling", "ceiling/test_"))}
    if not out["ceiling"]:
        del out["ceiling"]
    return out


def run_facts(summary: dict[str, Any]) -> dict[str, Any]:
    """What the comparison shows of a run besides its scores: parameters and wall time."""
    return {k: summary[k] for k in ("params_used", "wall_time_s") if k in summary}


def write_result(run_dir: Path, status: str, objective: float | None = None,
                 best_epoch: int | None = None, reason: str = "",
                 test: dict[str, dict[str, float]] | None = None, facts: dict[str, Any] | None = None) -> None:
    """Called by train at the end of every job: ok, pruned, failed or stopped; ``test``: the
    test scores (:func:`test_scores`) when the run had a test pass; ``facts``: :func:`run_facts`."""
    try:
        hc = HydraConfig.get()
        overrides = " ".join(o for o in hc.overrides.task if not o.startswith("hydra"))
        trial = (hc.job.get("env_set") or {}).get(TRIAL_ENV)
        model = hc.runtime.choices.get("model")
    except ValueError:
        overrides, trial, model = "", None, None
    rec = {"status": status, "objective": objective, "best_epoch": best_epoch,
           "epochs": _epochs_run(run_dir), "overrides": overrides, "run_dir": str(run_dir), "reason": reason,
           "trial": int(trial) if trial not in (None, "") else None, "model": model}
    facts = facts or {}
    if "params_used" in facts:
        rec["params"] = int(facts["params_used"])
    if "wall_time_s" in facts:
        rec["wall_time_s"] = float(facts["wall_time_s"])
    if test is not None:
        rec["test"] = test
    (Path(run_dir) / "result.json").write_text(json.dumps(rec, indent=1))


def read_results(sweep_dir: Path) -> list[dict[str, Any]]:
    rows = []
    for p in sorted(Path(sweep_dir).glob("**/result.json")):
        try:
            rows.append(json.loads(p.read_text()))
        except (OSError, ValueError):
            rows.append({"status": "failed", "run_dir": str(p.parent), "reason": "unreadable result.json"})
    return rows


def collect(sweep_dir: Path, mode: str = "max") -> list[dict[str, Any]]:
    rows = read_results(sweep_dir)
    for r in rows:
        r["state"] = state_of_status(r.get("status", ""))
        if r.get("status") != "ok" and not (isinstance(r.get("objective"), (int, float))
                                            and math.isfinite(r["objective"])):
            r["objective"] = None
    return rank_rows(rows, mode)


def write_summary(sweep_dir: Path, mode: str = "max", metric: str = "objective") -> str:
    """Write summary.csv (grid multiruns) and return the printed table: each job's state, best
    monitored value, best epoch, the epochs it ran, its run folder and its overrides (README's list)."""
    rows = collect(sweep_dir, mode)
    write_csv(Path(sweep_dir) / "summary.csv", rows)
    lines = [f"Sweep summary ({len(rows)} jobs, best {metric} first) -> {Path(sweep_dir) / 'summary.csv'}",
             f"{'#':>3}  {'state':<8} {metric:>10} {'best epoch':>10} {'epochs':>6}  {'run folder':<24} overrides"]
    for r in rows:
        obj = f"{r['objective']:.4f}" if isinstance(r.get("objective"), (int, float)) else "-"
        ep, ran = str(r.get("best_epoch") or "-"), str(r.get("epochs") or "-")
        folder = relative_folder(r.get("run_dir"), Path(sweep_dir))
        lines.append(f"{r['rank']:>3}  {r['state']:<8} {obj:>10} {ep:>10} {ran:>6}  {folder:<24} "
                     f"{r.get('overrides') or '-'}")
        if r["status"] != "ok" and r.get("reason"):
            lines.append(f"{'':>5}reason: {r['reason'][:160]}")
    return "\n".join(lines)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; NaN for a single value)."""
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else math.nan
    return mean, math.sqrt(var)


def run_labels(rows: list[dict[str, Any]]) -> list[str]:
    """What tells the jobs apart: the overrides not shared by all of them (``data.fold=3``)."""
    tokens = [str(r.get("overrides") or "").split() for r in rows]
    common = set.intersection(*(set(t) for t in tokens)) if tokens else set()
    return [" ".join(t for t in ts if t not in common) or Path(str(r.get("run_dir", "?"))).name
            for ts, r in zip(tokens, rows)]


def write_test_table(sweep_dir: Path, metric: str = "objective") -> str | None:
    """The jobs' test scores beside copy-last's, then their mean +- std; the monitored metric's
    column first. Written to test_scores.csv; None when no job reached a test pass."""
    rows = [r for r in read_results(sweep_dir) if r.get("status") == "ok" and isinstance(r.get("test"), dict)]
    if not rows:
        return None
    def job_order(r: dict[str, Any]) -> tuple[float, str]:  # job 2 before job 10
        name = Path(str(r.get("run_dir", ""))).name
        return (int(name) if name.isdigit() else math.inf, str(r.get("run_dir", "")))

    rows.sort(key=job_order)
    keys = list(TEST_METRICS)
    name = metric.partition("/")[2]
    if name in keys:
        keys = [name, *(k for k in keys if k != name)]
    cols = [(who, k) for k in keys for who in ("model", "copy_last")]
    head = [("test " if who == "model" else "copy-last ") + k for who, k in cols]
    labels = run_labels(rows)
    width = max(12, *(len(x) for x in labels))
    values = [[r["test"].get(who, {}).get(k) for who, k in cols] for r in rows]

    def cell(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, (int, float)) else "-"

    lines = [f"Test scores of {len(rows)} job(s) (best.pt; copy-last = persistence on the same samples and "
             f"pixels), mean +- std (n - 1) over the jobs -> {Path(sweep_dir) / 'test_scores.csv'}",
             f"  {'job':<{width}} " + " ".join(f"{h:>17}" for h in head)]
    for label, vals in zip(labels, values):
        lines.append(f"  {label:<{width}} " + " ".join(f"{cell(v):>17}" for v in vals))
    stats = []
    for j in range(len(cols)):
        col = [v[j] for v in values if isinstance(v[j], (int, float))]
        stats.append(mean_std(col) if col else None)
    spread = ["-" if not st else f"{st[0]:.4f}" if math.isnan(st[1]) else f"{st[0]:.4f} +- {st[1]:.4f}"
              for st in stats]
    lines.append(f"  {'mean +- std':<{width}} " + " ".join(f"{v:>17}" for v in spread))
    with open(Path(sweep_dir) / "test_scores.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["job", *[h.replace(" ", "_").replace("-", "_") for h in head], "run_dir"])
        for label, vals, r in zip(labels, values, rows):
            w.writerow([label, *vals, r.get("run_dir")])
        w.writerow(["mean", *[st[0] if st else "" for st in stats], ""])
        w.writerow(["std", *[st[1] if st else "" for st in stats], ""])
    return "\n".join(lines)


COMPARISON_HEADER = ["model", "jobs", "test AP", "test F1", "test growth F1", "test Brier", "parameters",
                     "epochs", "wall time (s)"]


def _spread(values: list[Any], digits: int = 4) -> str:
    """``mean +- std`` of the numbers among ``values`` (the mean alone for one, or when they agree)."""
    nums = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not nums:
        return "-"
    mean, std = mean_std(nums)
    text = f"{mean:.{digits}f}" if digits else f"{mean:.0f}"
    return text if math.isnan(std) or std < 0.5 * 10 ** -digits else f"{text} +- {std:.{digits}f}"


def comparison_rows(sweep_dir: Path) -> list[list[str]]:
    """The comparison table's rows: one per model (jobs that differ only in ``seed=`` together,
    in job order), then copy-last and the simulator ceiling on the same test samples (means over
    every job, which all score the same split)."""
    def job_order(r: dict[str, Any]) -> tuple[float, str]:
        name = Path(str(r.get("run_dir", ""))).name
        return (int(name) if name.isdigit() else math.inf, str(r.get("run_dir", "")))

    rows = sorted((r for r in read_results(sweep_dir) if r.get("status") == "ok" and isinstance(r.get("test"), dict)),
                  key=job_order)
    if not rows:
        return []
    labels = [" ".join(t for t in label.split() if not t.startswith("seed=")) or str(r.get("model") or "-")
              for label, r in zip(run_labels(rows), rows)]
    groups: dict[str, list[dict[str, Any]]] = {}
    for label, r in zip(labels, rows):
        groups.setdefault(label, []).append(r)
    table = []
    for label, jobs in groups.items():
        scores = [j["test"]["model"] for j in jobs]
        table.append([label, str(len(jobs)), *(_spread([s.get(k) for s in scores]) for k in COMPARED),
                      _spread([j.get("params") for j in jobs], 0), _spread([j.get("epochs") for j in jobs], 1),
                      _spread([j.get("wall_time_s") for j in jobs], 1)])
    for who, label in (("copy_last", "copy-last (persistence)"), ("ceiling", "simulator ceiling (ensemble)")):
        scores = [r["test"][who] for r in rows if isinstance(r["test"].get(who), dict)]
        if scores:
            table.append([label, str(len(scores)), *(_spread([s.get(k) for s in scores]) for k in COMPARED),
                          "0" if who == "copy_last" else "-", "-", "-"])
    return table


def write_comparison(sweep_dir: Path) -> str | None:
    """summary.md: the comparison table (:func:`comparison_rows`); returns it as printed, or None
    when no job reached a test pass."""
    table = comparison_rows(sweep_dir)
    if not table:
        return None
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cells) + " |"

    md = ["# Comparison on the test split", "",
          "best.pt of each job on the test split; copy-last and the simulator ceiling on the same samples. "
          "Jobs that differ only in `seed` are one row, mean +- std (n - 1). Brier: mean squared error of "
          "the probability (lower is better); epochs: those run; wall time: the whole run.", "",
          line(COMPARISON_HEADER), "|" + "---|" * len(COMPARISON_HEADER), *map(line, table), ""]
    (Path(sweep_dir) / "summary.md").write_text("\n".join(md))
    widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(COMPARISON_HEADER)]
    out = [f"Comparison (test split) -> {Path(sweep_dir) / 'summary.md'}",
           "  " + "  ".join(h.ljust(w) for h, w in zip(COMPARISON_HEADER, widths))]
    out += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in table]
    return "\n".join(out)


def relative_folder(run_dir: Any, sweep_dir: Path) -> str:
    """A job's run folder as the table shows it: relative to the sweep folder when inside it."""
    if not run_dir:
        return "-"
    try:
        return str(Path(run_dir).resolve().relative_to(sweep_dir.resolve()))
    except ValueError:
        return str(run_dir)


def is_optuna(config: DictConfig) -> bool:
    return "optuna" in str(OmegaConf.select(config, "hydra.sweeper._target_", default="")).lower()


def is_grid(config: DictConfig) -> bool:
    return "BasicSweeper" in str(OmegaConf.select(config, "hydra.sweeper._target_", default=""))


def write_optuna_summary(config: DictConfig, sweep_dir: Path, metric: str) -> str | None:
    """The study's report, when the sweeper's storage can be opened; None otherwise."""
    from emberformer.sweeps.insight import open_study, write_study_report
    from emberformer.sweeps.optuna_sweeper import absolute_storage

    storage = absolute_storage(OmegaConf.select(config, "hydra.sweeper.storage", default=None))
    name = OmegaConf.select(config, "hydra.sweeper.study_name", default=None)
    if not isinstance(storage, str) or name is None:
        return None
    with locks.hold(Path(sweep_dir) / REPORT_LOCK, timeout=300):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study = open_study(storage, name)
        return write_study_report(sweep_dir, study, read_results(sweep_dir), metric)


class SweepSummary(Callback):
    """Hydra callback (conf/train.yaml: hydra.callbacks.sweep_summary)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # the Optuna sweeper opens its SQLite storage inside the sweep folder before any job runs
        Path(config.hydra.sweep.dir).mkdir(parents=True, exist_ok=True)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        """A failed grid job: one line, and the sweep goes on (its result.json says why)."""
        if job_return.status != JobStatus.FAILED or not is_grid(config) \
                or OmegaConf.select(config, "hydra.mode") != RunMode.MULTIRUN:
            return
        err = job_return._return_value
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        overrides = " ".join(o for o in (job_return.overrides or []) if not o.startswith("hydra"))
        print(f"Error: job {config.hydra.job.num} ({overrides}): {msg}", file=sys.stderr, flush=True)
        job_return.status = JobStatus.COMPLETED  # Hydra's basic sweeper would raise it and end the sweep
        job_return.return_value = None

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        mode, metric = config.early_stopping.mode, config.early_stopping.monitor  # what train returns
        text = write_optuna_summary(config, sweep_dir, metric) if is_optuna(config) else None
        print(text or write_summary(sweep_dir, mode, metric), flush=True)
        tests = write_test_table(sweep_dir, metric)
        if tests:
            print(tests, flush=True)
        comparison = write_comparison(sweep_dir) if is_grid(config) else None  # a study's summary.md is its report
        if comparison:
            print(comparison, flush=True)
        report = sweep_dir / ("summary.md" if text else "summary.csv")
        if is_grid(config):
            results = read_results(sweep_dir)
            failed = [r for r in results if r.get("status") != "ok"]
            if failed:
                print(f"{len(failed)} of {len(results)} jobs failed; each one's reason is in {report}",
                      file=sys.stderr, flush=True)
                sys.exit(1)
        elif is_optuna(config) and SWEEP_TALLY.trials and SWEEP_TALLY.failed == SWEEP_TALLY.trials:
            print(f"Error: all {SWEEP_TALLY.trials} trials of this sweep failed, none completed; each "
                  f"trial's reason is in {report}", file=sys.stderr, flush=True)
            sys.exit(1)
