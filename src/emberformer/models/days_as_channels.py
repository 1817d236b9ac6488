"""The input the field's simplest baselines see: the last ``days`` days' channels stacked as image
channels, plus the static bands (the WildfireSpreadTS benchmark's U-Net and logistic regression).

One place builds it, so the U-Net and the logistic regression see exactly the same numbers, and
the ConvLSTM the same per-day channels one day at a time. Each day brings its fire frame, its two
wind values as constant planes (on WildfireSpreadTS they are zeros: the wind is in ``dynamic``),
a plane saying whether the day is real, and its ``dynamic`` channels. A history shorter than
``days`` is left-padded with zero days, as the data module pads a batch (``valid_t`` False), so
the real-day plane tells the model where the padding is.
"""
from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn.functional as F

from emberformer.models.base import FireModel, check_preset_keys

PER_DAY = 4  # fire, wind speed, wind direction, real day


def day_features(fire: torch.Tensor, valid_t: torch.Tensor, wind: torch.Tensor,
                 dynamic: torch.Tensor | None) -> torch.Tensor:
    """Every step's channels [B, T, PER_DAY + D, H, W] (fire, wind, real day, dynamic)."""
    B, T, H, W = fire.shape
    parts = [fire.unsqueeze(2), wind[..., None, None].expand(B, T, 2, H, W).to(fire.dtype),
             valid_t[:, :, None, None, None].expand(B, T, 1, H, W).to(fire.dtype)]
    if dynamic is not None:
        parts.append(dynamic.to(fire.dtype))
    return torch.cat(parts, dim=2)


def last_days(days: torch.Tensor, n: int) -> torch.Tensor:
    """The last ``n`` steps of [B, T, C, H, W], left-padded with zero steps when T < n."""
    T = days.shape[1]
    if T < n:
        days = F.pad(days, (0, 0, 0, 0, 0, 0, n - T, 0))
    return days[:, -n:]


class DaysAsChannels(FireModel):
    """Base of the models whose input is :meth:`flat_input` (``in_channels`` of them).

    ``config`` names the model's config (``model=unet``) in messages; the subclass's own
    keyword arguments are its settings.
    """

    config = "baseline"

    def __init__(self, static_channels: int, day_channels: int = 0, days: int = 5, **architecture: Any):
        super().__init__()
        for key, value, low in (("model.days", days, 1), ("day_channels", day_channels, 0),
                                ("static_channels", static_channels, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{key} must be an integer >= {low}, got {value!r}")
        own = [k for k in inspect.signature(type(self)).parameters
               if k not in ("static_channels", "day_channels", "architecture")]
        check_preset_keys(self.config, own, architecture)
        self.days, self.day_channels, self.static_channels = days, day_channels, static_channels

    @property
    def step_channels(self) -> int:
        """Channels of one day (:func:`day_features`)."""
        return PER_DAY + self.day_channels

    @property
    def in_channels(self) -> int:
        return self.days * self.step_channels + self.static_channels

    def check_dynamic(self, dynamic: torch.Tensor | None) -> None:
        got = 0 if dynamic is None else dynamic.shape[2]
        if got != self.day_channels:
            raise ValueError(f"the model was built for {self.day_channels} per-day input channel(s), the batch "
                             f"has {got}: the checkpoint and the data (data.features) do not match")

    def flat_input(self, *, fire: torch.Tensor, valid_t: torch.Tensor, wind: torch.Tensor,
                   static: torch.Tensor, dynamic: torch.Tensor | None = None) -> torch.Tensor:
        """[B, in_channels, H, W]: the last ``days`` days' channels, oldest first, then static."""
        self.check_dynamic(dynamic)
        x = last_days(day_features(fire, valid_t, wind, dynamic), self.days).flatten(1, 2)
        return torch.cat([x, static.to(x.dtype)], dim=1)
