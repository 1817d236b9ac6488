"""What an Optuna study leaves in its sweep folder: summary.csv (with each trial's state and the epoch
it reached), summary.md (best trial, trials, parameter importances) and Optuna's own matplotlib
plots: optimisation history, per-epoch values of every trial (pruned ones end early), importances.

Written at the end of every Optuna multirun (by the ``SweepSummary`` callback) and on demand for
an existing study: ``python -m emberformer.study multirun/optuna/<name>``.
"""
from __future__ import annotations

import contextlib
import math
import warnings
from pathlib import Path
from typing import Any, Iterator

import optuna
from optuna.trial import TrialState

from emberformer.sweeps.pruning import FAIL_ATTR, PRUNED_ATTR
from emberformer.sweeps.summary import rank_rows, state_of_status, write_csv

STATES = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed",
          TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}
PLOTS = {"history": "optimization_history.png", "intermediate": "intermediate_values.png",
         "importances": "param_importances.png"}


def open_study(storage: str, study_name: str | None = None) -> optuna.Study:
    """Load a study; without a name, the only study in the storage."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if study_name is None:
            names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
            if len(names) != 1:
                raise ValueError(f"{storage} holds {len(names)} studies ({', '.join(names) or 'none'}); "
                                 "name one with --study-name")
            study_name = names[0]
        try:
            return optuna.load_study(study_name=study_name, storage=storage)
        except KeyError:
            names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
            raise ValueError(f"no study {study_name!r} in {storage}; it holds: {', '.join(names) or 'none'}") \
                from None


def study_rows(study: optuna.Study, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per trial of the study, joined with its job's result.json (by trial number)."""
    by_trial = {r["trial"]: r for r in results if r.get("trial") is not None}
    rows = []
    for t in study.get_trials(deepcopy=False):
        res = by_trial.pop(t.number, {})
        objective = res.get("objective")
        if objective is None and t.state == TrialState.COMPLETE:
            objective = t.value
        if objective is None and t.intermediate_values:  # pruned/failed: best epoch value reported
            vals = [v for v in t.intermediate_values.values() if math.isfinite(v)]
            if vals:
                objective = max(vals) if study.direction == optuna.study.StudyDirection.MAXIMIZE else min(vals)
        # the job's own count (metrics.jsonl) also covers an early-stopped last epoch, which is not
        # reported to the trial; the reported epochs otherwise (a job that left no result.json)
        epochs = res.get("epochs") or (max(t.intermediate_values) if t.intermediate_values else None)
        reason = res.get("reason") or t.user_attrs.get(FAIL_ATTR, "")
        if t.state == TrialState.PRUNED and not reason:
            reason = f"pruned at epoch {t.user_attrs.get(PRUNED_ATTR, epochs)}"
        overrides = res.get("overrides") or " ".join(f"{k}={v}" for k, v in t.params.items())
        rows.append({"trial": t.number, "state": STATES.get(t.state, t.state.name.lower()),
                     "status": res.get("status", ""), "objective": objective,
                     "best_epoch": res.get("best_epoch"), "epochs": epochs, "overrides": overrides,
                     "run_dir": res.get("run_dir", ""), "reason": reason, "params": dict(t.params)})
    for r in by_trial.values():  # jobs whose trial is not in this study (should not happen)
        rows.append({**r, "state": state_of_status(r.get("status", ""))})
    for r in results:  # jobs of the plain plugin sweeper, which knew no trial numbers
        if r.get("trial") is None:
            rows.append({**r, "state": state_of_status(r.get("status", ""))})
    return rows


