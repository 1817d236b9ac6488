"""Per-pixel logistic regression: the field's simplest learned baseline (WildfireSpreadTS reports
it), one weight per input channel and a bias, applied to every pixel alone (a 1x1 convolution of
the flattened days, :mod:`emberformer.models.days_as_channels`)."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from emberformer.models.days_as_channels import DaysAsChannels


class LogisticRegression(DaysAsChannels):
    """Logits = w . x + b per pixel; no neighbour is seen, so spread comes only from the inputs.

    The parameters are stored as (w, b) / ``scale``: Adam moves every parameter by about the
    learning rate per step whatever its gradient, so at the shared 1e-3 the 27 weights of this
    convex model would need thousands of steps to reach logits of a few units; stored scaled,
    the same optimizer moves the logits ``scale`` times faster (one learning rate serves every
    model of a comparison)."""

    name = "Logistic regression (per pixel)"
    config = "logistic"

    def __init__(self, static_channels: int, day_channels: int = 0, days: int = 5, scale: float = 100.0,
                 **architecture: Any):
        super().__init__(static_channels, day_channels, days, **architecture)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
            raise ValueError(f"model.scale must be a number > 0, got {scale!r}")
        self.scale = float(scale)
        self.linear = nn.Conv2d(self.in_channels, 1, 1)
        with torch.no_grad():  # the same initial logits as an unscaled 1x1 conv
            self.linear.weight /= self.scale
            self.linear.bias /= self.scale

    def forward(self, *, fire: torch.Tensor, valid_t: torch.Tensor, wind: torch.Tensor,
                static: torch.Tensor, dynamic: torch.Tensor | None = None) -> torch.Tensor:
        x = self.flat_input(fire=fire, valid_t=valid_t, wind=wind, static=static, dynamic=dynamic)
        return self.scale * self.linear(x)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"temporal": [], "spatial": list(self.parameters())}
