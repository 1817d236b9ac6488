"""Expanding-history samples over the decoded-frame cache, and the left-padding collate.

A sequence of T frames gives T-1 samples: sample t takes fire frames 0..t and weather rows 0..t
as input and isochrone frame t+1 as the target. Frames leave the worker as uint8 (0/1); the float
conversion happens on the device.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset


class FireSamples(Dataset):
    """Samples of the given sequence ids from a cache folder made by ``build_cache``."""

    def __init__(self, cache: str | Path, seq_ids: list[int], max_history: int | None = None):
        self.cache = Path(cache)
        meta = json.loads((self.cache / "index.json").read_text())
        frames = {s["id"]: s for s in meta["sequences"]}
        self.static_channels = int(meta["static_channels"])
        self.seq_ids = [i for i in seq_ids if i in frames]
        self.max_history = max_history
        self.samples = [(sid, t) for sid in self.seq_ids for t in range(frames[sid]["frames"] - 1)]
        self.widths = {sid: frames[sid]["width"] for sid in self.seq_ids}
        self._maps: dict[tuple[int, str], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def _map(self, sid: int, kind: str) -> np.ndarray:
        key = (sid, kind)
        if key not in self._maps:  # opened lazily so each worker process maps its own files
            self._maps[key] = np.load(self.cache / f"{sid}_{kind}.npy", mmap_mode="r")
        return self._maps[key]

    def _unpack(self, sid: int, kind: str, sl: slice | int) -> np.ndarray:
        packed = np.asarray(self._map(sid, kind)[sl])
        return np.unpackbits(packed, axis=-1, count=self.widths[sid])

    def __getitem__(self, i: int) -> dict:
        sid, t = self.samples[i]
        start = 0 if self.max_history is None else max(0, t + 1 - self.max_history)
        return {
            "fire": torch.from_numpy(self._unpack(sid, "fire", slice(start, t + 1))),   # [T,H,W] u8
            "wind": torch.from_numpy(np.array(self._map(sid, "wind")[start:t + 1])),    # [T,2]
            "static": torch.from_numpy(np.array(self._map(sid, "static"), dtype=np.float32)),
            "target": torch.from_numpy(self._unpack(sid, "iso", t + 1))[None],          # [1,H,W] u8
            "seq_id": sid,
            "t": t,
        }

    def history_lengths(self) -> list[int]:
        return [t + 1 if self.max_history is None else min(t + 1, self.max_history)
                for _, t in self.samples]


def collate(items: list[dict]) -> dict:
    """Left-pad in time (valid_t marks real steps) and pad space to the largest frame (pixel_mask)."""
    B = len(items)
    T = max(it["fire"].shape[0] for it in items)
    H = max(it["fire"].shape[1] for it in items)
    W = max(it["fire"].shape[2] for it in items)
    C = items[0]["static"].shape[0]
    fire = torch.zeros(B, T, H, W, dtype=torch.uint8)
    wind = torch.zeros(B, T, 2)
    valid_t = torch.zeros(B, T, dtype=torch.bool)
    static = torch.zeros(B, C, H, W)
    target = torch.zeros(B, 1, H, W, dtype=torch.uint8)
    pixel_mask = torch.zeros(B, 1, H, W, dtype=torch.bool)
    for b, it in enumerate(items):
        t, h, w = it["fire"].shape
        fire[b, T - t:, :h, :w] = it["fire"]
        wind[b, T - t:] = it["wind"]
        valid_t[b, T - t:] = True
        static[b, :, :h, :w] = it["static"]
        target[b, :, :h, :w] = it["target"]
        pixel_mask[b, :, :h, :w] = True
    return {"fire": fire, "wind": wind, "valid_t": valid_t, "static": static, "target": target,
            "pixel_mask": pixel_mask, "seq_id": torch.tensor([it["seq_id"] for it in items]),
            "t": torch.tensor([it["t"] for it in items])}
