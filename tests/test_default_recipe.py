"""The default recipe (issue 10): the model additions, the warm-up + cosine schedule, and the
simulator ceiling in the end-of-training summary and in evaluate, on tiny data."""
from __future__ import annotations

import json
import math

import pytest
import torch

from emberformer.scoring import ceiling
from emberformer.data.datamodule import SyntheticFireDataModule
from emberformer.models.emberformer import KEEP_LAST_LOGIT, EmberFormer
from emberformer.training.optim import ScheduledAdam, adam_cosine

from conftest import run_app

SMALL = dict(d_model=16, nhead=2, num_layers=1, dim_feedforward=32, decoder_hidden_size=16,
             segformer_hidden_sizes=(8, 8, 8, 8), base_channels=8, patch_size=8)


def inputs(B=2, T=3, H=24, W=24, C=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    fire = (torch.rand(B, T, H, W, generator=g) > 0.7).float()
    fire = torch.cummax(fire, dim=1).values  # cumulative, like the data
    return dict(fire=fire, valid_t=torch.ones(B, T, dtype=torch.bool), wind=torch.rand(B, T, 2, generator=g),
                static=torch.rand(B, C, H, W, generator=g))


def test_keep_last_marks_the_last_frame_as_fire():
    torch.manual_seed(0)
    x = inputs()
    plain = EmberFormer(6, **SMALL, pixel_skip=True).eval()
    kept = EmberFormer(6, **SMALL, pixel_skip=True, keep_last=True).eval()
    kept.load_state_dict(plain.state_dict())
    a, b = plain(**x), kept(**x)
    last = x["fire"][:, -1:] > 0.5
    assert torch.all(b[last] == KEEP_LAST_LOGIT)
    assert torch.equal(a[~last], b[~last])  # elsewhere the model decides, unchanged


def test_skip_frames_and_fuse_layers():
    torch.manual_seed(0)
    m = EmberFormer(6, **SMALL, pixel_skip=True, skip_frames=2, fuse_layers=2).eval()
    convs = [c for c in m.refine.fuse if isinstance(c, torch.nn.Conv2d)]
    assert len(convs) == 2 and convs[0].kernel_size == (3, 3)
    assert convs[0].in_channels == 8 + 2 + 6 and convs[1].in_channels == 8  # frames t, t-1 + bands
    x = inputs(T=3)
    y = x | {"fire": x["fire"].clone()}
    y["fire"][:, -2] = 0  # only frame t-1 differs, and only at full resolution in a few pixels
    y["fire"][:, -3] = 0
    assert not torch.equal(m(**x), m(**y))
    # a one-frame history has a zero frame before it (left padding), not an error
    assert m(**inputs(T=1)).shape == (2, 1, 24, 24)
    assert "pixel skip of 2 frames" in m.name


@pytest.mark.parametrize("key,kw", [("model.skip_frames", {"skip_frames": 0}),
                                    ("model.fuse_layers", {"fuse_layers": 1.5}),
                                    ("model.keep_last", {"keep_last": "yes"})])
def test_bad_model_options(key, kw):
    with pytest.raises(ValueError, match=key):
        EmberFormer(6, **SMALL, **kw)


def test_warmup_cosine_schedule():
    groups = {"temporal": [torch.nn.Parameter(torch.zeros(1))], "spatial": [torch.nn.Parameter(torch.zeros(1))]}
    opt = adam_cosine(groups, lr_temporal=2e-3, lr_spatial=1e-3, warmup_epochs=1, min_lr_ratio=0.01)
    assert isinstance(opt, ScheduledAdam) and isinstance(opt, torch.optim.Adam)
    spe, epochs = 10, 5
    f = [opt.factor(s, spe, epochs) for s in range(spe * epochs)]
    assert f[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])  # linear warm-up over epoch 1
    assert f[10] == pytest.approx(1.0) and all(a >= b for a, b in zip(f[10:], f[11:]))  # then only down
    assert f[-1] == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 39 / 40)))
    assert opt.factor(10_000, spe, epochs) == pytest.approx(0.01)  # past the end: the floor
    opt.set_step(25, spe, epochs)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([2e-3 * f[25], 1e-3 * f[25]])
    # the rate is a function of the step alone: a restored optimizer continues the same schedule
    again = adam_cosine(groups, lr_temporal=2e-3, lr_spatial=1e-3)
    again.load_state_dict(opt.state_dict())
    again.set_step(26, spe, epochs)
    assert again.param_groups[0]["lr"] == pytest.approx(2e-3 * f[26])
    for bad, match in (({"warmup_epochs": -1}, "optim.warmup_epochs"), ({"min_lr_ratio": 2}, "optim.min_lr_ratio"),
                       ({"lr_spatial": 0}, "optim.lr_spatial")):
        with pytest.raises(ValueError, match=match):
            adam_cosine(groups, **bad)


