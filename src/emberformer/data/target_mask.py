"""The valid-target-pixel mask a data set may give with its batches, folded into ``mask``.

A batch may carry ``target_valid`` [B, 1, H, W] bool: the pixels whose target is known (Next Day
Wildfire Spread marks cloud and missing data with ``FireMask == -1``). The batch's ``mask`` is
then the frame's pixels *and* the known targets, and every consumer of ``mask`` (the loss, every
pixel metric, AP histograms, calibration, copy-last's scores) leaves the others out without
knowing why; ``unknown`` (frame pixels whose target is not known) lets previews draw them. A
batch without ``target_valid`` has every target known: ``mask`` is the frame, ``unknown`` empty.
"""
from __future__ import annotations

import torch


def split_mask(frame: torch.Tensor, batch: dict, device: torch.device) -> dict[str, torch.Tensor]:
    """``{"mask": frame & known, "unknown": frame & ~known}`` for the frame mask already on ``device``."""
    known = batch.get("target_valid")
    if known is None:
        return {"mask": frame, "unknown": torch.zeros_like(frame)}
    known = known.to(device, non_blocking=device.type == "cuda")
    return {"mask": frame & known, "unknown": frame & ~known}
