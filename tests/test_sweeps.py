"""Multirun grids and Optuna studies on tiny configs: results, summaries, failures, resumption."""
from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import optuna
import pytest
import yaml

from conftest import run_module

pytestmark = pytest.mark.slow  # every test here runs a sweep in a real process (the launcher is the point)

JOB = ["debug=fast", "logger=none", "trainer.progress=false"]  # every sweep job: debug=fast, 3 batches an epoch


def sweep(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    proc = run_module("train", ["-m", *args, *JOB], env, cwd, timeout=420)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def summary(sweep_dir: Path) -> list[dict]:
    with open(sweep_dir / "summary.csv") as f:
        return list(csv.DictReader(f))


def test_optuna_study_survives_a_failed_trial_and_resumes(tmp_path, run_env):
    # batch size 0 is rejected by the config check: that trial fails, the study goes on
    args = ["hparams_search=loss_weights", "hydra.sweeper.n_trials=3",
            "hardware.batch_size=choice(0,4)", "hydra.sweeper.sampler.seed=5"]
    proc = sweep(args, run_env, tmp_path)
    study_dir = tmp_path / "multirun" / "optuna" / "loss_weights"
    results = yaml.safe_load((study_dir / "optimization_results.yaml").read_text())
    assert set(results["best_params"]) == {"loss.bce_weight", "loss.dice_weight", "hardware.batch_size"}
    assert results["best_params"]["hardware.batch_size"] == 4
    rows = summary(study_dir)
    assert len(rows) == 3 and [r["rank"] for r in rows] == ["1", "2", "3"]
    statuses = [r["status"] for r in rows]
    assert "failed" in statuses and "ok" in statuses
    assert statuses.index("failed") > statuses.index("ok")  # best first, failures last
    failed = next(r for r in rows if r["status"] == "failed")
    assert "hardware.batch_size=0" in failed["overrides"]
    assert "Sweep summary (3 trials, best val/f1 first)" in proc.stdout
    storage = f"sqlite:///{study_dir / 'optuna.db'}"
    states = [t.state for t in optuna.load_study(study_name="loss_weights", storage=storage).trials]
    assert states.count(optuna.trial.TrialState.FAIL) == statuses.count("failed")
    assert len(states) == 3
    # the same command again continues the same study
    sweep(["hparams_search=loss_weights", "hydra.sweeper.n_trials=1", "hydra.sweeper.sampler.seed=4"],
          run_env, tmp_path)
    assert len(optuna.load_study(study_name="loss_weights", storage=storage).trials) == 4
    assert len(summary(study_dir)) == 4


def test_grid_multirun_through_joblib(tmp_path, run_env):
    proc = sweep(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "loss.dice_weight=0.3,0.7"],
                 run_env, tmp_path)
    sweep_dir = next((tmp_path / "multirun").glob("*/*"))
    jobs = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit())
    assert jobs == ["0", "1"]
    for j in jobs:
        assert (sweep_dir / j / "checkpoints" / "best.pt").is_file()
    rows = summary(sweep_dir)
    assert sorted(r["overrides"].split()[0] for r in rows) == ["loss.dice_weight=0.3", "loss.dice_weight=0.7"]
    assert all(r["status"] == "ok" for r in rows)
    assert "Joblib" in proc.stdout + proc.stderr


def test_grid_sweep_with_a_bad_job_runs_the_rest_and_writes_its_summary(tmp_path, run_env):
    # issue 12 item 6: the bad job is one line, the good one runs, summary.csv lists both
    proc = run_module("train", ["-m", "hardware.batch_size=4,0", "trainer.epochs=1", *JOB], run_env, tmp_path,
                      timeout=420)
    assert proc.returncode == 1, proc.stderr[-4000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and errors[0].startswith("Error: job 1 (hardware.batch_size=0 ")
    assert errors[0].endswith("hardware.batch_size must be >= 1, got 0")
    sweep_dir = next((tmp_path / "multirun").glob("*/*"))
    rows = summary(sweep_dir)
    assert [(r["state"], r["overrides"].split()[0]) for r in rows] == [
        ("complete", "hardware.batch_size=4"), ("failed", "hardware.batch_size=0")]
    assert "hardware.batch_size must be >= 1" in rows[1]["reason"]
    assert (sweep_dir / "0" / "checkpoints" / "best.pt").is_file()
