"""Training and scoring on WildfireSpreadTS (issue 19, deliverables 2 and 3): a tiny TIF-layout data
set written here with tifffile (test_wsts's writer), EmberFormer, EmberFormer+skip and copy-last
trained through the normal app, copy-last's test scores against persistence computed by hand,
padding that changes no score, evaluate of a checkpoint, and the per-fold AP table of a sweep."""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from conftest import one_line_error, run_module
from emberformer.data.dataset import to_device
from emberformer.data.wsts.datamodule import WSTSDataModule
from emberformer.data.wsts.on_device import finish
from emberformer.models.emberformer import EmberFormer
from emberformer.scoring.scores import Scores
from emberformer.training.losses import BCEDiceLoss
from test_wsts import YEARS, centre, dates, hours, make_fire

# (name, days, height, width): fire_c is smaller than the 32-px centre crop and the training
# crop, so it is padded in every split
FIRES = (("fire_a", 4, 40, 36), ("fire_c", 5, 20, 28))
SMALL = dict(d_model=16, nhead=2, num_layers=1, dim_feedforward=32, decoder_hidden_size=32,
             segformer_hidden_sizes=[16, 16, 16, 16], base_channels=8)
TINY_MODEL = [f"model.{k}={v}".replace(" ", "") for k, v in SMALL.items()]


def raw_fires() -> dict[tuple[int, str], np.ndarray]:
    return {(y, name): make_fire(y, k, d, h, w) for y in YEARS for k, (name, d, h, w) in enumerate(FIRES)}


def write_root(root: Path) -> Path:
    for (y, name), arr in raw_fires().items():
        folder = root / str(y) / name
        folder.mkdir(parents=True)
        for d, day in zip(dates(y, len(arr)), arr):
            tifffile.imwrite(folder / f"{d}.tif", day, photometric="minisblack", planarconfig="separate")
    return root


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return write_root(tmp_path_factory.mktemp("wsts_train_root"))


def wsts_args(root: Path, *extra: str) -> list[str]:
    return ["experiment=wsts", f"data.root={root}", "logger=none", "hardware=cpu", "hardware.batch_size=4",
            "data.crop_size=32", "trainer.epochs=2", "trainer.progress=false", "data.progress=false", *extra]


def dm_of(root: Path, cache: Path, **kw) -> WSTSDataModule:
    dm = WSTSDataModule(root=str(root), cache_dir=str(cache), progress=False, crop_size=32, **kw)
    dm.setup()
    return dm


# --------------------------------------------------------------------------- in process

