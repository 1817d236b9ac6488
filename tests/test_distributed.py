"""torchrun with 2 CPU processes (gloo): DistributedDataParallel, reduced metrics, rank-0 files."""
from __future__ import annotations

import json
import subprocess
import sys

import torch


def test_two_process_ddp_on_cpu(tmp_path, run_env):
    run_dir = tmp_path / "ddp_run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
           "-m", "emberformer.train", "debug=fast", "logger=none", "trainer.limit_batches=null",
           "trainer.progress=false", f"hydra.run.dir={run_dir}"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=dict(run_env, OMP_NUM_THREADS="1"), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.count("Starting Training: 2 epochs") == 1  # banner and epoch lines from rank 0 only
    assert proc.stdout.count("[Epoch 1/2]") == 1 and proc.stdout.count("Training complete!") == 1
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in rows if "val/f1_epoch" in r]
    assert [r["epoch"] for r in epochs] == [1, 2]
    # 13 training samples over 2 ranks at batch 4: 2 steps per rank per epoch (7 samples each, padded)
    assert max(r["step"] for r in rows if "train/loss_step" in r) == 4
    last = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)
    assert last["epoch"] == 2 and not any(k.startswith("module.") for k in last["model"])
    summary = next(r["summary"] for r in rows if "summary" in r)
    assert summary["data/train_samples"] == 13
