"""Persistence baseline: the next fire mask is the last one seen."""
from __future__ import annotations

import torch
from torch import nn


class CopyLast(nn.Module):
    """No parameters; logits of +/-``confidence`` so sigmoid gives (almost) 0/1."""

    name = "CopyLast (persistence baseline)"

    def __init__(self, confidence: float = 10.0, **_: object):
        super().__init__()
        self.confidence = confidence

    def forward(self, fire: torch.Tensor, valid_t: torch.Tensor, wind: torch.Tensor,
                static: torch.Tensor) -> torch.Tensor:
        return (fire[:, -1:] * 2 - 1) * self.confidence

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"temporal": [], "spatial": []}
