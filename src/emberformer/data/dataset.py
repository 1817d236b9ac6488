"""Expanding-history samples over the decoded-frame cache, the left-padding collate, and the
device-side step that turns a compact batch into model inputs.

A sequence of T frames gives T-1 samples: sample t takes fire frames 0..t and weather rows 0..t
as input and isochrone frame t+1 as the target. Frames travel through the loader still bit-packed
(1 bit a pixel) and static terrain does not travel at all: ``to_device`` unpacks the bits and crops
each sample's window from the raster that lives on the device.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from emberformer.data.cache import read_index
from emberformer.data.target_mask import split_mask
from emberformer.data.wsts import inputs as wsts_inputs


class FireSamples(Dataset):
    """Samples of the given sequence ids from a cache folder made by ``build_cache``."""

    def __init__(self, cache: str | Path, seq_ids: list[int], max_history: int | None = None):
        self.cache = Path(cache)
        self.index = read_index(self.cache)
        self.meta = self.index.sequences
        self.static_channels = self.index.static_channels
        self.seq_ids = [i for i in seq_ids if i in self.meta]
        self.max_history = max_history
        self.samples = [(sid, t) for sid in self.seq_ids for t in range(self.meta[sid].frames - 1)]
        self._maps: dict[tuple[int, str], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def _map(self, sid: int, kind: str) -> np.ndarray:
        key = (sid, kind)
        if key not in self._maps:  # opened lazily so each worker process maps its own files
            self._maps[key] = np.load(self.cache / f"{sid}_{kind}.npy", mmap_mode="r")
        return self._maps[key]

    def frame(self, sid: int, kind: str, t: int) -> np.ndarray:
        """Frame t of sequence ``sid`` unpacked, bool [H, W]; ``kind`` "fire" (input) or "iso" (target)."""
        return np.unpackbits(np.asarray(self._map(sid, kind)[t]), axis=-1)[..., :self.meta[sid].width].astype(bool)

    def static_raster(self) -> torch.Tensor:
        """The whole normalised static raster [C, Y, X] (float16)."""
        return torch.from_numpy(np.load(self.cache / "static.npy"))

    def __getitem__(self, i: int) -> dict:
        sid, t = self.samples[i]
        m = self.meta[sid]
        start = 0 if self.max_history is None else max(0, t + 1 - self.max_history)
        return {
            "fire": torch.from_numpy(np.array(self._map(sid, "fire")[start:t + 1])),   # [T,H,W/8] packed
            "wind": torch.from_numpy(np.array(self._map(sid, "wind")[start:t + 1])),   # [T,2]
            "target": torch.from_numpy(np.array(self._map(sid, "iso")[t + 1:t + 2])),  # [1,H,W/8] packed
            "hw": (m.height, m.width),
            "window": list(m.window),
            "seq_id": sid,
            "t": t,
        }

    def history_lengths(self) -> list[int]:
        return [t + 1 if self.max_history is None else min(t + 1, self.max_history)
                for _, t in self.samples]


def pad_history(items: list[dict]) -> dict[str, torch.Tensor]:
    """``fire``, ``target``, ``wind`` and ``valid_t`` of a batch: histories left-padded in time
    (``valid_t`` marks real steps), frames padded in space to the largest (any last-axis unit:
    packed bytes or pixels)."""
    B = len(items)
    T = max(it["fire"].shape[0] for it in items)
    H = max(it["fire"].shape[1] for it in items)
    W = max(it["fire"].shape[2] for it in items)
    fire = torch.zeros(B, T, H, W, dtype=torch.uint8)
    target = torch.zeros(B, 1, H, W, dtype=torch.uint8)
    wind = torch.zeros(B, T, 2)
    valid_t = torch.zeros(B, T, dtype=torch.bool)
    for b, it in enumerate(items):
        t, h, w = it["fire"].shape
        fire[b, T - t:, :h, :w] = it["fire"]
        target[b, :, :h, :w] = it["target"]
        wind[b, T - t:] = it["wind"]
        valid_t[b, T - t:] = True
    return {"fire": fire, "target": target, "wind": wind, "valid_t": valid_t}


def collate(items: list[dict]) -> dict:
    """Left-pad in time (``valid_t`` marks real steps) and pad space to the largest frame."""
    return {**pad_history(items),
            "hw": torch.tensor([it["hw"] for it in items]),
            "window": torch.tensor([it["window"] for it in items]),
            "seq_id": torch.tensor([it["seq_id"] for it in items]),
            "t": torch.tensor([it["t"] for it in items])}


def unpack_bits(packed: torch.Tensor, width: int) -> torch.Tensor:
    """[..., W/8] uint8 (np.packbits order, most significant bit first) -> [..., width] float."""
    shifts = torch.arange(7, -1, -1, device=packed.device, dtype=torch.uint8)
    bits = (packed.unsqueeze(-1) >> shifts) & 1
    return bits.flatten(-2)[..., :width].float()


def to_device(batch: dict, device: torch.device, static: torch.Tensor) -> dict:
    """Compact CPU batch -> model inputs on ``device``; ``static`` is the raster already there.
    A WildfireSpreadTS batch (its days in ``x``, or ``raw`` when lean) carries its static bands itself."""
    if "x" in batch or "raw" in batch:
        return wsts_inputs.to_device(batch, device)
    nb = device.type == "cuda"
    hw = batch["hw"]
    H, W = int(hw[:, 0].max()), int(hw[:, 1].max())
    fire = unpack_bits(batch["fire"].to(device, non_blocking=nb), W)
    target = unpack_bits(batch["target"].to(device, non_blocking=nb), W)
    crops = []
    for (y0, y1, x0, x1) in batch["window"].tolist():
        crop = static[:, y0:y1, x0:x1]
        crops.append(F.pad(crop, (0, W - crop.shape[-1], 0, H - crop.shape[-2])))
    hw_dev = hw.to(device, non_blocking=nb)
    rows = torch.arange(H, device=device)[None, :, None] < hw_dev[:, 0, None, None]
    cols = torch.arange(W, device=device)[None, None, :] < hw_dev[:, 1, None, None]
    return {
        "fire": fire, "target": target,
        "wind": batch["wind"].to(device, non_blocking=nb),
        "valid_t": batch["valid_t"].to(device, non_blocking=nb),
        "static": torch.stack(crops).float(),
        **split_mask((rows & cols).unsqueeze(1), batch, device),
        "seq_id": batch["seq_id"], "t": batch["t"],
    }
