"""What a run carries across a stop: its position, the checkpoints that hold it, and the signals
that ask it to stop.

``RunState`` owns the position (epoch, optimizer step, how far into the epoch, and the epoch's
counts so far); ``Checkpointer`` turns it, with the model, optimizer, scaler and early-stopping
state, into ``best.pt`` / ``last.pt`` and back; ``SignalGuard`` turns SIGINT/SIGTERM into a flag
the training loop looks at after each step.
"""
from __future__ import annotations

import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from emberformer.training.checkpoint import save_atomic
from emberformer.training.early_stopping import EarlyStopping


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; the run stops, best.pt is kept."""


class Interrupted(RuntimeError):
    """SIGINT/SIGTERM: the current step finished, last.pt written, logger closed."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.exit_code = 128 + signum


@dataclass
class RunState:
    """Where a run stands. ``partial`` is the mid-epoch position of an interrupted epoch:
    ``{"seen": samples, "counts": metric counts, "sums": loss sums}`` so far."""

    epoch: int = 1
    global_step: int = 0
    partial: dict[str, Any] | None = None
    best_metrics: dict[str, float] = field(default_factory=dict)
    wandb_id: str | None = None
    started_from: str | None = None  # a new run started from another run's checkpoint (best.pt)

    @property
    def resumed(self) -> bool:
        return self.epoch > 1 or self.global_step > 0

    def take_partial(self) -> dict[str, Any] | None:
        """The interrupted epoch's progress, once: the next epoch starts from zero."""
        partial, self.partial = self.partial, None
        return partial


class Checkpointer:
    """Writes and restores ``checkpoints/{best,last}.pt`` of one run (atomically)."""

    def __init__(self, run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None,
                 scaler: Any, early: EarlyStopping, config: dict[str, Any]):
        self.dir = Path(run_dir) / "checkpoints"
        self.model, self.optimizer, self.scaler, self.early, self.config = model, optimizer, scaler, early, config

    def path(self, name: str) -> Path:
        return self.dir / f"{name}.pt"

    def state(self, run: RunState, epoch: int, metrics: dict[str, float], *, complete: bool,
              partial: dict[str, Any] | None = None, wandb_id: str | None = None) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer else None,
            "scaler": self.scaler.state_dict(),
            "epoch": epoch, "epoch_complete": complete, "global_step": run.global_step,
            "early_stopping": self.early.state_dict(),
            "config": self.config, "metrics": metrics, "partial": partial,
            "best_metrics": run.best_metrics,
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
            "wandb_id": wandb_id,
        }

    def save_epoch(self, run: RunState, epoch: int, metrics: dict[str, float], is_best: bool,
                   wandb_id: str | None) -> None:
        """End of an epoch: last.pt always, best.pt when the monitored metric improved."""
        state = self.state(run, epoch, metrics, complete=True, wandb_id=wandb_id)
        if is_best:
            save_atomic(state, self.path("best"))
        save_atomic(state, self.path("last"))

    def save_partial(self, run: RunState, epoch: int, partial: dict[str, Any],
                     wandb_id: str | None) -> Path:
        """Mid-epoch stop: last.pt with the position inside the epoch."""
        path = self.path("last")
        save_atomic(self.state(run, epoch, {}, complete=False, partial=partial, wandb_id=wandb_id), path)
        return path

    def save_start(self, run: RunState, ckpt: dict[str, Any]) -> bool:
        """A new run from another run's best checkpoint: those weights are this run's best.pt
        until an epoch beats them, so the run ends with its own best.pt and test pass. False
        (nothing written) when the checkpoint's weights are not its best epoch's."""
        epoch = int(ckpt["epoch"])
        if not ckpt["epoch_complete"] or ckpt["early_stopping"].get("best_epoch") != epoch:
            return False
        save_atomic(self.state(run, epoch, ckpt.get("metrics") or {}, complete=True), self.path("best"))
        return True

    def restore(self, ckpt: dict[str, Any]) -> RunState:
        """Load a checkpoint's optimizer, scaler, early-stopping and RNG states; return the position
        to go on from. The model holds the checkpoint's weights already: ``train`` loads them once,
        before any file changes, to check that they fit (:func:`checkpoint.load_weights`)."""
        if self.optimizer is not None and ckpt.get("optimizer"):
            self.optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.early.load_state_dict(ckpt["early_stopping"])
        self.early.stop_reason = None  # resuming a stopped run with more epochs: judge it afresh
        torch.set_rng_state(ckpt["rng"]["torch"])
        if ckpt["rng"].get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
        complete = bool(ckpt["epoch_complete"])
        return RunState(epoch=int(ckpt["epoch"]) + (1 if complete else 0),
                        global_step=int(ckpt["global_step"]),
                        partial=None if complete else ckpt["partial"],
                        best_metrics=ckpt.get("best_metrics") or {},
                        wandb_id=ckpt.get("wandb_id"), started_from=ckpt.get("started_from"))


class SignalGuard:
    """While active, SIGINT/SIGTERM set ``received`` (the loop stops after the current step and
    writes last.pt); a second signal stops at once."""

    def __init__(self, announce: bool = True):
        self.announce = announce
        self.received: int | None = None
        self._old: dict[int, Any] = {}

    def _handler(self, signum: int, _frame: Any) -> None:
        if self.received is not None:  # second signal: stop now
            raise KeyboardInterrupt
        self.received = signum
        if self.announce:
            print(f"\n{signal.Signals(signum).name} received: finishing the current step, "
                  "then saving last.pt", flush=True)

    def __enter__(self) -> "SignalGuard":
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[s] = signal.signal(s, self._handler)
            except ValueError:  # not the main thread (e.g. a joblib worker thread)
                pass
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old.clear()
