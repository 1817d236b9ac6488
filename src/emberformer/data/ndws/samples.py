"""Next Day Wildfire Spread samples over the decoded cache: yesterday's fire and the covariates in,
the next day's fire out, its uncertain pixels marked.

Each sample is one record: ``x`` [1, 13, h, w] (one day of history: the channels of
:mod:`preprocess`), ``target`` [1, h, w] (``FireMask == 1``), ``valid`` (the image's pixels) and
``target_valid`` (``FireMask != -1``): the data set's valid target pixels, which ``to_device``
folds into the batch's ``mask``, so uncertain pixels reach neither the loss nor any score.

Training augmentation (off by default): a random ``crop_size`` crop and/or random flips and
rotations by multiples of 90 degrees, the wind direction corrected to match (the WSTS helper).
Both are drawn from (seed, epoch, sample), so an epoch's samples do not depend on the workers.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from emberformer.data.ndws.cache import read_index
from emberformer.data.ndws.preprocess import ANGLE, preprocess
from emberformer.data.wsts.inputs import ChannelRoles
from emberformer.data.wsts.samples import flip_and_rotate


class NDWSSamples(Dataset):
    """The records of one split of a cache made by ``build_cache``; index ``epoch * len + i`` is
    record i with that epoch's augmentation (``EpochKeyedSampler``)."""

    def __init__(self, cache: str | Path, split: str, train: bool = False, crop_size: int | None = None,
                 flip_rotate: bool = False, seed: int = 0):
        self.index = read_index(cache)
        self.split, self.norm = split, self.index.norm
        self.train, self.crop_size, self.flip_rotate, self.seed = train, crop_size, flip_rotate, int(seed)
        self.n = self.index.samples(split)
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.n

    def record(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Record i's raw inputs [12, 64, 64] and FireMask [64, 64] (views of the memory maps,
        mapped on first use in each worker; the bench's per-access reader parses the file instead)."""
        if self._arrays is None:
            self._arrays = self.index.arrays(self.split)
        x, y = self._arrays
        return x[i], y[i]

    def __getitem__(self, key: int) -> dict:
        epoch, i = divmod(int(key), len(self))
        raw, fire_mask = self.record(i)
        known = np.ones(fire_mask.shape, bool)
        if self.train and (self.crop_size or self.flip_rotate):
            rng = np.random.default_rng([self.seed, epoch, i])
            if self.crop_size:
                H, W = fire_mask.shape
                h, w = min(self.crop_size, H), min(self.crop_size, W)
                top, left = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
                raw, fire_mask = raw[:, top:top + h, left:left + w], fire_mask[top:top + h, left:left + w]
                known = known[:h, :w]
            if self.flip_rotate:  # angles corrected in place: on a copy of our own
                days, fire_mask, known = flip_and_rotate(np.array(raw[None]), fire_mask, known, rng, (ANGLE,))
                raw = days[0]
        x = preprocess(raw, self.norm)
        fire_mask = np.asarray(fire_mask)
        return {
            "x": torch.from_numpy(x[None]),                                                   # [1, 13, h, w]
            "target": torch.from_numpy((fire_mask == 1).astype(np.float32)[None]),           # [1, h, w] 0/1
            "valid": torch.from_numpy(np.ascontiguousarray(known)[None]),                    # [1, h, w] bool
            "target_valid": torch.from_numpy((fire_mask != -1)[None]),                       # [1, h, w] bool
            "fire_id": i, "t": 0,
        }


def collate(items: list[dict], roles: ChannelRoles | None = None) -> dict:
    """Stack samples (all of one size in a batch); ``valid_t`` is all True (one real day) and
    ``roles`` says which channel is the fire (``inputs.to_device``)."""
    out = {k: torch.stack([it[k] for it in items]) for k in ("x", "target", "valid", "target_valid")}
    for key in ("fire_id", "t"):
        out[key] = torch.tensor([it[key] for it in items])
    out["valid_t"] = torch.ones(len(items), 1, dtype=torch.bool)
    if roles is not None:
        out["roles"] = roles
    return out
