"""The end of a run: a new run from best.pt ends like any run, with its own best.pt and test pass."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import run_app


@pytest.mark.slow
def test_new_run_from_best_without_a_better_epoch_has_its_own_best_and_test_pass(tmp_path, tiny_run):
    best = torch.load(tiny_run.best, weights_only=False)
    # min_delta=1000: no epoch of the new run can beat the checkpoint it starts from (issue 18.14)
    proc = run_app("train", [f"ckpt_path={tiny_run.best}", "trainer.epochs=3", "trainer.progress=false",
                             "data.progress=false", "early_stopping.min_delta=1000", "hydra.run.dir=fork"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    fork = tmp_path / "fork"
    own = torch.load(fork / "checkpoints" / "best.pt", weights_only=False)
    assert own["epoch"] == best["epoch"]
    assert all(torch.equal(own["model"][k], v) for k, v in best["model"].items())
    assert own["config"]["trainer"]["epochs"] == 3  # the new run's config, not the original's
    records = [json.loads(x) for x in (fork / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if "val/f1_epoch" in r] == list(range(best["epoch"] + 1, 4))
    summary = next(r["summary"] for r in records if "summary" in r)
    assert summary["best/epoch"] == best["epoch"] and 0 <= summary["test/f1"] <= 1
    assert "test (best.pt)" in proc.stdout and "copy-last test" in proc.stdout and "ceiling test" in proc.stdout
    assert json.loads((fork / "result.json").read_text())["best_epoch"] == best["epoch"]
