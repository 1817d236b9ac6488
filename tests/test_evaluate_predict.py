"""`python -m emberformer.evaluate` and `python -m emberformer.predict` end to end, on a tiny run."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from emberformer.data import reader
from emberformer.data.frames import decode_mask
from emberformer.data.synthetic import ensure_synthetic

from conftest import one_line_error, run_app

pytestmark = pytest.mark.slow  # every test here evaluates or predicts with a trained run

KEYS = {"f1", "iou", "prec", "rec", "acc", "ap", "growth_f1", "ece", "samples"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def only_dir(parent: Path) -> Path:
    dirs = [p for p in parent.glob("*/*") if p.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]



@pytest.fixture(scope="module")
def trained(tiny_run) -> dict:
    """The session's tiny training run: its folder, best.pt, split and summary."""
    run = tiny_run.folder
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    summary = next(r["summary"] for r in records if "summary" in r)
    ckpt = torch.load(tiny_run.best, weights_only=False)
    return {"run": run, "ckpt": tiny_run.best, "config": ckpt["config"],
            "split": json.loads((run / "split.json").read_text()), "summary": summary}


@pytest.fixture(scope="module")
def test_eval(trained, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("eval_test")
    proc = run_app("evaluate", [f"ckpt_path={trained['ckpt']}", "data.progress=false"], cwd)
    return proc, only_dir(cwd / "outputs" / "evaluate") if proc.returncode == 0 else None


def test_evaluate_writes_metrics_report_and_figures(trained, test_eval):
    proc, out = test_eval
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) - {"checkpoint", "split_overlap"} == {"model", "copy_last", "ceiling", "brier_skill",
                                                              "reliability"}  # built-in data: the simulator ceiling too
    assert set(metrics["ceiling"]) == set(metrics["model"])
    assert metrics["ceiling"]["f1"] == pytest.approx(trained["summary"]["ceiling/test_f1"], abs=1e-9)
    for block in (metrics[k] for k in ("model", "copy_last", "ceiling")):
        assert KEYS <= set(block)
        assert all(0.0 <= block[k] <= 1.0 for k in KEYS - {"samples"})
        assert block["samples"] == trained["summary"]["data/test_samples"] > 0
    copy = metrics["copy_last"]
    assert copy["growth_f1"] == 0.0 and copy["prec"] == 1.0  # cumulative masks
    # the trainer scored the same checkpoint on the same split
    assert metrics["model"]["f1"] == pytest.approx(trained["summary"]["test/f1"], abs=1e-6)
    assert copy["f1"] == pytest.approx(trained["summary"]["copy_last/test_f1"], abs=1e-6)
    report = (out / "report.md").read_text()
    assert "By history length" in report and "| history | samples |" in report
    assert "| metric | model | copy-last | ceiling | gap closed |" in report
    m, c, top = (metrics[k]["f1"] for k in ("model", "copy_last", "ceiling"))
    assert f"| f1 | {m:.4f} | {c:.4f} | {top:.4f} | {100 * (m - c) / (top - c):.1f}% |" in report
    assert "| 1 |" in report and "(pr_curve.png)" in report
    png = (out / "pr_curve.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 5000
    examples = sorted((out / "examples").glob("example_*.png"))
    assert examples and all(p.read_bytes().startswith(PNG_MAGIC) for p in examples)
    assert "copy-last" in proc.stdout and "growth_f1" in proc.stdout
    # the proper score: Brier skill against copy-last and the simulator's ensemble, reliability bins
    assert metrics["model"]["brier"] == pytest.approx(trained["summary"]["test/brier"], abs=1e-6)
    assert copy["brier"] == pytest.approx(trained["summary"]["copy_last/test_brier"], abs=1e-6)
    assert metrics["ceiling"]["brier"] == pytest.approx(trained["summary"]["ceiling/test_brier"], abs=1e-9)
    skill = metrics["brier_skill"]
    assert skill["vs_copy_last"] == pytest.approx(1 - m_brier(metrics, "model") / m_brier(metrics, "copy_last"))
    assert skill["vs_ensemble"] == pytest.approx(1 - m_brier(metrics, "model") / m_brier(metrics, "ceiling"))
    assert f"- against copy-last: {skill['vs_copy_last']:.4f}" in report and "(reliability.png)" in report
    for who in ("model", "ensemble"):
        table = metrics["reliability"][who]
        assert len(table["count"]) == len(table["prob"]) == len(table["freq"]) == 15
        assert sum(table["count"]) > 0
    assert sum(metrics["reliability"]["model"]["count"]) == sum(metrics["reliability"]["ensemble"]["count"])
    png = (out / "reliability.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 5000
    assert "Brier skill score against copy-last" in proc.stdout


def m_brier(metrics: dict, who: str) -> float:
    return metrics[who]["brier"]


def test_evaluate_val_split_and_bad_split(trained, tmp_path):
    proc = run_app("evaluate", [f"ckpt_path={trained['ckpt']}", "split=val", "hardware.batch_size=2",
                                "data.progress=false"], tmp_path / "val")
    assert proc.returncode == 0, proc.stderr[-3000:]
    samples = json.loads((only_dir(tmp_path / "val" / "outputs" / "evaluate") / "metrics.json")
                         .read_text())["model"]["samples"]
    assert samples == trained["summary"]["data/val_samples"] != trained["summary"]["data/test_samples"]

    err = one_line_error(run_app("evaluate", [f"ckpt_path={trained['ckpt']}", "split=bogus"], tmp_path / "bogus"))
    assert "split" in err and "bogus" in err and "test" in err
    err = one_line_error(run_app("evaluate", [f"ckpt_path={trained['ckpt']}", "examples=-2"], tmp_path / "neg"))
    assert err == "Error: examples must be an integer >= 0, got -2"


def test_evaluate_copy_last_without_checkpoint(tmp_path):
    proc = run_app("evaluate", ["model=copy_last", "debug=fast", "data.progress=false"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((only_dir(tmp_path / "outputs" / "evaluate") / "metrics.json").read_text())
    assert metrics["model"] == pytest.approx(metrics["copy_last"], abs=1e-3)  # logits +/-10, not exact 0/1


def test_predict_writes_frames_and_gif(trained, tmp_path):
    d = trained["config"]["data"]
    root = ensure_synthetic(trained["config"]["data"]["cache_dir"], num_sequences=d["num_sequences"],
                            size=d["size"], max_frames=d["max_frames"],
                            steps_per_frame=d["steps_per_frame"], seed=d["seed"], progress=False)
    seqs = {s.seq_id: s for s in reader.list_sequences(root)}
    sid = trained["split"]["test"][0]
    n_frames = len(seqs[sid].fire_frames)
    size = decode_mask(seqs[sid].fire_frames[0]).shape
    proc = run_app("predict", [f"ckpt_path={trained['ckpt']}", f"data.root={root}", f"sequence={sid}",
                               "data.progress=false"], tmp_path / "ok")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = only_dir(tmp_path / "ok" / "outputs" / "predict")
    preds = sorted(out.glob("pred_*.png"))
    assert [p.name for p in preds] == [f"pred_{t:03d}.png" for t in range(1, n_frames)]
    for p in preds:
        mask = decode_mask(p)
        assert mask.dtype == np.bool_ and mask.shape == size
    with Image.open(out / f"sequence_{sid}.gif") as gif:
        assert gif.n_frames == n_frames - 1

    bad = max(seqs) + 100
    err = one_line_error(run_app("predict", [f"ckpt_path={trained['ckpt']}", f"data.root={root}",
                                          f"sequence={bad}"], tmp_path / "bad"))
    assert str(bad) in err and f"{min(seqs)}..{max(seqs)}" in err
