"""The baselines (issue 21): U-Net, logistic regression and ConvLSTM through the normal apps, the
U-Net's local encoder weights, and the comparison table that ends a multirun over the models."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import segmentation_models_pytorch as smp
import torch

from conftest import TINY, one_line_error, run_app
from emberformer.models.convlstm import ConvLSTM
from emberformer.models.days_as_channels import PER_DAY, DaysAsChannels
from emberformer.models.logistic import LogisticRegression
from emberformer.models.unet import UNet

MODELS = ("copy_last", "logistic", "convlstm", "unet", "emberformer", "emberformer_skip")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def inputs(B: int = 2, T: int = 3, H: int = 37, W: int = 45, static: int = 2, dynamic: int = 0) -> dict:
    g = torch.Generator().manual_seed(0)
    valid = torch.ones(B, T, dtype=torch.bool)
    valid[0, 0] = False  # a short history, left-padded as the data module pads it
    out = {"fire": (torch.rand(B, T, H, W, generator=g) > 0.7).float(), "valid_t": valid,
           "wind": torch.randn(B, T, 2, generator=g), "static": torch.randn(B, static, H, W, generator=g)}
    if dynamic:
        out["dynamic"] = torch.randn(B, T, dynamic, H, W, generator=g)
    return out


def test_days_as_channels_pads_a_short_history_with_zero_days():
    model = LogisticRegression(static_channels=2, days=5)
    x = inputs(T=3)
    flat = model.flat_input(**x)
    assert flat.shape == (2, 5 * PER_DAY + 2, 37, 45) == (2, model.in_channels, 37, 45)
    days = flat[:, :5 * PER_DAY].reshape(2, 5, PER_DAY, 37, 45)
    assert days[:, :2].abs().sum() == 0  # two zero days before the three of the batch
    assert torch.equal(days[:, 2:, 0], x["fire"])  # fire of each day, oldest first
    assert torch.equal(days[:, 2:, 3, 0, 0], x["valid_t"].float())  # the real-day plane
    assert torch.equal(days[1, -1, 1:3, 5, 7], x["wind"][1, -1])  # wind as constant planes
    assert torch.equal(flat[:, -2:], x["static"])
    wsts = UNet(static_channels=2, day_channels=3, days=1)
    assert wsts.flat_input(**inputs(T=1, dynamic=3)).shape[1] == PER_DAY + 3 + 2


@pytest.mark.parametrize("cls", [UNet, LogisticRegression, ConvLSTM])
def test_each_baseline_keeps_the_model_contract(cls):
    """Logits [B,1,H,W] at any frame size (the U-Net pads to a multiple of 32 and crops back),
    every parameter in one of the two optimizer groups, per-day inputs where the data has them."""
    model = cls(static_channels=2, day_channels=3)
    out = model(**inputs(dynamic=3))
    assert out.shape == (2, 1, 37, 45) and torch.isfinite(out).all()
    groups = model.param_groups()
    assert sorted(id(p) for ps in groups.values() for p in ps) == sorted(id(p) for p in model.parameters())
    with pytest.raises(ValueError, match="built for 3 per-day input channel"):
        model(**inputs())
    with pytest.raises(ValueError, match=f"model.bogus is not a setting of model={cls.config}"):
        cls(static_channels=2, bogus=1)
    cls(static_channels=2, d_model=16, keep_last=False)  # presets' EmberFormer keys: accepted, unused


def test_convlstm_reads_padding_as_no_input():
    """A left-padded day leaves the state as it was: the same logits as without the padding."""
    model = ConvLSTM(static_channels=2).eval()
    x = inputs(B=1, T=3)
    x["valid_t"][:] = True
    padded = {k: torch.cat([torch.zeros_like(v[:, :2]), v], dim=1) if k in ("fire", "wind", "valid_t") else v
              for k, v in x.items()}
    assert padded["valid_t"].tolist() == [[False, False, True, True, True]]
    assert torch.allclose(model(**x), model(**padded), atol=1e-6)


def encoder_file(path: Path, in_channels: int = 3, seed: int = 1) -> dict:
    torch.manual_seed(seed)
    state = smp.encoders.get_encoder("resnet18", in_channels=in_channels, weights=None).state_dict()
    torch.save(state, path)
    return state


def test_unet_loads_a_local_encoder_weights_file(tmp_path):
    """An ImageNet-style (3-channel) file is adapted as smp adapts its own weights; a file of this
    input's channel count loads as it is."""
    state = encoder_file(tmp_path / "rgb.pt")
    model = UNet(static_channels=2, encoder_weights_path=str(tmp_path / "rgb.pt"))
    loaded = model.net.encoder.state_dict()
    assert torch.equal(loaded["layer4.1.conv2.weight"], state["layer4.1.conv2.weight"])
    C = model.in_channels
    conv1 = state["conv1.weight"]
    assert loaded["conv1.weight"].shape[1] == C
    for i in (0, 1, 2, 5, C - 1):  # RGB filters repeated over the channels, scaled by 3 / C
        assert torch.allclose(loaded["conv1.weight"][:, i], conv1[:, i % 3] * 3 / C)
    fresh = UNet(static_channels=2)
    assert not torch.equal(fresh.net.encoder.state_dict()["layer4.1.conv2.weight"], state["layer4.1.conv2.weight"])
    own = encoder_file(tmp_path / "own.pt", in_channels=C, seed=2)
    again = UNet(static_channels=2, encoder_weights_path=str(tmp_path / "own.pt"))
    assert torch.equal(again.net.encoder.state_dict()["conv1.weight"], own["conv1.weight"])


