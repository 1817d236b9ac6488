"""Persistence baseline: the next fire mask is the last one seen (on WildfireSpreadTS: tomorrow's
active fire is today's)."""
from __future__ import annotations

import torch
from torch import nn

from emberformer.models.base import FireModel, check_preset_keys, last_frame


class CopyLast(FireModel):
    """No parameters; logits of +/-``confidence`` so sigmoid gives (almost) 0/1.

    The suite's one definition of copy-last: training and evaluation score the baseline by running
    this model through the same model step as the model being trained.
    """

    name = "CopyLast (persistence baseline)"

    def __init__(self, static_channels: int = 0, day_channels: int = 0, confidence: float = 10.0,
                 **architecture: object):
        """Presets such as ``debug=fast`` size the EmberFormer under ``model.``; those keys are
        accepted and unused here, any other key is a mistake and stops the run."""
        super().__init__()
        check_preset_keys("copy_last", ["confidence"], architecture)
        self.confidence = float(confidence)

    def forward(self, *, fire: torch.Tensor, valid_t: torch.Tensor, wind: torch.Tensor,
                static: torch.Tensor, dynamic: torch.Tensor | None = None) -> torch.Tensor:
        return (last_frame(fire).float() * 2 - 1) * self.confidence

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"temporal": [], "spatial": []}
