"""Autoregressive rollouts scored by lead time (issue 13), on tiny built-in data."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from emberformer.data import simulator
from emberformer.scoring import ceiling
from emberformer.scoring import rollout
from emberformer.evaluate import Scores
from emberformer.models.copy_last import CopyLast

from conftest import one_line_error, run_app


@pytest.fixture
def data(tiny_cfg):
    cfg = tiny_cfg("data.progress=false")
    dm = instantiate(cfg.data)
    dm.setup()
    return dm


def by_lead(model, data, split, horizon):
    ds = data.datasets[split]
    scores = rollout.score_by_lead(model, ds, horizon, data.static_raster().float(), torch.device("cpu"),
                                   0.5, 3, lambda: Scores(0.5, torch.device("cpu")))
    return {k: s.result() for k, s in scores.items()}


def test_no_new_fire_model_equals_copy_last_at_every_lead(data):
    out = by_lead(CopyLast(), data, "train", 3)
    assert set(out) == {1, 2, 3}
    for lead, r in out.items():
        assert r["model"] == r["copy_last"], lead
        assert r["copy_last"]["growth_f1"] == 0.0
    assert out[3]["copy_last"]["f1"] < out[1]["copy_last"]["f1"]  # the fire moves on


class GrowOne(torch.nn.Module):
    """Predicts the last frame dilated by one pixel: rollouts must feed its frames back."""

    def forward(self, *, fire, valid_t, wind, static):
        last = fire[:, -1:]
        return (torch.nn.functional.max_pool2d(last, 3, 1, 1) * 2 - 1) * 10


def test_forecasts_are_fed_back_cumulatively(data):
    ds = data.datasets["train"]
    idx = rollout.eligible(ds, 3)[:2]
    leads = rollout.rollout_batch(GrowOne(), ds, idx, 3, data.static_raster().float(), torch.device("cpu"), 0.5)
    grown = leads[0].observed.float()
    for lead in leads:
        grown = torch.nn.functional.max_pool2d(grown, 3, 1, 1)
        assert torch.equal(lead.frame, (grown > 0.5) & lead.mask), lead.lead
        assert torch.equal(lead.observed, leads[0].observed)


def test_samples_without_k_frames_ahead_excluded_consistently(data):
    ds = data.datasets["train"]
    K = 3
    expected = [i for i, (sid, t) in enumerate(ds.samples) if t + K <= ds.meta[sid].frames - 1]
    assert rollout.eligible(ds, K) == expected and 0 < len(expected) < len(ds)
    out = by_lead(CopyLast(), data, "train", K)
    assert {r[n]["samples"] for r in out.values() for n in ("model", "copy_last")} == {len(expected)}
    ceil = ceiling.by_lead(data, "train", 4, K, [ds.samples[i] for i in expected], progress=False)
    assert {c["samples"] for c in ceil.values()} == {len(expected)}
    # lead 1 on the eligible samples = one-step copy-last scored on those samples alone
    one = Scores(0.5, torch.device("cpu"))
    for lead in rollout.rollout_batch(CopyLast(), ds, expected, 1, data.static_raster().float(),
                                      torch.device("cpu"), 0.5):
        one.update(lead.prob, lead.copy_prob, lead.observed, lead.target, lead.mask)
    for name, block in one.result().items():  # brier: float sums in another batching
        assert block == pytest.approx(out[1][name], rel=1e-12)
    assert rollout.max_horizon(ds) == max(ds.meta[s].frames for s in ds.seq_ids) - 1


def test_ceiling_lead_one_is_the_one_step_ceiling(data):
    ds = data.datasets["test"]
    one_step = ceiling.compute(data, "test", samples=8, progress=False)["ceiling"]
    assert ceiling.by_lead(data, "test", 8, 1, list(ds.samples), progress=False)[1] == one_step
    # each lead of the one-run trajectory is the ensemble run that many frames on its own
    rep = simulator.replay([ds.samples[0][0]], **data.gen)[ds.samples[0][0]]
    seeds = ceiling.run_seeds(data.gen["seed"], rep.seq_id, 0, 4)
    n = rep.states.shape[0] - 1
    for k, state in enumerate(ceiling.lead_states(rep, 0, seeds, n), start=1):
        assert torch.equal(state, ceiling.ensemble_states(rep, 0, seeds, k))


def test_check_horizon_errors(data):
    ds = data.datasets["test"]
    longest = rollout.max_horizon(ds)
    assert rollout.check_horizon(longest, ds) == longest
    with pytest.raises(ValueError, match=r"horizon must be >= 1 .*got 0"):
        rollout.check_horizon(0)
    with pytest.raises(ValueError, match="integer"):
        rollout.check_horizon("two")
    with pytest.raises(ValueError, match=rf"horizon={longest + 1} is larger than any sequence .*horizon=1\.\.{longest}"):
        rollout.check_horizon(longest + 1, ds)


@pytest.mark.slow
def test_evaluate_horizon_cli(tmp_path):
    base = ["model=copy_last", "debug=fast", "data.progress=false", "examples=1"]
    runs = {}
    for name, extra in (("plain", []), ("h1", ["horizon=1"]), ("h3", ["horizon=3"])):
        proc = run_app("evaluate", [*base, *extra, f"hydra.run.dir={tmp_path / name}"], tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[name] = tmp_path / name
    for f in ("metrics.json", "report.md"):  # horizon=1: today's output, byte for byte
        assert (runs["plain"] / f).read_bytes() == (runs["h1"] / f).read_bytes()
    assert not (runs["h1"] / "lead_time.png").exists()
    metrics = json.loads((runs["h3"] / "metrics.json").read_text())
    assert set(metrics["by_lead"]) == {"1", "2", "3"}
    for entry in metrics["by_lead"].values():
        assert set(entry) == {"model", "copy_last", "ceiling"}
        assert set(entry["model"]) == set(metrics["model"]) == set(entry["ceiling"])
        assert entry["model"]["samples"] == entry["ceiling"]["samples"] <= metrics["model"]["samples"]
    report = (runs["h3"] / "report.md").read_text()
    assert "## By lead time" in report and "| lead | samples | model F1 | copy-last F1 | ceiling F1 |" in report
    assert (runs["h3"] / "lead_time.png").read_bytes().startswith(b"\x89PNG")
    err = one_line_error(run_app("evaluate", [*base, "horizon=0"], tmp_path / "zero"))
    assert "horizon" in err and "got 0" in err
    err = one_line_error(run_app("evaluate", [*base, "horizon=40"], tmp_path / "big"))
    assert "horizon=40 is larger than any sequence of the test split" in err


def test_predict_horizon_cli(tmp_path):
    base = ["model=copy_last", "debug=fast", "data.progress=false", "sequence=2"]
    proc = run_app("predict", [*base, "horizon=2", "start=1", f"hydra.run.dir={tmp_path / 'ok'}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "ok"
    assert sorted(p.name for p in out.glob("forecast_*.png")) == ["forecast_002.png", "forecast_003.png"]
    from PIL import Image
    with Image.open(out / "sequence_2_from_1.gif") as gif:
        assert gif.n_frames == 2
    from emberformer.data.frames import decode_mask
    assert np.array_equal(decode_mask(out / "forecast_002.png"), decode_mask(out / "forecast_003.png"))
    err = one_line_error(run_app("predict", [*base, "horizon=9"], tmp_path / "far"))
    assert "horizon=9" in err and "sequence 2" in err
