"""Per-pixel logistic regression: the field's simplest learned baseline (WildfireSpreadTS reports
it), one weight per input channel and a bias, applied to every pixel alone (a 1x1 convolution of
the flattened days, :mod:`emberformer.models.days_as_channels`)."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from emberformer.models.days_as_channels import DaysAsChannels


class LogisticRegression(DaysAsChannels):
    """Logits = w . x + b per pixel; no neighbour is seen, so spread comes only from the inputs."""

    name = "Logistic regression (per pixel)"
    config = "logistic"

    def __init__(self, static_channels: int, day_channels: int = 0, days: int = 5, **architecture: Any):
        super().__init__(static_channels, day_channels, days, **architecture)
        self.linear = nn.Conv2d(self.in_channels, 1, 1)

    def forward(self, *, fire: torch.Tensor, valid_t: torch.Tensor, wind: torch.Tensor,
                static: torch.Tensor, dynamic: torch.Tensor | None = None) -> torch.Tensor:
        return self.linear(self.flat_input(fire=fire, valid_t=valid_t, wind=wind, static=static, dynamic=dynamic))

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"temporal": [], "spatial": list(self.parameters())}
