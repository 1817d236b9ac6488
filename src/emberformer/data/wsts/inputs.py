"""A WildfireSpreadTS batch -> the model contract's inputs (``emberformer.models.base``).

Each of the ``data.features`` channels of a day plays one role, decided by what it is, never by
its place in the list:

- ``fire`` [B, n, H, W]: the binary active-fire channel of each input day (what copy-last repeats
  and what "growth" pixels are counted against);
- ``static`` [B, Cs, H, W]: the channels that are the same every day (slope, aspect, elevation,
  land cover), taken from the last input day;
- ``dynamic`` [B, n, D, H, W]: every other channel of each day, in the order of ``data.features``
  (None when there is none);
- ``wind`` [B, n, 2]: zeros. The wind bands are per-pixel fields, not one value per day; they
  reach the model as ``dynamic`` channels when ``data.features`` holds them.

``valid_t`` is all True (every sample has ``n`` real days); ``mask`` is the batch's ``valid``
(False on padding), so padding never reaches the loss or the metrics, and also False where the
batch's ``target_valid`` is (Next Day Wildfire Spread's uncertain pixels, ``target_mask.py``).
Next Day Wildfire Spread batches come through here too: one day, its fire and static covariates.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from emberformer.data.target_mask import split_mask
from emberformer.data.wsts.on_device import finish
from emberformer.data.wsts.preprocess import AF_BINARY_CHANNEL, STATIC_CHANNELS


@dataclass(frozen=True)
class ChannelRoles:
    """Positions, within the selected features, of the fire channel and the static and per-day ones."""

    fire: int
    static: tuple[int, ...]
    dynamic: tuple[int, ...]

    @classmethod
    def of(cls, feature_ids: tuple[int, ...]) -> "ChannelRoles":
        """The roles of the channels ``feature_ids`` (of the 40); every subset holds active fire."""
        ids = list(feature_ids)
        if AF_BINARY_CHANNEL not in ids:
            raise ValueError(f"data.features must hold the binary active-fire channel {AF_BINARY_CHANNEL}")
        fire = ids.index(AF_BINARY_CHANNEL)
        static = tuple(i for i, c in enumerate(ids) if c in STATIC_CHANNELS)
        dynamic = tuple(i for i in range(len(ids)) if i != fire and i not in static)
        return cls(fire, static, dynamic)


def to_device(batch: dict, device: torch.device) -> dict:
    """A batch of ``samples.collate`` or, finished here first, of ``lean.lean_batch`` (with
    its ``roles``) -> model inputs on ``device``."""
    if "raw" in batch:
        batch = finish(batch, device)
    nb = device.type == "cuda"
    roles: ChannelRoles = batch["roles"]
    x = batch["x"].to(device, non_blocking=nb)                       # [B, n, C, H, W]
    B, n = x.shape[:2]
    dynamic = x[:, :, list(roles.dynamic)] if roles.dynamic else None
    return {
        "fire": x[:, :, roles.fire],
        "dynamic": dynamic,
        "static": x[:, -1, list(roles.static)],
        "wind": torch.zeros(B, n, 2, device=device),
        "valid_t": batch["valid_t"].to(device, non_blocking=nb),
        "target": batch["target"].to(device, non_blocking=nb),
        **split_mask(batch["valid"].to(device, non_blocking=nb), batch, device),
        "seq_id": batch["fire_id"], "t": batch["t"],
    }
