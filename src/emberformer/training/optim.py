"""The optimizer: Adam over the model's two parameter groups (temporal / spatial)."""
from __future__ import annotations

import math

import torch
from torch import nn


def adam(param_groups: dict[str, list[nn.Parameter]], lr_temporal: float = 1e-3,
         lr_spatial: float = 1e-4, weight_decay: float = 1e-4) -> torch.optim.Optimizer:
    """Built by Hydra with ``_partial_: true``; the trainer passes the model's groups."""
    for key, value in (("optim.lr_temporal", lr_temporal), ("optim.lr_spatial", lr_spatial)):
        if not value > 0:
            raise ValueError(f"{key} must be > 0, got {value}")
    if weight_decay < 0:
        raise ValueError(f"optim.weight_decay must be >= 0, got {weight_decay}")
    lrs = {"temporal": lr_temporal, "spatial": lr_spatial}
    groups = [{"params": ps, "lr": lrs[name], "name": name} for name, ps in param_groups.items() if ps]
    return torch.optim.Adam(groups, weight_decay=weight_decay)


class ScheduledAdam(torch.optim.Adam):
    """Adam whose learning rates follow linear warm-up then cosine decay over the whole run.

    The rate is a pure function of the optimizer step (:meth:`set_step`), so a resumed run picks
    up the schedule exactly where it stopped, with no scheduler state of its own.
    """

    def __init__(self, groups: list[dict], weight_decay: float, warmup_epochs: float, min_lr_ratio: float):
        super().__init__(groups, weight_decay=weight_decay)
        self.warmup_epochs = float(warmup_epochs)
        self.min_lr_ratio = float(min_lr_ratio)
        for g in self.param_groups:
            g["peak_lr"] = g["lr"]

    def factor(self, step: int, steps_per_epoch: int, epochs: int) -> float:
        """Multiplier of the peak rate before optimizer step ``step`` (0-based)."""
        total = max(1, steps_per_epoch * epochs)
        warm = max(1, round(self.warmup_epochs * steps_per_epoch)) if self.warmup_epochs > 0 else 0
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total - warm))
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    def set_step(self, step: int, steps_per_epoch: int, epochs: int) -> None:
        f = self.factor(step, steps_per_epoch, epochs)
        for g in self.param_groups:
            g["lr"] = g["peak_lr"] * f


def adam_cosine(param_groups: dict[str, list[nn.Parameter]], lr_temporal: float = 1e-3,
                lr_spatial: float = 1e-3, weight_decay: float = 1e-4, warmup_epochs: float = 1.0,
                min_lr_ratio: float = 0.01) -> ScheduledAdam:
    """Adam over the two groups with warm-up + cosine decay (see :class:`ScheduledAdam`)."""
    base = adam(param_groups, lr_temporal, lr_spatial, weight_decay)  # checks the shared values
    if warmup_epochs < 0:
        raise ValueError(f"optim.warmup_epochs must be >= 0, got {warmup_epochs}")
    if not 0 <= min_lr_ratio <= 1:
        raise ValueError(f"optim.min_lr_ratio must be in [0, 1], got {min_lr_ratio}")
    groups = [{k: v for k, v in g.items() if k in ("params", "lr", "name")} for g in base.param_groups]
    return ScheduledAdam(groups, weight_decay, warmup_epochs, min_lr_ratio)
