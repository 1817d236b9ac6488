"""`python -m emberformer.train` end to end (in this process, see conftest.run_app), on tiny built-in
synthetic fires."""
from __future__ import annotations

import json
import re

import pytest
import torch

from conftest import TINY, one_line_error, run_app


@pytest.mark.slow
def test_two_epoch_run_prints_the_seed_console(tiny_run):
    proc = tiny_run.result
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "Starting Training: 2 epochs" in out
    for field in ("Model: EmberFormer (segformer decoder, pixel skip of 2 frames, keeps the last frame)",
                  "Train samples: ", "Val samples: ",
                  "Batch size: 4", "LR temporal: 1.00e-03, LR spatial: 1.00e-03",
                  "Loss: BCE (0.5) + Dice (0.5)", "Early stopping: enabled (patience=10, monitor=val/f1)",
                  "Parameters used: "):
        assert field in out, field
    line = re.compile(r"^\[Epoch [12]/2\] BCE\+Dice \| train: loss=\d\.\d{4} f1=\d\.\d{3} prec=\d\.\d{3} "
                      r"\| val: loss=\d\.\d{4} f1=\d\.\d{3} prec=\d\.\d{3} iou=\d\.\d{3}$", re.M)
    assert len(line.findall(out)) == 2
    assert "Epoch 1/2 [Train]" in proc.stderr and "Epoch 2/2 [Val]" in proc.stderr
    assert "loss=" in proc.stderr
    assert out.rstrip().endswith("=" * 60) and "Training complete!" in out
    assert "copy-last val" in out


@pytest.mark.slow
def test_two_epoch_run_writes_its_files(tiny_run):
    proc, run_dir = tiny_run.result, tiny_run.folder
    assert proc.returncode == 0, proc.stderr[-3000:]
    split = json.loads((run_dir / "split.json").read_text())
    assert set(split) == {"train", "val", "test"} and len(split["val"]) >= 1 and len(split["test"]) >= 1
    assert not set(split["train"]) & set(split["val"]) and not set(split["train"]) & set(split["test"])
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "train/loss_step" in r]
    epochs = [r for r in records if "val/f1_epoch" in r]
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert all(0 <= r["val/f1_epoch"] <= 1 and 0 <= r["val/growth_f1_epoch"] <= 1 for r in epochs)
    assert [r["step"] for r in steps] == list(range(1, len(steps) + 1))
    assert all(abs(r["train/loss_step"] - 0.5 * r["train/bce_step"] - 0.5 * r["train/dice_step"]) < 1e-5
               for r in steps)
    best = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=False)
    last = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)
    assert last["epoch"] == 2 and last["epoch_complete"]
    for key in ("model", "optimizer", "scaler", "early_stopping", "config", "metrics"):
        assert key in best and key in last
    assert best["config"]["model"]["d_model"] == 16
    assert best["epoch"] == best["early_stopping"]["best_epoch"]
    assert (run_dir / "curves.png").stat().st_size > 1000
    assert not (run_dir / "wandb").exists()  # logger=none writes no W&B files


def test_missing_data_root_is_one_line_exit_2(tmp_path):
    err = one_line_error(run_app("train", ["data=deep_crown", f"data.root={tmp_path / 'nope'}", "logger=none"],
                                 tmp_path))
    assert err.startswith("Error: data.root ") and "nope" in err and "expected ROOT/landscape" in err


@pytest.mark.slow
def test_early_stopping_block_and_targets(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    proc = run_app("train", [*TINY, "trainer.epochs=5", "early_stopping.patience=1",
                             "early_stopping.min_delta=1.0"], a)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "\n🛑 Early stopping triggered!\n   Best val/f1: " in proc.stdout
    assert " at epoch 1\n   No improvement for 1 epochs\n" in proc.stdout
    assert "[Epoch 2/5]" in proc.stdout and "[Epoch 3/5]" not in proc.stdout
    proc = run_app("train", [*TINY, "trainer.epochs=5", "early_stopping.targets={val/acc:0.01,val/loss:100}"], b)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "🎯 Target metrics achieved!" in proc.stdout and "[Epoch 2/5]" not in proc.stdout
    assert "targets val/acc=0.01, val/loss=100" in proc.stdout
