"""Issue 18, runs: one owner per run folder (items 1), a resume keeps its data (2) and accepts its
own group choices (8), and the banner says the precision that really runs (11). Real processes,
real signals, real run folders (the owner of a live folder is a real process; the runs it refuses
run in this process)."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import one_line_error, run_app

QUIET = ["logger=none", "trainer.progress=false", "data.progress=false"]
FP16_ASKED = "bf16 (hardware.precision=fp16 asked: CPU autocast runs bf16, fp16 needs a CUDA device)"


def snapshot(folder: Path) -> dict[str, str]:
    """Every file of a run folder with the hash of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def start_train(args: list[str], env: dict, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "emberformer.train", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_line(proc: subprocess.Popen, prefix: str, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    for line in proc.stdout:  # type: ignore[union-attr]
        if line.startswith(prefix):
            return
        assert time.time() < deadline, f"no line {prefix!r} in {timeout} s"
    raise AssertionError(f"the run ended before printing {prefix!r}: {proc.stderr.read()[-3000:]}")


# ------------------------------------------------------------------------------------------ item 1
def test_a_lock_is_refused_while_its_owner_lives_and_free_once_it_is_killed(tmp_path):
    lock = tmp_path / ".run.lock"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom emberformer.files import locks\n"
                               f"locks.acquire({str(lock)!r})\nprint('held', flush=True)\ntime.sleep(600)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"  # type: ignore[union-attr]
        from emberformer.files import locks

        with pytest.raises(locks.Locked) as refused:
            locks.acquire(lock, timeout=0.3)
        assert refused.value.owner.startswith(f"pid {holder.pid} on ")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    with locks.hold(lock):  # the kernel released it with the killed process: nothing left behind
        assert lock.read_text().startswith(f"pid {os.getpid()} on ")
        assert locks.is_held(lock)
    assert not locks.is_held(lock)


@pytest.mark.slow
def test_a_second_run_into_a_live_runs_folder_is_refused_and_a_killed_run_resumes(tmp_path, run_env):
    folder = tmp_path / "D"
    owner = start_train(["debug=fast", *QUIET, "trainer.epochs=100000", "early_stopping=disabled",
                         f"hydra.run.dir={folder}"], run_env, tmp_path)
    try:
        wait_for_line(owner, "[Epoch")  # epoch 1 ended: its last.pt is written
        before = {k: v for k, v in snapshot(folder).items() if k.startswith(".hydra/") or k == "train.log"}
        lock_text = (folder / ".run.lock").read_text()
        assert lock_text.startswith(f"pid {owner.pid} on ")
        # the same command again, into the same folder: refused before Hydra writes anything there
        second = run_app("train", ["debug=fast", *QUIET, f"hydra.run.dir={folder}"], tmp_path)
        line = one_line_error(second)
        assert line.startswith(f"Error: run folder {folder} is in use by a run still going (pid {owner.pid} on ")
        assert line.endswith("one run writes a folder at a time: wait for that run to end, or stop it first")
        # resuming the live run from its last.pt: refused too
        resumed = run_app("train", [f"ckpt_path={folder / 'checkpoints' / 'last.pt'}"], tmp_path)
        assert one_line_error(resumed).startswith(f"Error: run folder {folder} is in use by a run still "
                                                  f"going (pid {owner.pid} on ")
        assert owner.poll() is None  # the owner never noticed
        after = {k: v for k, v in snapshot(folder).items() if k.startswith(".hydra/") or k == "train.log"}
        assert after == before and (folder / ".run.lock").read_text() == lock_text
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.communicate(timeout=60)
    assert owner.returncode == -signal.SIGKILL
    # a SIGKILLed owner leaves its lock file, but not its lock: the stopped run resumes in its folder
    last = torch.load(folder / "checkpoints" / "last.pt", weights_only=False)
    done = last["epoch"] + 1
    proc = run_app("train", [f"ckpt_path={folder / 'checkpoints' / 'last.pt'}", f"trainer.epochs={done}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert torch.load(folder / "checkpoints" / "last.pt", weights_only=False)["epoch"] == done
    assert json.loads((folder / "result.json").read_text())["status"] == "ok"
    assert not (folder / ".run.lock").read_text().startswith(f"pid {owner.pid} ")


# ------------------------------------------------------------------------------- items 2, 8 and 11
@pytest.fixture(scope="module")
def fp16_run(tmp_path_factory, run_env):
    """One epoch of ``debug=fast`` with ``hardware.precision=fp16`` (on this CPU), in its folder."""
    root = tmp_path_factory.mktemp("fp16_run")
    folder = root / "R"
    with pytest.MonkeyPatch.context() as mp:  # a module fixture: the per-test environment is not set yet
        for key, value in run_env.items():
            mp.setenv(key, value)
        proc = run_app("train", ["debug=fast", *QUIET, "hardware.precision=fp16", "trainer.epochs=1",
                                 f"hydra.run.dir={folder}"], root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return folder, proc


@pytest.mark.slow
def test_the_banner_says_fp16_on_cpu_runs_bf16(fp16_run):
    folder, proc = fp16_run
    assert f"  Device: cpu (CPU), {FP16_ASKED}" in proc.stdout.splitlines()
    records = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [r["summary"]["device"] for r in records if "summary" in r] == [f"cpu (CPU), {FP16_ASKED}"]


@pytest.mark.parametrize("override, message", [
    ("data.size=48", "data.size is 48 here but 40 in the checkpoint"),
    ("data.split_seed=1", "data.split_seed is 1 here but 0 in the checkpoint"),
    ("data.splits=[0.6,0.2,0.2]", "data.splits is [0.6, 0.2, 0.2] here but [0.8, 0.1, 0.1] in the checkpoint"),
    ("data.max_history=2", "data.max_history is 2 here but None in the checkpoint"),
    ("data.num_sequences=8", "data.num_sequences is 8 here but 6 in the checkpoint"),
])
@pytest.mark.slow
def test_resume_with_other_data_is_refused_and_changes_nothing(fp16_run, tmp_path, override, message):
    folder, _ = fp16_run
    before = snapshot(folder)
    proc = run_app("train", [f"ckpt_path={folder / 'checkpoints' / 'last.pt'}", override, "trainer.epochs=2"],
                   tmp_path)
    assert one_line_error(proc) == (
        f"Error: {message}: resuming the run in {folder} on other data would mix two data sets in one run "
        "(a resume may change only data.progress, data.cache_dir, data.on_bad_sequence); to train on other "
        "data, start a new run from its checkpoints/best.pt")
    assert snapshot(folder) == before


@pytest.mark.slow
def test_resume_repeating_the_runs_own_groups_is_accepted_and_a_real_change_refused(fp16_run, tmp_path):
    folder, _ = fp16_run
    last = folder / "checkpoints" / "last.pt"
    assert torch.load(last, weights_only=False)["config"]["config_groups"]["hardware"] == "cpu"
    before = snapshot(folder)
    changed = run_app("train", [f"ckpt_path={last}", "hardware=cpu", "logger=wandb"], tmp_path)
    assert one_line_error(changed) == ("Error: logger=wandb: config groups cannot change when resuming from a "
                                       "checkpoint; start a new run instead")
    assert snapshot(folder) == before
    # the groups the run used (debug=fast chose hardware=cpu), repeated, and a data key that may change
    proc = run_app("train", [f"ckpt_path={last}", "debug=fast", "hardware=cpu", "logger=none",
                             "data.progress=false", "trainer.progress=false", "trainer.epochs=2"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Resumed at epoch 2" in proc.stdout
    saved = torch.load(last, weights_only=False)
    assert saved["epoch"] == 2
    # the run's own settings inside those groups stay: fp16 asked, debug=fast's batch size and data
    assert saved["config"]["hardware"]["precision"] == "fp16" and saved["config"]["hardware"]["batch_size"] == 4
    assert saved["config"]["data"]["size"] == 40
