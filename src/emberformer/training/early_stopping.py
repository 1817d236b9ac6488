"""Early stopping on a monitored metric, with optional all-targets-reached stop.

Always tracks the best value (``best.pt`` needs it) even when stopping itself is disabled.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

MONITORABLE = ("loss", "prec", "rec", "f1", "iou", "acc", "ap",
               "growth_prec", "growth_rec", "growth_f1", "growth_iou", "growth_acc")


def check_monitor(key: str, what: str = "early_stopping.monitor") -> str:
    split, _, name = key.partition("/")
    if split not in ("train", "val") or name not in MONITORABLE:
        allowed = ", ".join(f"val/{m}" for m in MONITORABLE)
        raise ValueError(f"{what}={key!r} is not a known metric; allowed: {allowed} (or train/…)")
    return key


class EarlyStopping:
    """Stops after ``patience`` epochs without an improvement of more than ``min_delta``."""

    def __init__(self, enabled: bool = True, patience: int = 10, monitor: str = "val/f1",
                 mode: str = "max", min_delta: float = 0.001,
                 targets: Mapping[str, float] | None = None):
        if mode not in ("min", "max"):
            raise ValueError(f"early_stopping.mode must be 'min' or 'max', got {mode!r}")
        if int(patience) < 1:
            raise ValueError(f"early_stopping.patience must be >= 1, got {patience}")
        if float(min_delta) < 0:
            raise ValueError(f"early_stopping.min_delta must be >= 0, got {min_delta}")
        self.enabled = bool(enabled)
        self.patience = int(patience)
        self.monitor = check_monitor(monitor)
        self.mode = mode
        self.min_delta = float(min_delta)
        self.targets = {check_monitor(k, "early_stopping.targets key"): float(v)
                        for k, v in (targets or {}).items()}
        self.best_value = math.inf if mode == "min" else -math.inf
        self.best_epoch = 0
        self.counter = 0
        self.stop_reason: str | None = None

    def improved(self, value: float) -> bool:
        if self.mode == "max":
            return value > self.best_value + self.min_delta
        return value < self.best_value - self.min_delta

    def targets_reached(self, metrics: Mapping[str, float]) -> bool:
        """Every target met: <= for losses, >= for every other metric."""
        if not self.targets:
            return False
        return all(
            (metrics[k] <= v) if k.endswith("loss") else (metrics[k] >= v)
            for k, v in self.targets.items()
        )

    def step(self, epoch: int, metrics: Mapping[str, float]) -> bool:
        """Record an epoch; return True when it is the new best. Sets ``stop_reason`` to stop."""
        value = float(metrics[self.monitor])
        is_best = math.isfinite(value) and self.improved(value)
        if is_best:
            self.best_value, self.best_epoch, self.counter = value, epoch, 0
        else:
            self.counter += 1
        if self.enabled and self.targets_reached(metrics):
            self.stop_reason = "targets"
        elif self.enabled and self.counter >= self.patience:
            self.stop_reason = "patience"
        return is_best

    @property
    def should_stop(self) -> bool:
        return self.stop_reason is not None

    def describe(self) -> str:
        if not self.enabled:
            return f"disabled (best checkpoint by {self.monitor}, {self.mode})"
        text = f"enabled (patience={self.patience}, monitor={self.monitor})"
        if self.targets:
            text += " targets " + ", ".join(f"{k}={v:g}" for k, v in self.targets.items())
        return text

    def state_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("best_value", "best_epoch", "counter", "stop_reason")}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)