def _save(ax: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
    fig.set_size_inches(8, 5)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


@contextlib.contextmanager
def _cm_get_cmap() -> Iterator[None]:
    """optuna 2.x's importance plot calls ``matplotlib.cm.get_cmap``, which matplotlib 3.9 removed:
    lend it ``pyplot.get_cmap`` for the duration of the plots."""
    import matplotlib.cm as cm
    import matplotlib.pyplot as plt

    missing = not hasattr(cm, "get_cmap")
    if missing:
        cm.get_cmap = plt.get_cmap  # type: ignore[attr-defined]
    try:
        yield
    finally:
        if missing:
            del cm.get_cmap


def _mark_pruned(ax: Any, study: optuna.Study, metric: str) -> Any:
    """Optuna's per-epoch plot, with a dot per epoch (a trial pruned after one epoch is otherwise
    invisible) and a red cross where a pruned trial was stopped."""
    pruned = {f"Trial{t.number}": t for t in study.get_trials(deepcopy=False) if t.state == TrialState.PRUNED}
    crossed = False
    for line in ax.get_lines():
        line.set_marker("o")
        line.set_markersize(3)
        t = pruned.get(line.get_label())
        if t is not None and t.intermediate_values:
            step = max(t.intermediate_values)
            ax.plot([step], [t.intermediate_values[step]], "x", color="red", markersize=9, mew=2,
                    label=None if crossed else "pruned here")
            crossed = True
    ax.set_xlabel("Epoch")
    ax.set_ylabel(f"best {metric} so far")
    ax.set_title(f"Best {metric} up to each epoch, every trial (what the pruner judges)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=7, ncol=1 + len(ax.get_lines()) // 25)
    return ax


def tie_line(study: optuna.Study, metric: str = "objective") -> str | None:
    """One line when two or more trials completed and all scored the same: then the knobs made no
    difference at this setting, and a random forest over them has nothing to explain (its
    importances are all 0, not the fractions of 1 the report promises). None otherwise."""
    values = [t.value for t in study.get_trials(deepcopy=False)
              if t.state == TrialState.COMPLETE and t.value is not None]
    if len(values) < 2 or max(values) - min(values) > 1e-12 * max(1.0, abs(values[0])):
        return None
    return (f"all {len(values)} completed trials scored {metric} = {_fmt(values[0])}: the knobs made no "
            "difference at this setting, so no importances")


def write_plots(study: optuna.Study, out_dir: Path, metric: str = "objective") -> tuple[dict[str, Path], dict[str, float], list[str]]:
    """Optuna's matplotlib plots as PNGs; returns the files, the importances and notes on what was
    left out (e.g. importances need two completed trials, or differing scores). A plot not drawn
    this time is removed, so that a folder's PNGs are always the ones its summary.md names."""
    import matplotlib

    matplotlib.use("Agg")
    from optuna.visualization import matplotlib as ovm

    files: dict[str, Path] = {}
    notes: list[str] = []
    importances: dict[str, float] = {}
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    with warnings.catch_warnings(), matplotlib.rc_context(), _cm_get_cmap():
        warnings.simplefilter("ignore")
        if complete:
            files["history"] = _save(ovm.plot_optimization_history(study), out_dir / PLOTS["history"])
        else:
            notes.append("optimisation history: no completed trial yet")
        if any(t.intermediate_values for t in study.get_trials(deepcopy=False)):
            ax = _mark_pruned(ovm.plot_intermediate_values(study), study, metric)
            files["intermediate"] = _save(ax, out_dir / PLOTS["intermediate"])
        else:
            notes.append("per-epoch values: no trial reported any (a study run before per-epoch reporting)")
        tied = tie_line(study, metric)
        if tied:
            notes.append(tied)
        elif len(complete) >= 2 and complete[0].distributions:
            try:
                # Optuna's mean-decrease-impurity evaluator: optuna 2.x's default (fANOVA) cannot
                # read the trees of current scikit-learn releases
                evaluator = optuna.importance.MeanDecreaseImpurityImportanceEvaluator(seed=0)
                importances = optuna.importance.get_param_importances(study, evaluator=evaluator)
                if not sum(importances.values()) > 0:  # the parameters explain none of the scores
                    importances = {}
                    notes.append("parameter importances: all 0 (the completed trials' parameters do "
                                 "not explain their scores)")
                else:
                    files["importances"] = _save(ovm.plot_param_importances(study, evaluator=evaluator),
                                                 out_dir / PLOTS["importances"])
            except (ImportError, ValueError, RuntimeError) as e:
                notes.append(f"parameter importances: {type(e).__name__}: {str(e).splitlines()[0]}")
        else:
            notes.append("parameter importances: need at least 2 completed trials")
    for key, name in PLOTS.items():
        if key not in files:
            (out_dir / name).unlink(missing_ok=True)
    return files, importances, notes


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if math.isfinite(v) else str(v)
    return "-" if v in (None, "") else str(v)


def _sentence(line: str) -> str:
    return line[0].upper() + line[1:] + "."


def write_markdown(path: Path, study: optuna.Study, rows: list[dict[str, Any]], metric: str,
                   files: dict[str, Path], importances: dict[str, float], notes: list[str]) -> None:
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    lines = [f"# Study `{study.study_name}`", "",
             f"Objective: {metric}, {study.direction.name.lower()}; "
             + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + f" ({len(rows)} trials).", ""]
    best = next((r for r in rows if r["state"] == "complete"), None)
    if best is not None:
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in (best.get("params") or {}).items()) or best["overrides"]
        lines += [f"Best: trial {best['trial']}, {metric} = {_fmt(best['objective'])} ({shown}).", ""]
    lines += ["| rank | trial | state | " + metric + " | epochs | parameters | reason |",
              "| ---: | ---: | --- | ---: | ---: | --- | --- |"]
    for r in rows:
        params = r.get("params") or {}
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in params.items()) or r.get("overrides", "")
        lines.append(f"| {r['rank']} | {_fmt(r.get('trial'))} | {r['state']} | {_fmt(r.get('objective'))} | "
                     f"{_fmt(r.get('epochs'))} | {shown} | {r.get('reason') or ''} |")
    lines += ["", "## Parameter importances", ""]
    if importances:
        lines += ["Optuna's mean-decrease-impurity evaluator (a random forest over the completed trials; "
                  "importances sum to 1).", "",
                  "| parameter | importance |", "| --- | ---: |"]
        lines += [f"| {k} | {v:.3f} |" for k, v in importances.items()]
        lines += [""]
    tied = tie_line(study, metric)
    if tied:  # the section's whole answer, said plainly rather than as a table of zeros
        lines += [_sentence(tied), ""]
    rest = [f"- {n}" for n in notes if n != tied]
    lines += rest + ([""] if rest else [])
    if files:
        lines += ["## Plots", ""] + [f"![{k}]({p.name})" for k, p in files.items()] + [""]
    path.write_text("\n".join(lines))


