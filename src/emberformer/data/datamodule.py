"""Data sets, splits by sequence and loaders, for real data (a root) or the built-in fires."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from emberformer.data import reader
from emberformer.data.cache import build_cache, read_index
from emberformer.data.dataset import FireSamples, collate
from emberformer.data.sampler import EpochSampler

SPLITS = ("train", "val", "test")


def split_sequences(ids: list[int], fractions: tuple[float, float, float], seed: int) -> dict[str, list[int]]:
    """Deterministic split by sequence; val and test get one each when there are >= 3 sequences."""
    ids = sorted(ids)
    order = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
    n = len(ids)
    n_val = int(round(fractions[1] * n))
    n_test = int(round(fractions[2] * n))
    if n >= 3:
        n_val, n_test = max(n_val, 1), max(n_test, 1)
    n_train = max(n - n_val - n_test, 0)
    return {"train": sorted(order[:n_train]), "val": sorted(order[n_train:n_train + n_val]),
            "test": sorted(order[n_train + n_val:])}


class FireDataModule:
    """Fire sequences in the data layout at ``root`` -> train/val/test loaders."""

    #: the masks are cumulative (burning or burned): fire never leaves a pixel (model.keep_last holds)
    cumulative_target = True
    #: the metric the closing block leads with (WildfireSpreadTS: ap)
    primary_metric = "f1"
    #: per-step spatial model inputs besides the fire frames (``dynamic``): none in this layout
    day_channels = 0

    def __init__(self, root: str | None, cache_dir: str = "~/.cache/emberformer",
                 split_seed: int = 0, splits: tuple[float, float, float] = (0.8, 0.1, 0.1),
                 max_history: int | None = None, batch_size: int = 16, num_workers: int = 0,
                 pin_memory: bool = False, on_bad_sequence: str = "error", progress: bool = True):
        if on_bad_sequence not in ("error", "skip"):
            raise ValueError(f"data.on_bad_sequence must be 'error' or 'skip', got {on_bad_sequence!r}")
        if int(batch_size) < 1:
            raise ValueError(f"hardware.batch_size must be >= 1, got {batch_size}")
        fr = tuple(float(f) for f in splits)
        if len(fr) != 3 or min(fr) < 0 or abs(sum(fr) - 1) > 1e-6:
            raise ValueError(f"data.splits must be three fractions >= 0 summing to 1, got {list(splits)}")
        if max_history is not None and int(max_history) < 1:
            raise ValueError(f"data.max_history must be null or >= 1, got {max_history}")
        if root is None and type(self) is FireDataModule:
            raise ValueError("data.root is required with data=deep_crown: "
                             "data.root=/path/to/organized_spreads")
        self.root = reader.check_root(root) if root is not None else None
        self.cache_dir = cache_dir
        self.split_seed = split_seed
        self.fractions = fr
        self.max_history = max_history
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.pin_memory = pin_memory
        self.on_bad_sequence = on_bad_sequence
        self.progress = progress
        self.datasets: dict[str, FireSamples] = {}
        self.split: dict[str, list[int]] = {}
        self.layout_root: Path | None = None  # the folder in the data layout, once set up

    def prepare_root(self) -> Path:
        """Where the layout lives (the synthetic subclass generates it first)."""
        assert self.root is not None
        return self.root

    def setup(self, need_splits: bool = True) -> None:
        """Cache, split and data sets; ``need_splits=False`` (predict) takes any number of sequences."""
        self.layout_root = self.prepare_root()
        cache = build_cache(self.layout_root, self.cache_dir, self.on_bad_sequence, self.progress)
        index = read_index(cache)
        ids = list(index.sequences)
        self.split = split_sequences(ids, self.fractions, self.split_seed)
        self.datasets = {k: FireSamples(cache, v, self.max_history) for k, v in self.split.items()}
        self.static_channels = index.static_channels
        if need_splits and (len(self.datasets["train"]) == 0 or len(self.datasets["val"]) == 0):
            raise reader.DataError(
                f"{len(ids)} usable sequence(s) give {len(self.datasets['train'])} training and "
                f"{len(self.datasets['val'])} validation samples; need at least 3 sequences")

    def loader(self, split: str, seed: int = 0, rank: int = 0, world_size: int = 1) -> DataLoader:
        """Loader whose ``sampler.set_epoch(epoch, skip)`` fixes the order (train is shuffled)."""
        ds = self.datasets[split]
        sampler = EpochSampler(len(ds), seed, shuffle=split == "train", rank=rank, world_size=world_size)
        # a loader of its own RNG: creating an iterator draws a seed from it, and a draw from the
        # global RNG there would shift every dropout mask after a mid-epoch resume
        generator = torch.Generator().manual_seed(seed)
        return DataLoader(
            ds, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers, generator=generator,
            collate_fn=collate, pin_memory=self.pin_memory, persistent_workers=self.num_workers > 0,
            prefetch_factor=4 if self.num_workers > 0 else None,
        )

    def static_raster(self):
        """The normalised static raster [C, Y, X] (float16) that the trainer keeps on the device."""
        return self.datasets["train"].static_raster()

    def describe(self) -> dict[str, int]:
        out = {}
        for k, ds in self.datasets.items():
            out[f"data/{k}_samples"] = len(ds)
            out[f"data/{k}_sequences"] = len(ds.seq_ids)
        return out


class SyntheticFireDataModule(FireDataModule):
    """The built-in PyTorchFire fires: generated once into cache_dir, then read like real data."""

    def __init__(self, num_sequences: int = 128, size: int = 64, max_frames: int = 12,
                 steps_per_frame: int = 2, seed: int = 0, **kwargs):
        super().__init__(root=None, **kwargs)
        self.gen = dict(num_sequences=num_sequences, size=size, max_frames=max_frames,
                        steps_per_frame=steps_per_frame, seed=seed)

    def prepare_root(self) -> Path:
        from emberformer.data.synthetic import ensure_synthetic

        try:
            return ensure_synthetic(self.cache_dir, progress=self.progress, **self.gen)
        except KeyboardInterrupt:  # ensure_synthetic removed its temporary folder
            raise reader.DataInterrupted(
                "Interrupted while generating the built-in data set; nothing was harmed: the partly "
                f"built copy was removed, the finished data sets in {self.cache_dir} are as they were "
                "(the next run generates it again)") from None
