"""torchrun with 2 CPU processes (gloo): DistributedDataParallel, reduced metrics, rank-0 files."""
from __future__ import annotations

import json

import pytest
import torch
from hydra.utils import instantiate

from emberformer.scoring.scores import Scores
from emberformer.training.step import evaluate

from conftest import run_module


@pytest.mark.slow
def test_two_process_ddp_on_cpu(tmp_path, run_env, tiny_cfg):
    run_dir = tmp_path / "ddp_run"
    args = ["-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
            "-m", "emberformer.train", "debug=fast", "logger=none", "trainer.limit_batches=null",
            "trainer.progress=false", f"hydra.run.dir={run_dir}"]
    proc = run_module(None, args, dict(run_env, OMP_NUM_THREADS="1"), tmp_path, timeout=300)
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
    # every metric of the two processes, AP included, is one process's on the same samples and
    # weights (issue 18.16: the AP histograms are reduced like the counts): score best.pt here
    cfg = tiny_cfg("trainer.limit_batches=null")
    hw = instantiate(cfg.hardware)
    data = instantiate(cfg.data, **hw.loader_settings())
    data.setup()
    model = instantiate(cfg.model, static_channels=data.static_channels)
    model.load_state_dict(torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)["model"])
    scores = evaluate(model, data.loader("test", 0), Scores(cfg.metrics.pred_thresh, torch.device("cpu"),
                                                            calibration=False, loss=True),
                      device=torch.device("cpu"), static=data.static_raster(), autocast=hw.autocast,
                      loss_fn=instantiate(cfg.loss))
    scores.all_reduce()
    for prefix, one in (("test/", scores.metrics()), ("copy_last/test_", scores.metrics("copy_last"))):
        one.pop("loss", None)  # a mean of per-batch losses: the batches differ with two processes
        assert {k: summary[prefix + k] for k in one} == pytest.approx(one, abs=1e-9), prefix
    assert summary["test/ap"] != summary["copy_last/test_ap"]
    assert summary["wall_time_s"] > 1  # the whole run (data, model, test pass), not the epochs alone
