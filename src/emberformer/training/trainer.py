"""The plain-PyTorch training loop: epochs, validation, early stopping, then the test pass.

Everything the run needs is built once by :func:`run_setup.build_run`; one epoch lives in
``epoch``, the test pass and summary in ``run_end``; checkpoints, resume and signals in
``run_state``; what is printed in ``console``; the model is called only through ``step``.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from emberformer.data.datamodule import FireDataModule
from emberformer.sweeps.pruning import TrialPruning, mark_run_pruned
from emberformer.tracking import RunLogger
from emberformer.training import console, distributed
from emberformer.training.early_stopping import EarlyStopping
from emberformer.training.epoch import end_epoch, score_split, train_epoch
from emberformer.training.hardware import Hardware
from emberformer.training.losses import WeightedLoss
from emberformer.training.run_end import finish, prefixed
from emberformer.training.run_setup import LoopSettings, RunSetup, build_run, count_parameters
from emberformer.training.run_state import Interrupted, NonFiniteLoss, RunState

__all__ = ["Trainer", "NonFiniteLoss", "Interrupted", "count_parameters"]


class Trainer:
    """Runs one training job; ``fit`` returns the best monitored value (the sweep objective)."""

    def __init__(self, *, epochs: int, log_metrics_every: int, seed: int, pred_thresh: float,
                 limit_batches: int | None, progress: bool, evaluate_test: bool, ceiling_samples: int,
                 preview_samples: int):  # the values: conf/train.yaml's trainer node
        self.settings = LoopSettings(epochs=epochs, log_every=log_metrics_every, seed=seed, thresh=pred_thresh,
                                     limit_batches=limit_batches, progress=progress, evaluate_test=evaluate_test,
                                     ceiling_samples=ceiling_samples, preview_samples=preview_samples)
        self.summary: dict[str, Any] = {}  # the last fit's closing summary (test/*, copy_last/test_*, ...)

    @property
    def epochs(self) -> int:
        return self.settings.epochs

    @property
    def thresh(self) -> float:
        return self.settings.thresh

    def fit(self, *, model: nn.Module, data: FireDataModule, loss_fn: WeightedLoss,
            optimizer_factory: Callable[..., torch.optim.Optimizer], early_stopping: EarlyStopping,
            hardware: Hardware, logger: RunLogger, run_dir: Path, run_info: dict[str, Any],
            resume: dict[str, Any] | None = None, pruning: TrialPruning | None = None,
            started_at: float | None = None) -> float:
        """Train ``model``; with ``resume`` (a checkpoint whose weights ``model`` holds already)
        go on from the position it saved. ``started_at`` (``time.time()`` when the command began,
        default now) is where the summary's wall time starts."""
        started = time.time() if started_at is None else started_at
        run = build_run(self.settings, model=model, data=data, loss_fn=loss_fn,
                        optimizer_factory=optimizer_factory, early_stopping=early_stopping, hardware=hardware,
                        logger=logger, run_dir=run_dir, config=run_info["config"], pruning=pruning)
        state = run.checkpoints.restore(resume) if resume is not None else RunState()
        if resume is not None and state.started_from and run.main:
            run.checkpoints.save_start(state, resume)
        epochs = run.epochs
        if run.main:  # other ranks log nothing and write no files
            run.logger.start(run.run_dir, run_info["name"], run_info.get("group"), run_info["tags"],
                             run_info["config"], resume_id=state.wandb_id)
            print_banner(run, state)
        copy_last_val: dict[str, float] | None = None
        with run.signals:
            try:
                for epoch in range(state.epoch, epochs + 1):
                    train_m, t_avg = train_epoch(run, state, epoch)
                    val_m, preview, copy_val = score_split(run, "val", f"Epoch {epoch}/{epochs} [Val]  ",
                                                           copy_last=copy_last_val is None)
                    copy_last_val = copy_last_val or copy_val
                    metrics = {**prefixed("train/", train_m), **prefixed("val/", val_m)}
                    is_best = run.early.step(epoch, metrics)
                    if is_best:
                        state.best_metrics = metrics
                    end_epoch(run, state, epoch, metrics, t_avg, is_best, preview)
                    if run.early.should_stop:
                        if run.main:
                            print(console.early_stop_block(run.early.stop_reason or "", run.early.monitor,
                                                           run.early.best_value, run.early.best_epoch,
                                                           run.early.counter))
                        break
                    if pruned(run, epoch, metrics):
                        break
            except BaseException:
                run.logger.finish(exit_code=1)  # a failed job must not leave its W&B run open
                run.release(wait=False)
                raise
        try:
            return finish(run, state, copy_last_val, started)
        finally:
            self.summary = run.summary
            run.logger.finish(exit_code=0)
            run.release()


def print_banner(run: RunSetup, state: RunState) -> None:
    learner = run.learner
    lrs = {g.get("name"): g["lr"] for g in learner.optimizer.param_groups} if learner.optimizer else {}
    print(console.training_banner(
        epochs=run.epochs, model_name=getattr(learner.model, "name", type(learner.model).__name__),
        n_params=learner.n_params, device=run.hardware.describe(), data=run.data.describe(),
        batch_size=run.data.batch_size, lrs=lrs, loss=run.loss_fn.describe(),
        early_stopping=run.early.describe(), logger_lines=run.logger.banner(), run_dir=run.run_dir,
        resumed_at=(state.epoch, state.global_step) if state.resumed else None,
        started_from=state.started_from), flush=True)
    if not learner.trainable:
        print("Model has no trainable parameters: one evaluation pass, no optimizer steps.")


def pruned(run: RunSetup, epoch: int, metrics: dict[str, float]) -> bool:
    """In an Optuna study: report the run's objective so far (the best monitored value, what
    the trial would return if it ended now) to its trial; True when the pruner says stop (the
    run then ends like an early stop; the sweeper records PRUNED). A best-so-far curve does not
    let one noisy epoch prune a trial whose best.pt is already ahead."""
    early, pruning = run.early, run.pruning
    if not pruning.active:
        return False
    value = early.best_value if math.isfinite(early.best_value) else metrics[early.monitor]
    stop = distributed.broadcast_flag(run.main and pruning.report(epoch, value), run.device)
    if stop and run.main:
        print(pruning.message(early.monitor, value), flush=True)
        mark_run_pruned(run.logger, epoch)
    return stop
