"""Issue 18, sweeps: a study whose every trial failed ends non-zero (item 5), a changed search space
is one line with nothing left RUNNING (item 6), two sweeps started together on a new SQLite study
both run (item 7). Real sweeps in real processes, the study read from its SQLite file."""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from conftest import TINY, run_module

STUDY = ["hparams_search=loss_weights", "hydra.sweeper.sampler.seed=5"]


def sweep_args(args: list[str]) -> list[str]:
    return ["-m", *STUDY, *args, *TINY]


def sweep_cmd(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "emberformer.train", *sweep_args(args)]


def sweep(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return run_module("train", sweep_args(args), env, cwd, timeout=500)


def trials(study_dir: Path) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="loss_weights", storage=f"sqlite:///{study_dir / 'optuna.db'}").trials


def hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


# ------------------------------------------------------------------------------------------ item 5
@pytest.mark.slow
def test_a_study_whose_every_trial_failed_exits_non_zero_saying_so(tmp_path, run_env):
    proc = sweep(["hydra.sweeper.n_trials=2", "hardware.batch_size=0"], run_env, tmp_path)
    study_dir = tmp_path / "multirun" / "optuna" / "loss_weights"
    assert proc.returncode == 1, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
    assert errors == [f"Error: all 2 trials of this sweep failed, none completed; each trial's reason is in "
                      f"{Path('multirun/optuna/loss_weights/summary.md')}"]
    assert proc.stderr.strip().splitlines()[-1] == errors[0]
    assert "Traceback" not in proc.stderr
    assert [t.state for t in trials(study_dir)] == [TrialState.FAIL, TrialState.FAIL]
    md = (study_dir / "summary.md").read_text()
    assert md.count("hardware.batch_size must be >= 1, got 0") == 2


# ------------------------------------------------------------------------------------------ item 6
@pytest.mark.slow
def test_a_changed_search_space_is_one_line_and_leaves_no_trial_running(tmp_path, run_env):
    # a study whose trial searched loss.bce_weight as an interval (the trial fails at once: no training)
    first = sweep(["hydra.sweeper.n_trials=1", "hardware.batch_size=0"], run_env, tmp_path)
    assert first.returncode == 1, first.stderr[-3000:]
    study_dir = tmp_path / "multirun" / "optuna" / "loss_weights"
    before = hashes(study_dir)
    proc = sweep(["hydra.sweeper.n_trials=2", "loss.bce_weight=choice(0.1,0.5)"], run_env, tmp_path)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert errors == ["Error: loss.bce_weight: the study 'loss_weights' searched it as interval(0.05, 1.0), "
                      "this sweep as choice(0.1, 0.5); a study's search space cannot change kind: sweep it as "
                      "before, or start a new study (hydra.sweeper.study_name=NEW_NAME)"]
    states = [t.state for t in trials(study_dir)]
    assert states == [TrialState.FAIL] and TrialState.RUNNING not in states
    assert hashes(study_dir) == before  # the study's folder (its jobs, summary, database) as it was


# ------------------------------------------------------------------------------------------ item 7
def open_study_at(url: str, barrier, results) -> None:
    """One sweeper opening the study, released at the same moment as the others."""
    import warnings

    from emberformer.sweeps.optuna_sweeper import PrunedOptunaSweeperImpl

    impl = PrunedOptunaSweeperImpl(optuna.samplers.RandomSampler(seed=0), "maximize", url, "loss_weights",
                                   1, 1, 1.0, None, None, None)
    barrier.wait()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results.put(impl.open_study(["maximize"], optuna.pruners.NopPruner()).study_name)
    except Exception as e:  # noqa: BLE001 - reported to the test
        results.put(f"{type(e).__name__}: {str(e).splitlines()[0]}")


@pytest.mark.slow
def test_sweepers_creating_one_new_sqlite_study_at_the_same_moment_all_open_it(tmp_path):
    # without the lock Optuna's table creation races: 'table studies already exists' or
    # 'UNIQUE constraint failed: alembic_version.version_num' in all but one process
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(3), ctx.Queue()
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    procs = [ctx.Process(target=open_study_at, args=(url, barrier, results)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert sorted(results.get(timeout=5) for _ in procs) == ["loss_weights"] * 3
    assert [s.study_name for s in optuna.get_all_study_summaries(url)] == ["loss_weights"]


@pytest.mark.slow
def test_two_sweeps_started_together_on_a_new_study_both_run(tmp_path, run_env):
    cmd = sweep_cmd(["hydra.sweeper.n_trials=1", "trainer.epochs=1"])
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
        assert "Traceback" not in err
    study_dir = tmp_path / "multirun" / "optuna" / "loss_weights"
    done = trials(study_dir)
    assert [t.state for t in done] == [TrialState.COMPLETE, TrialState.COMPLETE]
    # each trial ran in its own folder (named after its trial number), and wrote its own result
    results = {json.loads(p.read_text())["trial"]: p.parent for p in study_dir.glob("*/result.json")}
    assert sorted(results) == [0, 1]
    for number, folder in results.items():
        assert folder.name.endswith(f"_{number}") and (folder / "checkpoints" / "best.pt").is_file()
        assert json.loads((folder / "result.json").read_text())["status"] == "ok"