def table(rows: list[dict[str, Any]], metric: str, csv_path: Path) -> str:
    lines = [f"Sweep summary ({len(rows)} trials, best {metric} first) -> {csv_path}",
             f"{'#':>3} {'trial':>5}  {'state':<8} {metric:>10} {'epochs':>6}  overrides"]
    for r in rows:
        lines.append(f"{r['rank']:>3} {_fmt(r.get('trial')):>5}  {r['state']:<8} {_fmt(r.get('objective')):>10} "
                     f"{_fmt(r.get('epochs')):>6}  {r.get('overrides', '')}")
        if r["state"] not in ("complete",) and r.get("reason"):
            lines.append(f"{'':>11}reason: {str(r['reason'])[:160]}")
    return "\n".join(lines)


def write_study_report(sweep_dir: Path, study: optuna.Study, results: list[dict[str, Any]],
                       metric: str = "objective") -> str:
    """summary.csv, summary.md and the PNGs in ``sweep_dir``; returns the printed table."""
    sweep_dir = Path(sweep_dir)
    mode = "max" if study.direction == optuna.study.StudyDirection.MAXIMIZE else "min"
    rows = rank_rows(study_rows(study, results), mode)
    write_csv(sweep_dir / "summary.csv", rows)
    files, importances, notes = write_plots(study, sweep_dir, metric)
    write_markdown(sweep_dir / "summary.md", study, rows, metric, files, importances, notes)
    text = table(rows, metric, sweep_dir / "summary.csv")
    tied = tie_line(study, metric)
    if tied:
        text += "\n" + _sentence(tied)
    written = ", ".join(p.name for p in files.values())
    return text + f"\nWritten: summary.csv, summary.md{', ' + written if written else ''}"
