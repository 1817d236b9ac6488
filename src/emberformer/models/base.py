"""The contract every fire model keeps, so the trainer, evaluate, predict and bench need no
knowledge of a particular model.

A fire model maps a left-padded fire history to next-step logits, with named inputs:

- ``fire``    [B, T, H, W] float 0/1: fire frames, oldest first, left-padded in time
- ``valid_t`` [B, T] bool: which time steps are real (padding is at the start)
- ``wind``    [B, T, 2] float: normalised wind speed and direction of each step
- ``static``  [B, C, H, W] float: normalised static terrain bands
- ``dynamic`` [B, T, D, H, W] float, optional: other per-step spatial inputs (weather fields,
  vegetation, ...), passed only where the data has them (WildfireSpreadTS), so a model written
  for the four inputs above keeps working on the built-in and real-layout data. The data module
  says how many (``day_channels``, 0 there); the app then builds the model with
  ``day_channels=D``.

and returns logits [B, 1, H, W] of the next frame's fire (burning or burned on cumulative data,
active fire on WildfireSpreadTS). Its parameters come in the two groups the optimizer gives their
own learning rates (``temporal``, ``spatial``).
"""
from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import Any, Iterable

import torch
from torch import nn

PARAM_GROUPS = ("temporal", "spatial")


def last_frame(fire: torch.Tensor) -> torch.Tensor:
    """The last input frame as a bool mask [B, 1, H, W]: what copy-last predicts and what
    separates growth pixels from old fire in the metrics."""
    return fire[:, -1:] > 0.5


class FireModel(nn.Module, ABC):
    """Base class of next-step fire models (see the module docstring for the inputs)."""

    #: shown in the console banner and in reports
    name: str = "fire model"

    @abstractmethod
    def forward(self, *, fire: torch.Tensor, valid_t: torch.Tensor, wind: torch.Tensor,
                static: torch.Tensor, dynamic: torch.Tensor | None = None) -> torch.Tensor:
        """Next-step logits [B, 1, H, W]."""

    @abstractmethod
    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Every parameter exactly once, keyed by ``temporal`` and ``spatial``."""


def check_preset_keys(model: str, settings: Iterable[str], architecture: dict[str, Any]) -> None:
    """Presets such as ``debug=fast`` and ``experiment=wsts`` size the EmberFormer under
    ``model.``; a baseline accepts those keys and leaves them unused, and any other key it does not
    take is a mistake that stops the run (a one-line ValueError naming it)."""
    from emberformer.models.emberformer import EmberFormer

    unknown = sorted(set(architecture) - set(inspect.signature(EmberFormer).parameters))
    if unknown:
        raise ValueError(f"model.{unknown[0]} is not a setting of model={model} "
                         f"(its settings: {', '.join(settings) or 'none'})")
