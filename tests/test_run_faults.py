"""Runs, checkpoints and command lines under faults (issue 12): nothing already trained is lost,
a resume is exact mid-epoch, a bad checkpoint or command line is one line naming it."""
from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from conftest import TINY, copy_run, one_line_error, run_app
from emberformer.training import checkpoint
from emberformer.training.checkpoint import CheckpointError
from emberformer.models.base import FireModel
from emberformer.training.run_state import Interrupted


def digest(folder: Path) -> dict[str, str]:
    """sha256 of every file below ``folder``."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def epoch_records(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "epoch" in r and "val/f1_epoch" in r]


# ------------------------------------------------------------------ item 2: exact mid-epoch resume
class SignalAt(FireModel):
    """Wraps a model; sends SIGTERM to this process at the given training forward call."""

    name = "signal test model"

    def __init__(self, inner: torch.nn.Module, at: int | None):
        super().__init__()
        self.inner, self.at, self.calls = inner, at, 0

    def forward(self, **inputs):
        if self.training:
            self.calls += 1
            if self.calls == self.at:
                os.kill(os.getpid(), signal.SIGTERM)
        return self.inner(**inputs)

    def param_groups(self):
        return self.inner.param_groups()


def fit(cfg, run_dir: Path, at: int | None = None, resume: dict | None = None) -> None:
    """What ``train`` does, in-process, with a model that can signal itself."""
    run_dir.mkdir(parents=True, exist_ok=True)
    hw = instantiate(cfg.hardware)
    data = instantiate(cfg.data, **hw.loader_settings())
    data.setup()
    torch.manual_seed(cfg.seed)
    model = SignalAt(instantiate(cfg.model, static_channels=data.static_channels), at)
    if resume is not None:  # train loads the weights once, before the trainer restores the rest
        checkpoint.load_weights(model, resume, None, "last.pt")
    trainer = instantiate(cfg.trainer, progress=False, limit_batches=None)
    trainer.fit(model=model, data=data, loss_fn=instantiate(cfg.loss), optimizer_factory=instantiate(cfg.optim),
                early_stopping=instantiate(cfg.early_stopping), hardware=hw, logger=instantiate(cfg.logger),
                run_dir=run_dir, run_info={"name": "t", "tags": [], "config": {}}, resume=resume)


@pytest.mark.slow
def test_sigterm_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path, tiny_cfg):
    cfg = tiny_cfg("trainer.epochs=4", "trainer.limit_batches=null", "early_stopping=disabled")
    fit(cfg, tmp_path / "straight")
    steps = -(-13 // cfg.hardware.batch_size)  # 13 training samples in debug=fast
    with pytest.raises(Interrupted):
        fit(cfg, tmp_path / "cut", at=2 * steps + 2)  # the second step of epoch 3
    last = checkpoint.load(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert (last["epoch"], last["epoch_complete"], last["global_step"]) == (3, False, 2 * steps + 2)
    fit(cfg, tmp_path / "cut", resume=last)
    a, b = epoch_records(tmp_path / "straight"), epoch_records(tmp_path / "cut")
    assert [r["epoch"] for r in a] == [r["epoch"] for r in b] == [1, 2, 3, 4]
    for ra, rb in zip(a, b):
        for key in ("val/loss_epoch", "val/f1_epoch", "val/iou_epoch", "val/ap_epoch", "train/loss_epoch",
                    "train/f1_epoch", "train/ap_epoch"):
            assert rb[key] == pytest.approx(ra[key], abs=1e-6), (ra["epoch"], key)


# ------------------------------------------------------------------ item 1: best.pt is a new run
@pytest.mark.slow
def test_resume_from_best_is_a_new_run_and_leaves_the_original_untouched(tmp_path):
    first = run_app("train", [*TINY, "trainer.epochs=3", "early_stopping.monitor=val/loss",
                              "early_stopping.mode=min", "hydra.run.dir=orig"], tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    orig = tmp_path / "orig"
    before = digest(orig)
    best = checkpoint.load(orig / "checkpoints" / "best.pt")
    proc = run_app("train", [f"ckpt_path={orig / 'checkpoints' / 'best.pt'}", "trainer.epochs=4",
                             "hydra.run.dir=fork"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert digest(orig) == before  # not one byte of the original run changed
    fork = tmp_path / "fork"
    assert f"New run started from: {orig / 'checkpoints' / 'best.pt'}" in proc.stdout
    records = [json.loads(x) for x in (fork / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if "val/f1_epoch" in r] == list(range(best["epoch"] + 1, 5))
    assert records[-1]["summary"]["started_from"] == str(orig / "checkpoints" / "best.pt")
    assert checkpoint.load(fork / "checkpoints" / "last.pt")["epoch"] == 4
    # pointing the new run at the original folder is refused before anything is written
    err = one_line_error(run_app("train", [f"ckpt_path={orig / 'checkpoints' / 'best.pt'}",
                                           "hydra.run.dir=orig"], tmp_path))
    assert "starts a new run" in err and "hydra.run.dir" in err
    ours = {k: v for k, v in digest(orig).items() if not k.startswith(".hydra") and k != "train.log"}
    assert ours == {k: v for k, v in before.items() if not k.startswith(".hydra") and k != "train.log"}


# ------------------------------------------------------------------ item 7: bad checkpoints
def _truncated(tmp: Path, good: Path) -> Path:
    p = tmp / "truncated.pt"
    p.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    return p


def _text(tmp: Path, good: Path) -> Path:
    p = tmp / "notes.pt"
    p.write_text("not a checkpoint\n")
    return p


def _no_config(tmp: Path, good: Path) -> Path:
    p = tmp / "weights_only.pt"
    torch.save({"model": {"w": torch.zeros(2)}}, p)
    return p


def _pickled_object(tmp: Path, good: Path) -> Path:
    p = tmp / "object.pt"
    torch.save({"model": {}, "config": {}, "x": Path("/")}, p)  # not loadable with weights_only
    return p


@pytest.mark.parametrize("make,words", [
    (_truncated, "is not a readable checkpoint"),
    (_text, "is not a readable checkpoint"),
    (_no_config, "is not a checkpoint of emberformer.train: it needs the keys model, config"),
    (_pickled_object, "is not a readable checkpoint"),
])
def test_bad_checkpoint_file_is_named(tmp_path, make, words):
    good = tmp_path / "good.pt"
    torch.save({"model": {}, "config": {}}, good)
    bad = make(tmp_path, good)
    with pytest.raises(CheckpointError) as e:
        checkpoint.load(bad)
    assert str(e.value).startswith(f"ckpt_path {bad} ") and words in str(e.value)
    assert "\n" not in str(e.value)


def test_checkpoint_folder_lists_its_files(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    torch.save({"model": {}, "config": {}}, tmp_path / "checkpoints" / "best.pt")
    with pytest.raises(CheckpointError) as e:
        checkpoint.load(tmp_path)
    assert str(e.value) == (f"ckpt_path {tmp_path} is a folder, not a checkpoint file; "
                            "its .pt files: checkpoints/best.pt")


@pytest.fixture
def tiny_ckpt(tiny_run) -> Path:
    """The session tiny run's last.pt (2 epochs); these tests only read it."""
    return tiny_run.last


