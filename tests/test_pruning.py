"""Pruned Optuna studies on tiny data: trial states in the storage, summary, plots, resume, interrupts."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from PIL import Image

from conftest import run_app, run_module
from emberformer.sweeps.pruning import PRUNED_ATTR, TrialPruning, build_pruner

JOB = ["debug=fast", "logger=none", "trainer.progress=false"]  # data bars on: a sweep's jobs print them
# val/f1 is 0 for every trial on debug=fast data; the loss tells the trials apart (larger weights,
# larger loss), and a median pruner with one start-up trial and no warm-up prunes from epoch 1 on
STUDY = ["hparams_search=loss_weights", "early_stopping.monitor=val/loss", "early_stopping.mode=min",
         "trainer.epochs=3", "hydra.sweeper.pruner=median", "hydra.sweeper.pruners.median.n_startup_trials=1",
         "hydra.sweeper.pruners.median.n_warmup_steps=1", "hydra.sweeper.sampler.seed=3"]


def sweep(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    proc = run_module("train", ["-m", *args, *JOB], env, cwd)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-4000:]
    return proc


def load(study_dir: Path, name: str = "loss_weights") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{study_dir / 'optuna.db'}")


def rows(study_dir: Path) -> list[dict]:
    with open(study_dir / "summary.csv") as f:
        return list(csv.DictReader(f))


def assert_png(path: Path) -> None:
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100


@pytest.mark.slow
def test_pruned_study_records_states_writes_insight_and_resumes(tmp_path, run_env):
    proc = sweep([*STUDY, "hydra.sweeper.n_trials=4"], run_env, tmp_path)
    study_dir = tmp_path / "multirun" / "optuna" / "loss_weights"
    trials = load(study_dir).trials
    states = [t.state for t in trials]
    assert len(trials) == 4 and TrialState.PRUNED in states and TrialState.COMPLETE in states, states
    assert TrialState.FAIL not in states
    for t in trials:  # every job reported each epoch it ran to its own trial: its best val/loss so far
        assert t.intermediate_values and min(t.intermediate_values) == 1
        curve = [t.intermediate_values[e] for e in sorted(t.intermediate_values)]
        assert all(b <= a for a, b in zip(curve, curve[1:])), curve
        if t.state == TrialState.COMPLETE:
            assert curve[-1] == pytest.approx(t.value)
        if t.state == TrialState.PRUNED:
            assert t.user_attrs[PRUNED_ATTR] == max(t.intermediate_values) < 3
        else:
            assert sorted(t.intermediate_values) == [1, 2, 3]
    # a pruned job ends cleanly: both checkpoints kept, result.json says pruned
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    results = {json.loads(p.read_text())["trial"]: (p.parent, json.loads(p.read_text()))
               for p in study_dir.glob("*/result.json")}
    for t in pruned:
        run_dir, res = results[t.number]
        assert res["status"] == "pruned" and res["epochs"] == t.user_attrs[PRUNED_ATTR]
        assert (run_dir / "checkpoints" / "best.pt").is_file() and (run_dir / "checkpoints" / "last.pt").is_file()
    assert "Pruned by the Optuna study at epoch" in proc.stdout
    # summary.csv: the state column and the epoch each trial reached, complete first
    table = rows(study_dir)
    by_trial = {int(r["trial"]): r for r in table}
    assert {r["state"] for r in table} == {"complete", "pruned"}
    for t in trials:
        r = by_trial[t.number]
        assert r["state"] == ("pruned" if t.state == TrialState.PRUNED else "complete")
        assert int(r["epochs"]) == max(t.intermediate_values)
    assert [r["state"] for r in table] == sorted((r["state"] for r in table), key=["complete", "pruned"].index)
    # the plots are images; summary.md has the importances table
    for name in ("optimization_history.png", "intermediate_values.png", "param_importances.png"):
        assert_png(study_dir / name)
    md = (study_dir / "summary.md").read_text()
    assert "## Parameter importances" in md and "| loss.bce_weight |" in md and "| loss.dice_weight |" in md
    # the same command again continues the study; pruned trials stay pruned
    sweep([*STUDY, "hydra.sweeper.n_trials=1", "hydra.sweeper.sampler.seed=4"], run_env, tmp_path)
    again = load(study_dir).trials
    assert len(again) == 5 and [t.state for t in again[:4]] == states
    assert len(rows(study_dir)) == 5
    # on demand, for an existing study
    for p in study_dir.glob("*.png"):
        p.unlink()
    cli = run_app("study", [str(study_dir)], tmp_path)
    assert cli.returncode == 0, cli.stderr
    assert "Sweep summary (5 trials" in cli.stdout
    assert_png(study_dir / "intermediate_values.png")


@pytest.mark.slow
def test_interrupted_trial_is_failed_when_the_study_resumes(tmp_path, run_env):
    study_dir = tmp_path / "multirun" / "optuna" / "loss_weights"
    study_dir.mkdir(parents=True)
    url = f"sqlite:///{study_dir / 'optuna.db'}"
    storage = optuna.storages.RDBStorage(url, heartbeat_interval=1)
    study = optuna.create_study(study_name="loss_weights", storage=storage, direction="maximize")
    left = study.ask()  # a sweep asked for it, its job ran, then the sweep was killed
    storage.record_heartbeat(left._trial_id)
    time.sleep(2.5)  # longer than the grace period (2 heartbeats)
    sweep(["hparams_search=loss_weights", "hydra.sweeper.n_trials=1", "hydra.sweeper.heartbeat_interval=1"],
          run_env, tmp_path)
    trials = load(study_dir).trials
    assert trials[0].state == TrialState.FAIL and trials[0].user_attrs["fail_reason"] == "interrupted"
    assert trials[1].state == TrialState.COMPLETE
    first = next(r for r in rows(study_dir) if r["trial"] == "0")
    assert first["state"] == "failed" and first["reason"] == "interrupted"


def test_trial_pruning_reports_to_its_trial_and_is_a_noop_outside_a_study(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s", storage=url, direction="minimize")
    for v in (1.0, 2.0):  # two completed trials with per-epoch values
        t = study.ask()
        t.report(v, 1)
        t.report(v, 2)
        study.tell(t, v)
    worse, better = study.ask(), study.ask()
    pruner = build_pruner("median", {"n_startup_trials": 1, "n_warmup_steps": 1})
    p_worse = TrialPruning.open("s", url, worse.number, pruner)
    p_better = TrialPruning.open("s", url, better.number, pruner)
    assert p_better.report(1, 0.5) is False and not p_better.pruned
    assert p_worse.report(1, 5.0) is True and p_worse.pruned_at == 1
    fresh = load(tmp_path, "s").trials
    assert fresh[worse.number].intermediate_values == {1: 5.0}
    assert fresh[worse.number].user_attrs[PRUNED_ATTR] == 1
    assert fresh[better.number].intermediate_values == {1: 0.5}
    assert TrialPruning.from_hydra().report(1, 0.1) is False  # not under Hydra: nothing to report to
    with pytest.raises(ValueError, match="allowed: median, successive_halving, hyperband, none"):
        build_pruner("asha")


def test_a_bad_pruner_setting_names_its_key():
    with pytest.raises(ValueError, match=r"^hydra\.sweeper\.pruners\.successive_halving: .*reduction_factor >= 2"):
        build_pruner("successive_halving", {"reduction_factor": 1})
    with pytest.raises(ValueError, match=r"^hydra\.sweeper\.pruners\.median: .*unexpected keyword argument 'typo'"):
        build_pruner("median", {"typo": 1})


def test_successive_halving_keeps_only_the_best_third_at_each_rung(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s", storage=url, direction="maximize")
    pruner = build_pruner("successive_halving", {"min_resource": 1, "reduction_factor": 3})
    assert isinstance(pruner, optuna.pruners.SuccessiveHalvingPruner)
    verdicts = []
    for value in (0.5, 0.9, 0.2, 0.8, 0.95, 0.1):  # epoch-1 values of six trials, one after the other
        t = study.ask()
        verdicts.append(TrialPruning.open("s", url, t.number, pruner).report(1, value))
    # a trial goes on only while it is within the best third of the trials that reached epoch 1
    # (the first ones: only when it is the best so far)
    assert verdicts == [False, False, True, True, False, True]


def test_study_app_errors_are_one_line(tmp_path):
    proc = run_app("study", [str(tmp_path / "missing")], tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("Error: ") and "Traceback" not in proc.stderr
    proc = run_app("study", [str(tmp_path)], tmp_path)
    assert proc.returncode == 2 and "has no optuna.db" in proc.stderr


def test_the_trial_handed_to_a_job_survives_hydra_override_parsing(tmp_path, monkeypatch):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from emberformer.sweeps.optuna_sweeper import absolute_storage, quote

    parser = OverridesParser.create()
    for value in ("loss_weights", "it's", "a\\b", "end\\", "postgresql://user:p@ss@host/db",
                  "sqlite:////tmp/with space/optuna.db"):
        assert parser.parse_override(f"hydra.job.env_set.X={quote(value)}").value() == value
    monkeypatch.chdir(tmp_path)
    assert absolute_storage("sqlite:///multirun/optuna/s/optuna.db") == \
        f"sqlite:///{tmp_path}/multirun/optuna/s/optuna.db"
    assert absolute_storage("sqlite:////abs/optuna.db") == "sqlite:////abs/optuna.db"
    assert absolute_storage("postgresql://h/db") == "postgresql://h/db" and absolute_storage(None) is None


BRACKETS = """
import optuna, sys
from emberformer.sweeps.pruning import build_pruner
optuna.logging.set_verbosity(optuna.logging.ERROR)
study = optuna.create_study(study_name="loss_weights", direction="maximize",
                            pruner=build_pruner("hyperband", {"min_resource": 1, "reduction_factor": 3}, 27))
ids = []
for _ in range(24):
    t = study.ask()
    t.report(0.5, 1)
    t.should_prune()  # sets up the brackets
    ids.append(study.pruner._get_bracket_id(study, study._storage.get_trial(t._trial_id)))
print(ids)
"""


@pytest.mark.slow
def test_hyperband_puts_a_trial_in_the_same_bracket_in_every_process(tmp_path):
    # the sweeper and each job compute a trial's bracket on their own; Python's hash() would differ
    def brackets(seed: str) -> list[int]:
        out = run_module(None, ["-c", BRACKETS], {**os.environ, "PYTHONHASHSEED": seed}, tmp_path, timeout=120)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])

    first = brackets("1")
    assert first == brackets("2") and len(set(first)) == 4, first  # 27 epochs, factor 3: 4 brackets