def test_a_batch_becomes_the_model_inputs_by_channel_role(root, tmp_path):
    dm = dm_of(root, tmp_path, batch_size=3, n_leading_observations=2)
    assert (dm.static_channels, dm.day_channels) == (20, 19)  # 40 = 20 static + 19 per day + the fire
    batch = finish(next(iter(dm.loader("train", seed=0))), torch.device("cpu"))  # the 40 channels of the lean batch
    b = to_device(batch, torch.device("cpu"), dm.static_raster())
    x = batch["x"]
    assert torch.equal(b["fire"], x[:, :, 39]) and set(b["fire"].unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(b["static"], x[:, -1, [12, 13, 14, *range(16, 33)]])
    others = [c for c in range(40) if c not in (12, 13, 14, *range(16, 33), 39)]
    assert torch.equal(b["dynamic"], x[:, :, others]) and b["dynamic"].shape == (3, 2, 19, 32, 32)
    assert torch.equal(b["mask"], batch["valid"]) and torch.equal(b["target"], batch["target"])
    assert bool(b["valid_t"].all()) and b["valid_t"].shape == (3, 2) and not bool(b["wind"].any())

    veg = dm_of(root, tmp_path, features="vegetation")  # channels 0-4, 38, 39: nothing static
    assert (veg.static_channels, veg.day_channels) == (0, 6)
    vb = to_device(next(iter(veg.loader("val"))), torch.device("cpu"), veg.static_raster())
    assert vb["static"].shape[1] == 0 and vb["dynamic"].shape[2] == 6
    for data, batch in ((dm, b), (veg, vb)):
        model = EmberFormer(data.static_channels, day_channels=data.day_channels, pixel_skip=True, **SMALL)
        out = model(fire=batch["fire"], valid_t=batch["valid_t"], wind=batch["wind"], static=batch["static"],
                    dynamic=batch["dynamic"])
        assert out.shape == batch["target"].shape
    with pytest.raises(ValueError, match="built for 19 per-day input channel"):
        model = EmberFormer(20, day_channels=19, **SMALL)
        model(fire=b["fire"], valid_t=b["valid_t"], wind=b["wind"], static=b["static"], dynamic=None)


def test_without_per_day_inputs_the_model_has_its_old_weights():
    """day_channels=0 (the built-in data): no new layer, so checkpoints saved before load as they were."""
    old = EmberFormer(5, **SMALL, pixel_skip=True)
    assert not any("dynamic" in k for k in old.state_dict())
    new = EmberFormer(5, day_channels=3, **SMALL, pixel_skip=True)
    extra = set(new.state_dict()) - set(old.state_dict())
    assert extra == {"embed.dynamic.weight", "embed.dynamic.bias"}


def test_padding_pixels_change_no_score(root, tmp_path):
    """fire_c (20x28) is padded to 32x32 in the test batch: whatever the model says there, the
    scores and the loss are those of its real pixels."""
    dm = dm_of(root, tmp_path)
    torch.manual_seed(0)
    model = EmberFormer(dm.static_channels, day_channels=dm.day_channels, **SMALL).eval()
    loss_fn = BCEDiceLoss(bce_weight=0.5, dice_weight=0.5)
    padded = 0
    for batch in dm.loader("test"):
        b = to_device(batch, torch.device("cpu"), dm.static_raster())
        real = int(b["mask"].sum())
        if real < b["mask"].numel():
            padded += 1
            assert b["mask"].shape == (1, 1, 32, 32) and real == 20 * 28
            assert bool(b["mask"][0, 0, :20, :28].all()) and not bool(b["mask"][0, 0, 20:].any())
        with torch.no_grad():
            logits = model(fire=b["fire"], valid_t=b["valid_t"], wind=b["wind"], static=b["static"],
                           dynamic=b["dynamic"])
        results = []
        for fill in (None, 30.0, -30.0):
            lg = logits if fill is None else logits.masked_fill(~b["mask"], fill)
            s = Scores(0.5, torch.device("cpu"), copy_last=False, loss=True)
            s.update(torch.sigmoid(lg), None, b["fire"][:, -1:] > 0.5, b["target"], b["mask"])
            s.add_loss(loss_fn(lg, b["target"], b["mask"])["loss"], 1)
            s.all_reduce()
            results.append(s.metrics())
        assert results[0] == results[1] == results[2]
    assert padded == 5 - 1  # every test sample of fire_c


# --------------------------------------------------------------------------- the apps

def persistence_by_hand(year: int) -> dict[str, float]:
    """Copy-last on the test year's samples (1 day in), pooled over the real pixels of each
    centre crop: tomorrow's active fire predicted as today's; AP of a 0/1 forecast."""
    tp = fp = fn = n = pos = 0
    for (y, name), arr in raw_fires().items():
        if y != year:
            continue
        H, W = arr.shape[-2:]
        h, w = H // 32 * 32 or H, W // 32 * 32 or W
        for t in range(len(arr) - 1):
            today = centre(hours(arr[t, 22]) > 0, h, w)
            tomorrow = centre(hours(arr[t + 1, 22]) > 0, h, w)
            tp += int((today & tomorrow).sum())
            fp += int((today & ~tomorrow).sum())
            fn += int((~today & tomorrow).sum())
            n += today.size
            pos += int(tomorrow.sum())
    prec, rec = tp / (tp + fp), tp / (tp + fn)
    # the precision-recall steps of a 0/1 forecast: (rec, prec) at 1, then (1, base rate) at 0
    ap = prec * rec + (pos / n) * (1 - rec)
    return {"ap": ap, "f1": 2 * tp / (2 * tp + fp + fn), "iou": tp / (tp + fp + fn), "prec": prec, "rec": rec}


def result_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "result.json").read_text())