@pytest.mark.parametrize("app", ["train", "evaluate", "predict"])
@pytest.mark.slow
def test_checkpoint_that_does_not_fit_names_the_key(tmp_path, tiny_ckpt, app):
    extra = ["sequence=1"] if app == "predict" else []
    before = digest(tiny_ckpt.parents[1] / "checkpoints")
    err = one_line_error(run_app(app, [f"ckpt_path={tiny_ckpt}", "model.d_model=32", *extra], tmp_path))
    assert err == (f"Error: ckpt_path {tiny_ckpt} does not fit the model: "
                   "model.d_model is 32 here but 16 in the checkpoint")
    assert digest(tiny_ckpt.parents[1] / "checkpoints") == before


@pytest.mark.parametrize("app", ["train", "evaluate", "predict"])
@pytest.mark.slow
def test_truncated_checkpoint_is_one_line_in_every_app(tmp_path, tiny_ckpt, app):
    bad = _truncated(tmp_path, tiny_ckpt)
    extra = ["sequence=1"] if app == "predict" else []
    err = one_line_error(run_app(app, [f"ckpt_path={bad}", *extra], tmp_path))
    assert err.startswith(f"Error: ckpt_path {bad} is not a readable checkpoint")


@pytest.mark.slow
def test_a_checkpoint_written_with_old_keys_resumes_and_evaluates(tmp_path, tiny_run):
    """A run saved before issue 17 (logger.preview_samples, hardware.name, optimized_metric, no
    trainer.ceiling_samples) goes on: old values under their new names, removed keys dropped."""
    run = copy_run(tiny_run, tmp_path / "old_run")
    last = run / "checkpoints" / "last.pt"
    state = torch.load(last, weights_only=True)
    cfg = state["config"]
    cfg["logger"]["preview_samples"] = cfg["trainer"].pop("preview_samples") - 1  # 1 preview
    cfg["hardware"]["name"] = "cpu"
    cfg["optimized_metric"] = "val/f1"
    del cfg["trainer"]["ceiling_samples"]
    torch.save(state, last)
    proc = run_app("train", [f"ckpt_path={last}", "trainer.epochs=3", "trainer.progress=false",
                             "data.progress=false"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in (run / "previews").glob("epoch_003_*.png")) == ["epoch_003_0.png"]
    resumed = checkpoint.load(last)["config"]
    assert resumed["trainer"]["preview_samples"] == 1 and resumed["trainer"]["ceiling_samples"] == 32
    assert "preview_samples" not in resumed["logger"] and "name" not in resumed["hardware"]
    assert "optimized_metric" not in resumed
    proc = run_app("evaluate", [f"ckpt_path={last}", "data.progress=false", "ceiling.samples=0",
                                f"hydra.run.dir={tmp_path / 'eval'}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]


# ------------------------------------------------------------------ items 11 and 12: command lines
def test_home_tilde_path_is_one_line_saying_how(tmp_path):
    err = one_line_error(run_app("train", ["data=deep_crown", "data.root=~/data/fires"], tmp_path))
    assert err == ("Error: data.root=~/data/fires: Hydra reads '~' as its delete operator, so a home-relative "
                   "path is not expanded; write data.root=$HOME/data/fires (the shell expands $HOME) or an "
                   "absolute path")
