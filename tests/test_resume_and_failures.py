"""Nothing a user does by mistake costs a run: resume, signals, atomic saves, NaNs, bad input."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from conftest import TINY, compose_config, copy_run, one_line_error, run_app, run_module
from emberformer.training.checkpoint import save_atomic
from emberformer.models.base import FireModel
from emberformer.training.trainer import NonFiniteLoss


def epoch_records(run_dir: Path) -> list[dict]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "val/f1_epoch" in r]


@pytest.mark.slow
def test_resume_after_epoch_k_matches_an_uninterrupted_run(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    # plain Adam: a schedule over trainer.epochs (adam_cosine) changes when the run is extended
    assert run_app("train", [*TINY, "optim=adam", "trainer.epochs=3"], a).returncode == 0
    assert run_app("train", [*TINY, "optim=adam", "trainer.epochs=2"], b).returncode == 0
    run_b = next((b / "outputs").glob("*/*"))
    resumed = run_app("train", [f"ckpt_path={run_b / 'checkpoints' / 'last.pt'}", "trainer.epochs=3"], b)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resumed at epoch 3" in resumed.stdout
    ra = epoch_records(next((a / "outputs").glob("*/*")))
    rb = epoch_records(run_b)  # the resumed run appends to the same folder
    assert [r["epoch"] for r in rb] == [1, 2, 3]
    for key in ("train/loss_epoch", "val/loss_epoch", "val/f1_epoch", "val/iou_epoch", "train/f1_epoch"):
        assert rb[-1][key] == pytest.approx(ra[-1][key], rel=1e-5, abs=1e-7), key
    last = torch.load(run_b / "checkpoints" / "last.pt", weights_only=False)
    assert last["epoch"] == 3 and last["config"]["trainer"]["epochs"] == 3


@pytest.mark.slow
def test_resume_refuses_a_group_change(tmp_path, tiny_run):
    run = copy_run(tiny_run, tmp_path / "run")
    err = one_line_error(run_app("train", [f"ckpt_path={run / 'checkpoints' / 'last.pt'}", "loss=bce"], tmp_path))
    assert err == ("Error: loss=bce: config groups cannot change when resuming from a "
                   "checkpoint; start a new run instead")


@pytest.mark.slow
def test_sigterm_mid_run_saves_last_and_resumes(tmp_path, run_env):
    args = [sys.executable, "-m", "emberformer.train", *TINY, "trainer.epochs=40"]
    proc = subprocess.Popen(args, cwd=tmp_path, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 180
    for line in proc.stdout:  # wait until the first epoch has finished, then stop it mid-run
        if line.startswith("[Epoch  1/40]") or time.time() > deadline:
            break
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "SIGTERM received: finishing the current step, then saving last.pt" in out
    assert "resume with: python -m emberformer.train ckpt_path=" in err
    run_dir = next((tmp_path / "outputs").glob("*/*"))
    last = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)
    stopped_epoch = last["epoch"]
    assert stopped_epoch < 40
    assert json.loads((run_dir / "result.json").read_text())["status"] == "stopped"
    resumed = run_app("train", [f"ckpt_path={run_dir / 'checkpoints' / 'last.pt'}",
                                f"trainer.epochs={stopped_epoch + 1}"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)
    assert final["epoch"] == stopped_epoch + 1 and final["epoch_complete"]
    epochs = [r["epoch"] for r in epoch_records(run_dir)]
    assert epochs == list(range(1, stopped_epoch + 2))  # no epoch lost, none repeated
    assert json.loads((run_dir / "result.json").read_text())["status"] == "ok"  # the run's own status


class _Unpicklable:
    def __reduce__(self):
        raise RuntimeError("disk full (simulated)")


def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "checkpoints" / "best.pt"
    save_atomic({"epoch": 1, "w": torch.arange(1000)}, path)
    with pytest.raises(RuntimeError, match="disk full"):
        save_atomic({"epoch": 2, "w": torch.arange(1000), "bad": _Unpicklable()}, path)
    assert torch.load(path, weights_only=False)["epoch"] == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["best.pt"]


def test_killed_while_saving_leaves_a_whole_file(tmp_path):
    path = tmp_path / "last.pt"
    save_atomic({"epoch": 1}, path)
    code = ("import sys, torch; from emberformer.training.checkpoint import save_atomic; "
            f"save_atomic({{'epoch': 2, 'w': torch.zeros(60_000_000)}}, __import__('pathlib').Path({str(path)!r}))")
    p = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + 60
    while time.time() < deadline and not list(tmp_path.glob(".last.pt.tmp*")):
        time.sleep(0.01)
    p.kill()
    p.wait()
    assert torch.load(path, weights_only=False)["epoch"] in (1, 2)  # never a truncated file


class NaNAfter(FireModel):
    """Wraps a model and returns NaN logits from a given optimizer step on."""

    name = "NaN test model"

    def __init__(self, inner: torch.nn.Module, after: int):
        super().__init__()
        self.inner, self.after, self.calls = inner, after, 0

    def forward(self, **inputs):
        out = self.inner(**inputs)
        if self.training:
            self.calls += 1
        return out * float("nan") if self.training and self.calls > self.after else out

    def param_groups(self):
        return self.inner.param_groups()


@pytest.mark.slow
def test_non_finite_loss_stops_with_epoch_and_step_and_keeps_best(tmp_path, cache_dir):
    cfg = compose_config("debug=fast", "logger=none", f"data.cache_dir={cache_dir}", "trainer.limit_batches=null")
    hw = instantiate(cfg.hardware)
    data = instantiate(cfg.data, **hw.loader_settings())
    data.setup()
    steps_per_epoch = -(-len(data.datasets["train"]) // data.batch_size)
    model = NaNAfter(instantiate(cfg.model, static_channels=data.static_channels), after=steps_per_epoch + 1)
    trainer = instantiate(cfg.trainer, epochs=5, seed=0, progress=False, limit_batches=None)
    with pytest.raises(NonFiniteLoss) as e:
        trainer.fit(model=model, data=data, loss_fn=instantiate(cfg.loss), optimizer_factory=instantiate(cfg.optim),
                    early_stopping=instantiate(cfg.early_stopping), hardware=hw, logger=instantiate(cfg.logger),
                    run_dir=tmp_path, run_info={"name": "nan", "tags": [], "config": {}})
    assert f"at epoch 2, step {steps_per_epoch + 2}" in str(e.value)
    assert "best.pt (epoch 1) is kept" in str(e.value)
    assert torch.load(tmp_path / "checkpoints" / "best.pt", weights_only=False)["epoch"] == 1


def test_non_finite_loss_in_the_first_epoch_claims_no_checkpoint(tmp_path, tiny_cfg):
    cfg = tiny_cfg("trainer.limit_batches=null")
    hw = instantiate(cfg.hardware)
    data = instantiate(cfg.data, **hw.loader_settings())
    data.setup()
    model = NaNAfter(instantiate(cfg.model, static_channels=data.static_channels), after=0)
    with pytest.raises(NonFiniteLoss) as e:
        instantiate(cfg.trainer, epochs=2, seed=0, progress=False, limit_batches=None).fit(
            model=model, data=data, loss_fn=instantiate(cfg.loss), optimizer_factory=instantiate(cfg.optim),
            early_stopping=instantiate(cfg.early_stopping), hardware=hw, logger=instantiate(cfg.logger),
            run_dir=tmp_path, run_info={"name": "nan", "tags": [], "config": {}})
    assert str(e.value) == "non-finite loss (nan) at epoch 1, step 1; no checkpoint was written (no epoch had finished)"
    assert not (tmp_path / "checkpoints" / "best.pt").exists()


@pytest.mark.parametrize("override,message", [
    ("loss.bce_weight=-0.5", "Error: loss.bce_weight must be >= 0, got -0.5"),
    ("loss.dice_weight=0 loss.bce_weight=0",
     "Error: loss weights loss.bce_weight, loss.dice_weight are all zero; at least one must be > 0"),
    ("early_stopping.patience=0", "Error: early_stopping.patience must be >= 1, got 0"),
    ("early_stopping.monitor=val/bogus", "Error: early_stopping.monitor='val/bogus' is not a known metric; allowed: "),
    ("early_stopping.mode=maximize", "Error: early_stopping.mode must be 'min' or 'max', got 'maximize'"),
    ("hardware.batch_size=0", "Error: hardware.batch_size must be >= 1, got 0"),
    ("metrics.pred_thresh=1.5", "Error: metrics.pred_thresh must be in (0, 1), got 1.5"),
    ("hardware.device=tpu9", "Error: hardware.device='tpu9' is not a device; use auto, cpu, cuda or cuda:N"),
    ("data=deep_crown data.root=/nonexistent/data", "Error: data.root /nonexistent/data does not exist; expected ROOT/"),
    ("model.nhead=7", "Error: model.d_model (96) must be divisible by model.nhead (7)"),
    ("model.pixel_skip=maybe", "Error: model.pixel_skip must be true or false, got 'maybe'"),
    ("optim.lr_spatial=0", "Error: optim.lr_spatial must be > 0, got 0"),
    ("data.on_bad_sequence=ignore", "Error: data.on_bad_sequence must be 'error' or 'skip', got 'ignore'"),
    ("model.pretrained=true model.pretrained_path=/nonexistent",
     "Error: model.pretrained_path=/nonexistent is not a folder; on a machine with internet run:"),
    ("hardware.batch_size=abc", "Error: hardware.batch_size must be an integer >= 1, got 'abc'"),
    ("trainer.epochs=1.5", "Error: trainer.epochs must be an integer >= 1, got 1.5"),
    ("+trainer.epoch=3", "Error: trainer.epoch is not a setting of Trainer; its settings: ceiling_samples, epochs, "),
    ("+foo=1", "Error: foo is not a setting: nothing reads it"),
    ("+model.foo=2", "Error: model.foo is not a setting of EmberFormer; its settings: "),
])
def test_bad_config_is_one_line_exit_2_before_any_work(tmp_path, override, message):
    t0 = time.time()
    err = one_line_error(run_app("train", [*override.split(), "logger=none", f"data.cache_dir={tmp_path / 'cache'}"],
                                 tmp_path))
    assert err.startswith(message), err
    assert not (tmp_path / "cache").exists()  # no data was generated or decoded
    assert time.time() - t0 < 10  # the check comes before any work (well under 5 s)


def test_a_bad_config_ends_a_real_interpreter_with_exit_2_and_one_line(tmp_path, run_env):
    """The same check as above through a real ``python -m``: the interpreter's own exit status."""
    proc = run_module("train", ["loss.bce_weight=-0.5", "logger=none", f"data.cache_dir={tmp_path / 'cache'}"],
                      run_env, tmp_path)
    assert one_line_error(proc) == "Error: loss.bce_weight must be >= 0, got -0.5"
    assert not (tmp_path / "cache").exists()
