"""One model step for every caller: a device batch in, a typed prediction out.

Training, validation, test, ``evaluate``, ``predict`` and ``bench`` all call the model through
:func:`model_step`, so a new model input is added in one place (here and in ``to_device``).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager

import torch
from torch import nn

from emberformer.models.base import last_frame


@dataclass
class Prediction:
    """What one step produced, with the batch's target and valid-pixel mask beside it.

    logits [B,1,H,W] float32 (carries the graph in training); prob is sigmoid(logits) without
    the graph; last [B,1,H,W] bool is the last input frame; mask marks pixels inside each frame.
    """

    logits: torch.Tensor
    last: torch.Tensor
    target: torch.Tensor
    mask: torch.Tensor
    _prob: torch.Tensor | None = field(default=None, repr=False)

    @property
    def prob(self) -> torch.Tensor:
        if self._prob is None:
            self._prob = torch.sigmoid(self.logits.detach())
        return self._prob

    @property
    def size(self) -> int:
        return int(self.logits.shape[0])


def model_step(model: nn.Module, batch: dict[str, Any],
               autocast: Callable[[], ContextManager] = contextlib.nullcontext) -> Prediction:
    """Run ``model`` on a batch from ``to_device`` (under ``autocast``); logits come back float32."""
    with autocast():
        logits = model(fire=batch["fire"], valid_t=batch["valid_t"], wind=batch["wind"],
                       static=batch["static"])
    return Prediction(logits.float(), last_frame(batch["fire"]), batch["target"], batch["mask"])
