"""The optimizer: Adam over the model's two parameter groups (temporal / spatial)."""
from __future__ import annotations

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