def test_an_encoder_file_that_does_not_fit_is_one_line(tmp_path):
    """Before any data work: a resnet34 file for the resnet18 encoder, a missing file, a hub name."""
    torch.save(smp.encoders.get_encoder("resnet34", weights=None).state_dict(), tmp_path / "r34.pt")
    proc = run_app("train", [*TINY, "model=unet", f"model.encoder_weights_path={tmp_path / 'r34.pt'}",
                             f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    err = one_line_error(proc)
    assert err.startswith(f"Error: model.encoder_weights_path={tmp_path / 'r34.pt'} does not fit "
                          "model.encoder_name=resnet18")
    assert "it has layer1.2." in err  # resnet34 has three blocks in layer1
    err = one_line_error(run_app("train", [*TINY, "model=unet", f"model.encoder_weights_path={tmp_path / 'no.pt'}"],
                                 tmp_path))
    assert err.startswith(f"Error: model.encoder_weights_path={tmp_path / 'no.pt'}: no such file")
    err = one_line_error(run_app("train", [*TINY, "model=unet", "model.encoder_weights=imagenet"], tmp_path))
    assert err.startswith("Error: model.encoder_weights=imagenet: weights are never downloaded here")
    (tmp_path / "junk.pt").write_text("not a torch file")
    err = one_line_error(run_app("train", [*TINY, "model=unet", f"model.encoder_weights_path={tmp_path / 'junk.pt'}"],
                                 tmp_path))
    assert "is not a readable torch.save file" in err


@pytest.fixture(scope="module")
def comparison(tmp_path_factory) -> tuple[Path, object]:
    """The issue's comparison command on tiny data: one epoch per model, the whole tiny test split."""
    cwd = tmp_path_factory.mktemp("comparison")
    proc = run_app("train", ["-m", f"model={','.join(MODELS)}", *TINY, "trainer.epochs=1",
                             "trainer.preview_samples=0", "hydra.sweep.dir=sweep"], cwd)
    return cwd / "sweep", proc


@pytest.mark.slow
def test_the_comparison_table_has_one_row_per_model(comparison):
    sweep, proc = comparison
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = (sweep / "summary.md").read_text().splitlines()
    header = next(i for i, line in enumerate(md) if line.startswith("| model |"))
    assert md[header] == ("| model | jobs | test AP | test F1 | test growth F1 | test Brier | parameters | epochs "
                          "| wall time (s) |")
    rows = [line.strip("| ").split(" | ") for line in md[header + 2:] if line.startswith("|")]
    assert [r[0] for r in rows] == [f"model={m}" for m in MODELS] + ["copy-last (persistence)",
                                                                     "simulator ceiling (ensemble)"]
    results = {json.loads(p.read_text())["model"]: json.loads(p.read_text()) for p in sweep.glob("*/result.json")}
    for row in rows[:len(MODELS)]:
        r = results[row[0].removeprefix("model=")]
        t = r["test"]["model"]
        assert row[1:6] == ["1", f"{t['ap']:.4f}", f"{t['f1']:.4f}", f"{t['growth_f1']:.4f}", f"{t['brier']:.4f}"]
        assert row[6] == str(r["params"]) and row[7] == f"{r['epochs']:.1f}" and float(row[8]) == r["wall_time_s"]
    assert rows[0][6] == "0" and int(rows[3][6]) > int(rows[1][6]) > 0  # copy-last none; U-Net > logistic
    copy, ceil = rows[-2], rows[-1]
    first = results["copy_last"]["test"]
    assert copy[2:6] == [f"{first['copy_last'][k]:.4f}" for k in ("ap", "f1", "growth_f1", "brier")]
    assert ceil[2:6] == [f"{first['ceiling'][k]:.4f}" for k in ("ap", "f1", "growth_f1", "brier")]
    assert float(ceil[5]) < float(copy[5])  # the ensemble's probability beats a 0/1 forecast's Brier
    with open(sweep / "summary.csv") as f:
        table = list(csv.DictReader(f))
    assert sorted(r["model"] for r in table) == sorted(MODELS)
    for r in table:
        assert float(r["test_brier"]) == pytest.approx(results[r["model"]]["test"]["model"]["brier"])
        assert int(r["params"]) == results[r["model"]]["params"] and r["test_ap"] and r["test_growth_f1"]
    assert "Comparison (test split)" in proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize("model", ["logistic", "convlstm", "unet"])
def test_a_baseline_checkpoint_evaluates_rolls_out_and_predicts(comparison, model, tmp_path):
    sweep, proc = comparison
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = next(p.parent for p in sweep.glob("*/result.json") if json.loads(p.read_text())["model"] == model)
    best = run / "checkpoints" / "best.pt"
    ev = run_app("evaluate", [f"ckpt_path={best}", "horizon=2", "data.progress=false", "examples=1"], tmp_path / "ev")
    assert ev.returncode == 0, ev.stderr[-3000:]
    out = next((tmp_path / "ev" / "outputs" / "evaluate").glob("*/*"))
    metrics = json.loads((out / "metrics.json").read_text())
    summary = json.loads((run / "result.json").read_text())["test"]["model"]
    assert metrics["model"]["f1"] == pytest.approx(summary["f1"], abs=1e-6)
    assert metrics["model"]["brier"] == pytest.approx(summary["brier"], abs=1e-6)
    assert set(metrics["by_lead"]) == {"1", "2"} and "vs_ensemble" in metrics["brier_skill"]
    assert (out / "reliability.png").read_bytes().startswith(PNG_MAGIC)
    sid = json.loads((run / "split.json").read_text())["test"][0]
    pr = run_app("predict", [f"ckpt_path={best}", f"sequence={sid}", "data.progress=false"], tmp_path / "pr")
    assert pr.returncode == 0, pr.stderr[-3000:]
    assert list((tmp_path / "pr" / "outputs" / "predict").glob("**/pred_001.png"))


@pytest.mark.slow
@pytest.mark.parametrize("model", ["logistic", "convlstm", "unet"])
def test_a_baseline_trains_on_the_builtin_wsts_layout_set(model, tmp_path):
    """experiment=wsts: per-day inputs (``dynamic``) and a non-cumulative target."""
    from test_wsts_builtin_run import TINY_SET

    args = ["experiment=wsts", f"model={model}", "logger=none", "hardware=cpu", "hardware.batch_size=4",
            "data.crop_size=32", "trainer.epochs=1", "trainer.progress=false", "data.progress=false",
            "trainer.preview_samples=0", "ceiling.samples=4", *TINY_SET, f"hydra.run.dir={tmp_path / 'run'}"]
    proc = run_app("train", args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["status"] == "ok" and 0 <= result["test"]["model"]["brier"] <= 1
    assert "brier" in result["test"]["ceiling"]
