"""Real W&B in offline mode: every key of the reference guide's dashboard, read back with W&B's own tool."""
from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest

from conftest import run_module

pytestmark = pytest.mark.slow  # every test here trains in a real process: W&B's service and threads stay there

WANDB_RUN = ["debug=fast", "trainer.limit_batches=null", "trainer.log_metrics_every=2"]


def leet(path: Path, *flags: str):
    out = subprocess.run(["wandb", "leet", "inspect", str(path), "--json", *flags],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    if "--summary" in flags:
        return json.loads(out.stdout)
    return [json.loads(x) for x in out.stdout.splitlines() if x.strip()]


def history(path: Path) -> list[dict]:
    return [r["history"]["item"] for r in leet(path) if r.get("type") == "history"]


@pytest.fixture(scope="module")
def wandb_run(tmp_path_factory, run_env):
    cwd = tmp_path_factory.mktemp("wb")
    proc = run_module("train", WANDB_RUN, run_env, cwd)
    run_dir = next((cwd / "outputs").glob("*/*"))
    return proc, run_dir


STEP_KEYS = ["train/loss_step", "train/bce_step", "train/dice_step", "train/batch_T_avg"]
RUNNING_KEYS = ["train/prec_step", "train/rec_step", "train/f1_step", "train/iou_step", "train/acc_step"]
EPOCH_KEYS = [f"{s}/{m}_epoch" for s in ("train", "val") for m in ("loss", "prec", "rec", "f1", "iou", "acc")] + [
    "train/T_avg_epoch", "train/lr_temporal", "train/lr_spatial", "early_stop/counter",
    "early_stop/best_value", "early_stop/best_epoch", "val/growth_f1_epoch", "val/growth_prec_epoch",
    "val/growth_rec_epoch", "val/growth_iou_epoch", "val/ap_epoch", "epoch"]


def test_offline_run_has_every_dashboard_key(wandb_run):
    proc, run_dir = wandb_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "W&B run: train_emberformer-emberformer_skip-bce_dice-" in proc.stdout
    assert "W&B sync: wandb sync " in proc.stdout
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    rows = history(runs[0])
    keys = set().union(*rows)
    missing = [k for k in STEP_KEYS + RUNNING_KEYS + EPOCH_KEYS + ["val/preview._type"] if k not in keys]
    assert not missing, missing
    for row in rows:
        for k, v in row.items():
            if k.endswith(("_step", "_epoch")) and "loss" in k or k.endswith("bce_step"):
                assert math.isfinite(v) and v >= 0, (k, v)
            elif k.split("/")[-1].split("_")[0] in ("prec", "rec", "f1", "iou", "acc", "ap", "growth"):
                assert 0.0 <= v <= 1.0, (k, v)
    epochs = [r for r in rows if "val/f1_epoch" in r]
    assert [r["epoch"] for r in epochs] == [1, 2]
    lrs = [r["train/lr_temporal"] for r in epochs]  # optim=adam_cosine: warm-up epoch, then decay
    assert lrs[0] == pytest.approx(1e-3) and 0 < lrs[1] < lrs[0]
    previews = [r for r in rows if "val/preview._type" in r]  # W&B flattens the image list's fields
    assert len(previews) == 2 and previews[0]["val/preview._type"] == "images/separated"
    assert previews[0]["val/preview.count"] == 2 and previews[0]["epoch"] == 1
    assert previews[0]["val/preview.captions"][0].startswith("sequence ")
    assert sorted(p.name for p in (run_dir / "previews").glob("*.png")) == \
        ["epoch_001_0.png", "epoch_001_1.png", "epoch_002_0.png", "epoch_002_1.png"]


def test_offline_run_summary(wandb_run):
    proc, run_dir = wandb_run
    run = next((run_dir / "wandb").glob("offline-run-*"))
    s = leet(run, "--summary")
    assert s["state"] == "finished" and s["exit_code"] == 0
    summ = s["summary"]
    for k in ("best/val/f1", "best/epoch", "params_used", "device", "wall_time_s", "data/train_samples",
              "data/val_samples", "data/test_samples", "data/train_sequences", "data/val_sequences",
              "data/test_sequences", "copy_last/val_f1", "test/f1"):
        assert k in summ, k
    assert summ["params_used"] > 1000 and summ["data/train_sequences"] == 4
    assert "model:emberformer_skip" in s["tags"] and "loss:bce_dice" in s["tags"]
    assert s["config"]["loss"]["dice_weight"] == 0.5  # the resolved config is logged


def test_online_without_network_warns_once_and_trains(tmp_path, run_env):
    env = dict(run_env, WANDB_BASE_URL="http://127.0.0.1:9", WANDB_API_KEY="x" * 40)
    proc = run_module("train", ["debug=fast", "logger.mode=online", "logger.init_timeout=10"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("WARNING: W&B") == 1
    assert "Training complete!" in proc.stdout
    run_dir = next((tmp_path / "outputs").glob("*/*"))
    assert (run_dir / "metrics.jsonl").stat().st_size > 0 and (run_dir / "checkpoints" / "best.pt").is_file()


def test_multirun_gives_one_finished_run_per_job_in_one_group(tmp_path, run_env):
    proc = run_module("train", ["-m", "debug=fast", "loss.dice_weight=0.3,0.7"], run_env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p for p in (tmp_path / "multirun").glob("*/*/*") if p.is_dir() and p.name.isdigit())
    assert len(jobs) == 2
    groups, ids = set(), set()
    for job in jobs:
        runs = list((job / "wandb").glob("offline-run-*"))
        assert len(runs) == 1
        assert leet(runs[0], "--summary")["state"] == "finished"
        run_rec = next(r["run"] for r in leet(runs[0]) if r.get("type") == "run")
        ids.add(run_rec["run_id"])
        groups.add(run_rec["run_group"])
    assert len(ids) == 2
    assert len(groups) == 1 and next(iter(groups)).startswith("sweep-")