@pytest.mark.slow
def test_copy_last_scores_are_persistence_by_hand(root, run_env, tmp_path):
    proc = run_module("train", wsts_args(root, "model=copy_last", f"hydra.run.dir={tmp_path / 'run'}"),
                      run_env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    want = persistence_by_hand(2021)  # fold 0: test year 2021
    test = result_of(tmp_path / "run")["test"]
    for who in ("model", "copy_last"):  # the run's model is copy-last itself
        for k, v in want.items():
            assert math.isclose(test[who][k], v, rel_tol=1e-9), (who, k, test[who][k], v)
    assert 0 < want["f1"] < 1 and want["ap"] < want["prec"]
    line = next(ln for ln in proc.stdout.splitlines() if ln.strip().startswith("copy-last test"))
    assert line.split()[2] == f"ap={want['ap']:.4f}"  # AP leads the row on WildfireSpreadTS
    assert f"f1={want['f1']:.4f} iou={want['iou']:.4f} prec={want['prec']:.4f} rec={want['rec']:.4f}" in line


@pytest.fixture(scope="module")
def emberformer_run(root, run_env, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("wsts_ef")
    proc = run_module("train", wsts_args(root, "model=emberformer", *TINY_MODEL, f"hydra.run.dir={cwd / 'run'}"),
                      run_env, cwd)
    return proc, cwd / "run"


@pytest.mark.slow
def test_emberformer_trains_and_reports_test_ap_first(emberformer_run):
    proc, run_dir = emberformer_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "Model: EmberFormer (segformer decoder)\n" in out
    assert "Fires: train 4, val 2, test 2 (test samples: 7)" in out
    assert "Early stopping: enabled (patience=10, monitor=val/ap)" in out
    rows = {label: re.search(rf"^  {re.escape(label)} +ap=(\d\.\d{{4}}) f1=", out, re.M)
            for label in ("val (best epoch)", "copy-last val", "test (best.pt)", "copy-last test")}
    assert all(rows.values()), out
    test = result_of(run_dir)["test"]
    assert rows["test (best.pt)"].group(1) == f"{test['model']['ap']:.4f}"
    assert math.isclose(test["copy_last"]["ap"], persistence_by_hand(2021)["ap"], rel_tol=1e-9)
    assert (run_dir / "checkpoints" / "best.pt").is_file()
    assert json.loads((run_dir / "split.json").read_text())["test"] == {
        "years": [2021], "fires": ["2021/fire_a", "2021/fire_c"]}


@pytest.mark.slow
def test_evaluate_of_the_checkpoint_scores_what_training_did(emberformer_run, run_env, tmp_path):
    _, run_dir = emberformer_run
    proc = run_module("evaluate", [f"ckpt_path={run_dir / 'checkpoints' / 'best.pt'}", "hardware=cpu",
                                   f"hydra.run.dir={tmp_path / 'ev'}"], run_env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    test = result_of(run_dir)["test"]
    for who in ("model", "copy_last"):
        for k, v in test[who].items():
            assert math.isclose(metrics[who][k], v, rel_tol=1e-6, abs_tol=1e-9), (who, k)
    assert metrics["model"]["samples"] == 7
    from emberformer.scoring.ceiling import NO_SIMULATOR  # experiment=wsts asks for the ceiling: a real root has none
    assert proc.stdout.splitlines()[0] == NO_SIMULATOR
    table = [ln.split()[0] for ln in proc.stdout.splitlines()[3:5]]
    assert table == ["ap", "f1"]  # the field's metric first


@pytest.mark.slow
def test_emberformer_skip_trains_without_keep_last(root, run_env, tmp_path):
    proc = run_module("train", wsts_args(root, "model=emberformer_skip", *TINY_MODEL, "trainer.epochs=1",
                                         f"hydra.run.dir={tmp_path / 'run'}"), run_env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Model: EmberFormer (segformer decoder, pixel skip of 2 frames)\n" in proc.stdout
    assert "test" in result_of(tmp_path / "run")


@pytest.mark.slow
def test_keep_last_is_refused_on_active_fire_targets(root, run_env, tmp_path):
    """data=wsts with the default model (keep_last=true): one line, before any data is read."""
    proc = run_module("train", ["data=wsts", f"data.root={root}", "logger=none", "hardware=cpu",
                                f"hydra.run.dir={tmp_path / 'run'}"], run_env, tmp_path)
    line = one_line_error(proc)
    assert "model.keep_last=true" in line and "set model.keep_last=false" in line


@pytest.mark.slow
def test_a_fold_sweep_ends_with_the_per_fold_ap_table(root, run_env, tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = run_module("train", ["-m", *wsts_args(root, "model=emberformer", *TINY_MODEL, "trainer.epochs=1",
                                                 "data.fold=0,1", f"hydra.sweep.dir={sweep_dir}")],
                      run_env, tmp_path, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "Test scores of 2 job(s)" in out
    header = next(ln for ln in out.splitlines() if ln.strip().startswith("job"))
    assert header.split()[1:5] == ["test", "ap", "copy-last", "ap"]
    per_fold = {}
    for fold in (0, 1):
        m = re.search(rf"^  data\.fold={fold} +(\d\.\d{{4}}) +(\d\.\d{{4}})", out, re.M)
        assert m, out
        test = result_of(sweep_dir / str(fold))["test"]
        assert m.group(1) == f"{test['model']['ap']:.4f}" and m.group(2) == f"{test['copy_last']['ap']:.4f}"
        per_fold[fold] = test
    # fold 0 tests on 2021, fold 1 on 2020: persistence on each year by hand
    for fold, year in ((0, 2021), (1, 2020)):
        assert math.isclose(per_fold[fold]["copy_last"]["ap"], persistence_by_hand(year)["ap"], rel_tol=1e-9)
    aps = [per_fold[f]["model"]["ap"] for f in (0, 1)]
    mean, std = sum(aps) / 2, abs(aps[0] - aps[1]) / math.sqrt(2)  # sample std of two values
    m = re.search(r"^  mean \+- std +(\d\.\d{4}) \+- (\d\.\d{4})", out, re.M)
    assert m and m.groups() == (f"{mean:.4f}", f"{std:.4f}"), out
    rows = (sweep_dir / "test_scores.csv").read_text().splitlines()
    assert rows[0].startswith("job,test_ap,copy_last_ap,test_f1") and rows[-2].startswith("mean,")