@pytest.fixture(scope="module")
def run(tiny_run) -> dict:
    """The session's tiny run (debug=fast: 2 epochs of 3 steps) and its metrics."""
    records = [json.loads(x) for x in (tiny_run.folder / "metrics.jsonl").read_text().splitlines()]
    return {"proc": tiny_run.result, "dir": tiny_run.folder, "records": records,
            "summary": [r["summary"] for r in records if "summary" in r][-1]}


@pytest.mark.slow
def test_summary_has_the_ceiling_beside_test_and_copy_last(run, cache_dir):
    s, out = run["summary"], run["proc"].stdout
    test_keys = {k[len("test/"):] for k in s if k.startswith("test/")} - {"loss"}
    assert {k[len("ceiling/test_"):] for k in s if k.startswith("ceiling/test_")} == test_keys
    for k in ("test/f1", "test/growth_f1", "copy_last/test_f1", "copy_last/val_f1", "ceiling/test_f1",
              "ceiling/test_growth_f1"):
        assert 0 <= s[k] <= 1, k
    # the same numbers as the ceiling module on the same data and split
    dm = SyntheticFireDataModule(num_sequences=6, size=40, max_frames=5, steps_per_frame=1,
                                 cache_dir=str(cache_dir), progress=False)
    dm.setup()
    ceil = ceiling.ceiling_scores(dm, "test", samples=32, progress=False)
    assert s["ceiling/test_f1"] == ceil["f1"] and s["ceiling/test_growth_f1"] == ceil["growth_f1"]
    gap = (s["test/f1"] - s["copy_last/test_f1"]) / (ceil["f1"] - s["copy_last/test_f1"])
    assert s["gap_closed/test_f1"] == pytest.approx(gap)
    assert s["ceiling_share/test_growth_f1"] == pytest.approx(s["test/growth_f1"] / ceil["growth_f1"])
    lines = out.splitlines()
    i = next(n for n, ln in enumerate(lines) if ln.strip().startswith("test (best.pt)"))
    assert lines[i + 1].strip().startswith("copy-last test") and lines[i + 2].strip().startswith("ceiling test")
    assert f"f1={s['ceiling/test_f1']:.4f}" in lines[i + 2]
    assert f"gap closed: {100 * gap:.1f}% of copy-last -> ceiling test F1" in lines[i + 3]


@pytest.mark.slow
def test_lr_follows_warmup_and_cosine(run):
    """debug=fast: 2 epochs of 3 steps; warm-up is epoch 1, so epoch 1 ends at the peak."""
    epochs = [r for r in run["records"] if "train/lr_spatial" in r]
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert epochs[0]["train/lr_spatial"] == pytest.approx(1e-3)
    last = 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 2 / 3))  # step 5 of 6, 3 warm-up steps
    assert epochs[1]["train/lr_spatial"] == pytest.approx(1e-3 * last)
    assert epochs[1]["train/lr_temporal"] == pytest.approx(1e-3 * last)


@pytest.mark.slow
def test_no_ceiling_when_turned_off_or_without_simulator(run, cache_dir, tmp_path):
    ckpt = run["dir"] / "checkpoints" / "best.pt"
    root = SyntheticFireDataModule(num_sequences=6, size=40, max_frames=5, steps_per_frame=1,
                                   cache_dir=str(cache_dir), progress=False).prepare_root()
    proc = run_app("evaluate", [f"ckpt_path={ckpt}", f"data.root={root}", "data.progress=false",
                                f"hydra.run.dir={tmp_path / 'real'}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [ln for ln in proc.stdout.splitlines() if "Simulator ceiling" in ln] == [ceiling.NO_SIMULATOR]
    metrics = json.loads((tmp_path / "real" / "metrics.json").read_text())
    assert set(metrics) - {"checkpoint", "split_overlap"} == {"model", "copy_last", "brier_skill", "reliability"}
    assert set(metrics["brier_skill"]) == {"vs_copy_last"} and set(metrics["reliability"]) == {"model"}  # no ensemble
    assert "gap closed" not in (tmp_path / "real" / "report.md").read_text()
    proc = run_app("evaluate", [f"ckpt_path={ckpt}", "ceiling.samples=0", "data.progress=false",
                                f"hydra.run.dir={tmp_path / 'off'}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    off = json.loads((tmp_path / "off" / "metrics.json").read_text())
    assert set(off) - {"checkpoint", "split_overlap"} == {"model", "copy_last", "brier_skill", "reliability"}
    assert set(off["brier_skill"]) == {"vs_copy_last"} and set(off["reliability"]) == {"model"}
