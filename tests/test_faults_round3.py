"""Issue 18, round 3: evaluate on a reshuffled split, gap closed on different samples or without a
gap, copy-last's PR curve, resuming a finished run, the sweep table, metrics.json's checkpoint."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from emberformer import evaluate as evaluate_app
from emberformer.data.datamodule import split_sequences
from emberformer.scoring import ceiling
from emberformer.scoring.metrics import PixelMetrics

from conftest import run_app


@pytest.fixture
def trained(tiny_run) -> Path:
    """The session's finished tiny training run (debug=fast: 6 sequences split 4/1/1); read only."""
    return tiny_run.folder


def evaluate(run: Path, run_env: dict, out: Path, *extra: str):
    proc = run_app("evaluate", [f"ckpt_path={run / 'checkpoints' / 'best.pt'}", "data.progress=false",
                                "examples=0", f"hydra.run.dir={out}", *extra], out.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, json.loads((out / "metrics.json").read_text()), (out / "report.md").read_text()


# ------------------------------------------------------------------ item 3: overlap with training data
@pytest.mark.slow
def test_evaluate_warns_when_the_scored_split_holds_training_sequences(trained, run_env, tmp_path):
    split = json.loads((trained / "split.json").read_text())
    ids = sorted(i for seqs in split.values() for i in seqs)
    seed = next(s for s in range(1, 50)
                if set(split_sequences(ids, (0.8, 0.1, 0.1), s)["test"]) & set(split["train"]))
    other = split_sequences(ids, (0.8, 0.1, 0.1), seed)["test"]
    want = {"train": len(set(other) & set(split["train"])), "val": len(set(other) & set(split["val"])),
            "scored_sequences": len(other)}

    proc, metrics, report = evaluate(trained, run_env, tmp_path / "reshuffled", f"data.split_seed={seed}")
    warnings = [ln for ln in proc.stdout.splitlines() if ln.startswith("WARNING:")]
    assert warnings and len(set(warnings)) == 1, proc.stdout
    line = warnings[0]
    assert "not held out" in line and f"{want['train']} of its {want['scored_sequences']} sequences were " \
        f"trained on and {want['val']} validated on" in line and "data.split_seed" in line
    assert {k: metrics["split_overlap"][k] for k in want} == want
    assert metrics["split_overlap"]["warning"] == line
    assert f"**{line}**" in report

    # by default the checkpoint's own split is scored: held out, no warning
    proc, metrics, report = evaluate(trained, run_env, tmp_path / "own")
    assert "WARNING" not in proc.stdout and "WARNING" not in report
    assert metrics["split_overlap"] == {"train": 0, "val": 0, "scored_sequences": len(split["test"])}

    # split=val is the run's early-stopping split: said so, with the count
    proc, metrics, _ = evaluate(trained, run_env, tmp_path / "val", "split=val")
    assert metrics["split_overlap"]["val"] == len(split["val"]) and metrics["split_overlap"]["train"] == 0
    assert "split=val is one of the splits the run trained or early-stopped on" in proc.stdout


# ------------------------------------------------------------------ item 18e: which checkpoint was scored
@pytest.mark.slow
def test_metrics_json_names_the_checkpoint_and_its_epoch(trained, run_env, tmp_path):
    best = trained / "checkpoints" / "best.pt"
    _, metrics, _ = evaluate(trained, run_env, tmp_path / "ev")
    epoch = torch.load(best, map_location="cpu", weights_only=False)["epoch"]
    assert metrics["checkpoint"] == {"path": str(best.resolve()), "epoch": epoch, "epoch_complete": True}


# ------------------------------------------------------------------ item 18a: gap closed only with a gap
def test_gap_closed_only_where_the_ceiling_is_ahead_of_copy_last():
    base = dict.fromkeys(evaluate_app.KEYS, 0.5) | {"samples": 4}
    result = {"model": base | {"f1": 0.9, "prec": 0.95, "acc": 0.99, "ece": 0.05},
              "copy_last": base | {"f1": 0.8, "prec": 1.0, "acc": 0.990, "ece": 0.20},
              "ceiling": base | {"f1": 1.0, "prec": 0.99, "acc": 0.995, "ece": 0.10}}
    rows = {r[0]: r for r in evaluate_app.side_by_side(result)}
    assert rows["f1"][4] == "50.0%"
    assert rows["prec"][4] == evaluate_app.NO_GAP  # ceiling below copy-last: was -500.0%
    assert rows["acc"][4] == evaluate_app.NO_GAP   # ahead by 0.005 < GAP_MARGIN: was 0.0%
    assert rows["ece"][4] == "150.0%"              # lower is better: copy-last 0.20 -> ceiling 0.10
    assert rows["iou"][4] == evaluate_app.NO_GAP and rows["samples"][4] == ""
    assert ceiling.gap_closed(0.9, 0.8, 1.0) == pytest.approx(0.5)


@pytest.mark.slow
def test_evaluate_report_says_what_a_missing_gap_means(trained, run_env, tmp_path):
    proc, metrics, report = evaluate(trained, run_env, tmp_path / "ev")
    assert evaluate_app.GAP_NOTE in report and evaluate_app.GAP_NOTE in proc.stdout
    prec = next(ln for ln in report.splitlines() if ln.startswith("| prec |"))
    if metrics["ceiling"]["prec"] <= metrics["copy_last"]["prec"] + ceiling.GAP_MARGIN:
        assert prec.endswith(f"| {evaluate_app.NO_GAP} |"), prec
    assert "%" not in prec or metrics["ceiling"]["prec"] > metrics["copy_last"]["prec"] + ceiling.GAP_MARGIN


# ------------------------------------------------------------------ item 18b: a 0/1 predictor is a point
def pixel_metrics(prob: torch.Tensor) -> PixelMetrics:
    torch.manual_seed(0)
    target = (torch.rand(2, 1, 8, 8) > 0.5).float()
    m = PixelMetrics(0.5)
    m.update(prob, target, torch.ones_like(target, dtype=torch.bool), prob > 0.5)
    return m


@pytest.mark.parametrize("binary", [True, False])
def test_pr_curve_draws_a_binary_predictor_as_one_point(binary, tmp_path):
    torch.manual_seed(1)
    prob = (torch.rand(2, 1, 8, 8) > 0.5).float() if binary else torch.rand(2, 1, 8, 8)
    m = pixel_metrics(prob)
    scores = m.compute()
    result = {"model": scores, "copy_last": scores}
    fig = evaluate_app.pr_curve(tmp_path / "pr.png", m, result)
    lines = fig.axes[0].get_lines()
    assert (tmp_path / "pr.png").read_bytes().startswith(b"\x89PNG")
    curves = [ln for ln in lines if len(ln.get_xdata()) > 1]
    assert evaluate_app.binary(m) is binary
    assert len(curves) == (0 if binary else 1)  # was a step curve at precision P out to recall 1
    labels = [ln.get_label() for ln in lines]
    assert any("0/1 predictions: one point" in label for label in labels) is binary


# ------------------------------------------------------------------ item 15: limit_batches and the ceiling
def summary_of(run: Path) -> dict:
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return next(r["summary"] for r in records if "summary" in r)


@pytest.mark.slow
def test_a_test_pass_cut_short_gets_no_ceiling_or_gap_closed(trained, run_env, tmp_path):
    proc = run_app("train", ["debug=fast", "logger=none", "trainer.progress=false", "data.progress=false",
                                "trainer.limit_batches=1", "hardware.batch_size=2",
                                f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    said = [ln for ln in lines if ln.startswith("Simulator ceiling: left out")]
    assert said == ["Simulator ceiling: left out (no ceiling test line, no gap closed): trainer.limit_batches=1 "
                    "scored only 1 of the test split's 2 batches, and the ceiling scores the whole split; "
                    "leave trainer.limit_batches out to compare them"]
    assert not [ln for ln in lines if ln not in said and ("ceiling test" in ln or "gap closed" in ln)]
    assert any(ln.strip().startswith("test (best.pt)") for ln in lines)
    summary = summary_of(tmp_path / "run")
    assert "test/f1" in summary and not [k for k in summary if k.startswith(("ceiling/", "gap_closed/"))]
    # a test pass that saw the whole split (debug=fast: 1 batch, limit 3) keeps both
    full = summary_of(trained)
    assert "ceiling/test_f1" in full and "gap_closed/test_f1" in full


# ------------------------------------------------------------------ item 18c: resuming a finished run
def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def wandb_runs(*folders: Path) -> list[str]:
    """The offline W&B runs under these folders (the logger writes into the run folder)."""
    return sorted(str(p) for f in folders for p in f.rglob("offline-run-*") if p.is_dir())


@pytest.mark.slow
@pytest.mark.parametrize("how", ["all epochs", "early stop"])
def test_resuming_a_finished_run_says_it_is_complete_and_writes_nothing(how, run_env, tmp_path):
    run = tmp_path / "run"
    extra = ["trainer.epochs=4", "early_stopping.targets={val/loss:100}"] if how == "early stop" else []
    proc = run_app("train", ["debug=fast", "logger=wandb", "trainer.progress=false", "data.progress=false",
                                *extra, f"hydra.run.dir={run}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((run / "result.json").read_text())["status"] == "ok"
    before, runs = snapshot(run), wandb_runs(run)
    assert runs  # the run itself opened one (offline)
    last = run / "checkpoints" / "last.pt"
    proc = run_app("train", [f"ckpt_path={last}", "trainer.progress=false", "data.progress=false",
                                f"hydra.run.dir={tmp_path / 'again'}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stdout
    done = "all 2 epochs done" if how == "all epochs" else "stopped early at epoch 1 of 4 (its targets were reached)"
    assert lines[0].startswith(f"Run complete: {done}; best val/f1 ") and "nothing to resume" in lines[0]
    assert f"Its result: {run / 'result.json'}" in lines[0]
    assert "Resumed at" not in proc.stdout and "wall time" not in proc.stdout
    assert snapshot(run) == before          # not a byte, not a timestamp
    assert wandb_runs(run, tmp_path / 'again') == runs  # no second W&B run
    if how == "early stop":
        return
    # more epochs reopen it: the resume trains on (as before)
    proc = run_app("train", [f"ckpt_path={last}", "trainer.epochs=5", "trainer.progress=false",
                                "data.progress=false", f"hydra.run.dir={tmp_path / 'more'}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Run complete" not in proc.stdout and "Resumed at epoch" in proc.stdout


# ------------------------------------------------------------------ item 18d: the printed sweep table
def test_printed_sweep_table_has_the_columns_readme_lists(tmp_path):
    from emberformer.sweeps.summary import write_result, write_summary

    for job, status, objective, best, epochs in (("0", "ok", 0.61, 2, 3), ("1", "ok", 0.72, 4, 5),
                                                  ("2", "failed", None, None, None)):
        run = tmp_path / job
        run.mkdir()
        if epochs:
            (run / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e, "val/f1": 0.5}) + "\n"
                                                       for e in range(1, epochs + 1)))
        write_result(run, status, objective, best, reason="ValueError: bad" if status == "failed" else "")
    lines = write_summary(tmp_path, "max", "val/f1").splitlines()
    header = lines[1].split()
    assert header == ["#", "state", "val/f1", "best", "epoch", "epochs", "run", "folder", "overrides"]
    rows = [ln.split() for ln in lines[2:] if not ln.strip().startswith("reason:")]
    assert rows[0][:6] == ["1", "complete", "0.7200", "4", "5", "1"]
    assert rows[1][:6] == ["2", "complete", "0.6100", "2", "3", "0"]
    assert rows[2][:6] == ["3", "failed", "-", "-", "-", "2"]
    assert "reason: ValueError: bad" in lines[-1]
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "best epoch, state, the epochs it ran and\n  its run folder" in readme
