"""The original data path, kept as the data-loader benchmark's reference: every sample decodes
its PNG frames again and batches carry unpacked frames and float32 static bands."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from emberformer.data import reader
from emberformer.data.cache import wind_range
from emberformer.data.dataset import pad_history
from emberformer.data.frames import decode_mask


class PngSamples(Dataset):
    """The original approach: every sample decodes its PNG frames again.

    Sample (seq, t) opens fire frames 0..t and isochrone t+1 with ``decode_mask``, crops the static
    bands from the normalised raster (read once here) and reads the sequence's weather file. The
    samples and their contents are those of :class:`FireSamples` over the same root.
    """

    def __init__(self, root: str | Path, seq_ids: list[int], max_history: int | None = None):
        root = Path(root)
        seqs = {s.seq_id: s for s in reader.list_sequences(root)}
        self.seqs = {i: seqs[i] for i in seq_ids}
        self.max_history = max_history
        self.raster = reader.read_landscape(root)
        self.lo, hi = wind_range(root)
        self.span = np.where(hi > self.lo, hi - self.lo, 1.0)
        self.samples = [(sid, t) for sid in seq_ids for t in range(len(self.seqs[sid].fire_frames) - 1)]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        sid, t = self.samples[i]
        s = self.seqs[sid]
        start = 0 if self.max_history is None else max(0, t + 1 - self.max_history)
        fire = np.stack([decode_mask(p) for p in s.fire_frames[start:t + 1]]).astype(np.uint8)
        target = decode_mask(s.iso_frames[t + 1]).astype(np.uint8)[None]
        static = np.array(reader.crop_static(self.raster, s.window, sid, fire.shape[1:]), dtype=np.float32)
        wind = ((reader.read_weather(s.weather_file)[start:t + 1] - self.lo) / self.span).astype(np.float32)
        return {"fire": torch.from_numpy(fire), "wind": torch.from_numpy(wind),
                "static": torch.from_numpy(static), "target": torch.from_numpy(target),
                "seq_id": sid, "t": t}


def dense_collate(items: list[dict]) -> dict:
    """The original approach's batches: unpacked uint8 frames and float32 static per sample."""
    batch = pad_history(items)
    _, _, H, W = batch["fire"].shape
    static = torch.zeros(len(items), items[0]["static"].shape[0], H, W)
    for b, it in enumerate(items):
        _, h, w = it["fire"].shape
        static[b, :, :h, :w] = it["static"]
    return {**batch, "static": static}
