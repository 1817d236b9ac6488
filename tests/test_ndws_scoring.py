"""Uncertain pixels (FireMask == -1) leave the whole pipeline (issue 20): a data set's
``target_valid`` becomes part of every batch's ``mask``, so whatever a model says there changes
neither any loss nor any score (model or copy-last, counts, AP histograms, ECE); copy-last is
persistence scored on the valid pixels; previews draw those pixels as unknown; and
``experiment=ndws`` trains and scores end to end."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from conftest import compose_config, run_app
from emberformer.data.dataset import to_device
from emberformer.data.ndws.datamodule import NDWSDataModule
from emberformer.models.copy_last import CopyLast
from emberformer.scoring.metrics import ratios
from emberformer.scoring.scores import KEYS, Scores
from emberformer.training import losses
from emberformer.training.previews import UNKNOWN_RGB, panel
from emberformer.training.step import Prediction, evaluate, model_step
from test_ndws_records import QUICK, write_root
from test_wsts_training import TINY_MODEL

CPU = torch.device("cpu")
LOSSES = (losses.BCEDiceLoss(), losses.BCELoss(pos_weight="auto"), losses.DiceLoss(), losses.FocalTverskyLoss())


@pytest.fixture(scope="module")
def ndws(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ndws_scoring")
    recs = write_root(tmp / "files")
    m = NDWSDataModule(root=str(tmp / "files"), cache_dir=str(tmp / "cache"), batch_size=4, progress=False)
    m.setup()
    return m, recs


def tiny_model(m: NDWSDataModule) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = compose_config("experiment=ndws", *TINY_MODEL)
    return instantiate(cfg.model, static_channels=m.static_channels).eval()


def scored(pred: Prediction, copy: Prediction, mask: torch.Tensor) -> tuple[dict, list[float]]:
    s = Scores(0.5, CPU, copy_last=True, calibration=True)
    s.update(pred.prob, copy.prob, pred.last, pred.target, mask)
    return s.result(), [float(fn(pred.logits, pred.target, mask)["loss"]) for fn in LOSSES]


def test_the_model_output_on_uncertain_pixels_changes_no_loss_and_no_score(ndws):
    m, _ = ndws
    model = tiny_model(m)
    batch = next(iter(m.loader("train")))
    b = to_device(batch, CPU, m.static_raster())
    unknown = b["unknown"]
    assert unknown.any() and not (b["mask"] & unknown).any()
    assert torch.equal(b["mask"] | unknown, batch["valid"])          # every pixel is one or the other
    assert torch.equal(unknown, ~batch["target_valid"])
    with torch.no_grad():
        pred, copy = model_step(model, b), model_step(CopyLast(), b)
    results, loss_values = scored(pred, copy, b["mask"])
    for flip in (lambda x: -x, lambda x: torch.full_like(x, 30.0), lambda x: torch.full_like(x, -30.0)):
        logits = torch.where(unknown, flip(pred.logits), pred.logits)
        copy_logits = torch.where(unknown, flip(copy.logits), copy.logits)
        other = Prediction(logits, pred.last, pred.target, pred.mask)
        other_copy = Prediction(copy_logits, copy.last, copy.target, copy.mask)
        r, lv = scored(other, other_copy, b["mask"])
        assert r == results and lv == loss_values
        # the same change counted on every pixel of the frame does change the scores
        assert scored(other, other_copy, b["mask"] | unknown)[0] != scored(pred, copy, b["mask"] | unknown)[0]
    assert set(results["model"]) == set(KEYS) and np.isfinite(results["model"]["ece"])


def by_hand(prev: np.ndarray, fire: np.ndarray) -> dict[str, float]:
    """Persistence (PrevFireMask as the prediction) on the pixels with FireMask != -1."""
    valid = fire != -1
    pred, tgt = (prev > 0)[valid], (fire == 1)[valid]
    tp, fp = float((pred & tgt).sum()), float((pred & ~tgt).sum())
    fn, tn = float((~pred & tgt).sum()), float((~pred & ~tgt).sum())
    out = ratios(tp, fp, fn, tn)
    # a 0/1 prediction has two thresholds: its positives, then every pixel
    p_top, r_top = tp / (tp + fp), tp / (tp + fn)
    out["ap"] = p_top * r_top + (tp + fn) / valid.sum() * (1 - r_top)
    return out


def test_copy_last_is_persistence_on_the_valid_pixels(ndws):
    m, recs = ndws
    scores = Scores(0.5, CPU, copy_last=True, calibration=True)
    evaluate(CopyLast(), m.loader("test"), scores, device=CPU, static=m.static_raster(), autocast=torch.no_grad)
    result = scores.result()
    test = [r for part in ("test_00", "test_01") for r in recs[part]]
    want = by_hand(np.stack([r["PrevFireMask"] for r in test]), np.stack([r["FireMask"] for r in test]))
    assert (np.stack([r["FireMask"] for r in test]) == -1).any()
    for name in ("copy_last", "model"):  # copy-last as the baseline and as the model scored
        for k, v in want.items():
            assert result[name][k] == pytest.approx(v, abs=1e-9), (name, k)
    assert result["copy_last"]["samples"] == len(test)


def test_previews_draw_uncertain_pixels_as_unknown():
    h = w = 8
    target = np.zeros((h, w))
    target[1, 1] = 1
    unknown = np.zeros((h, w), bool)
    unknown[5, 6] = True
    prob = np.full((h, w), 0.9)
    img = np.asarray(panel(np.zeros((h, w)), target, prob, 0.5, "c", unknown))
    scale, gap = max(1, 160 // h), 4
    for tile in (1, 3):  # the target tile and the error tile
        y, x = 30 + 5 * scale, tile * (w * scale + gap) + 6 * scale
        assert tuple(img[y, x]) == UNKNOWN_RGB
        assert tuple(img[30 + 2 * scale, tile * (w * scale + gap) + 2 * scale]) != UNKNOWN_RGB
    plain = np.asarray(panel(np.zeros((h, w)), target, prob, 0.5, "c"))
    assert tuple(plain[30 + 5 * scale, 3 * (w * scale + gap) + 6 * scale]) != UNKNOWN_RGB


def row(out: str, label: str) -> dict[str, float]:
    m = re.search(rf"^  {re.escape(label)}\s+(.*)$", out, re.M)
    assert m, out
    return {k: float(v) for k, v in re.findall(r"(\w+)=([-\d.]+)", m.group(1))}


def test_experiment_ndws_trains_and_scores_on_a_root(ndws, tmp_path):
    m, recs = ndws
    run_dir = tmp_path / "run"
    proc = run_app("train", [*QUICK, *TINY_MODEL, f"data.root={m.root}", f"data.cache_dir={tmp_path / 'c'}",
                             "trainer.preview_samples=1", f"hydra.run.dir={run_dir}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    copy = row(proc.stdout, "copy-last test")
    test = [r for part in ("test_00", "test_01") for r in recs[part]]
    want = by_hand(np.stack([r["PrevFireMask"] for r in test]), np.stack([r["FireMask"] for r in test]))
    assert list(copy)[0] == "ap"   # AP leads, as papers report it
    assert copy["ap"] == pytest.approx(want["ap"], abs=1e-4) and copy["f1"] == pytest.approx(want["f1"], abs=1e-4)
    assert set(row(proc.stdout, "test (best.pt)")) == set(copy)
    assert (run_dir / "checkpoints" / "best.pt").is_file() and list((run_dir / "previews").glob("*.png"))
    assert "Files: train 2, val 1, test 2 (test samples: 3)" in proc.stdout


@pytest.mark.slow
def test_experiment_ndws_runs_out_of_the_box(tmp_path):
    """The built-in set (simulated, written as the published TFRecords), smaller than the default."""
    proc = run_app("train", [*QUICK, *TINY_MODEL, "data.simulated.fires_per_file=1", "data.simulated.days=3",
                             f"data.cache_dir={tmp_path / 'c'}", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "the built-in simulated Next Day Wildfire Spread set" in proc.stdout
    assert "Train samples: 30" in proc.stdout and "Files: train 15, val 2, test 2 (test samples: 4)" in proc.stdout
    files = sorted(p.name for p in next((tmp_path / "c").glob("ndws-simulated-*")).glob("*.tfrecord"))
    assert len(files) == 19 and files[0] == "next_day_wildfire_spread_eval_00.tfrecord"
    assert row(proc.stdout, "copy-last test") and row(proc.stdout, "test (best.pt)")
