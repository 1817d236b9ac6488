"""The DataLoader of data=wsts and data=ndws: the order and the augmentation of every sample are
functions of (seed, epoch, index), so a run resumed mid-epoch sees the batches it would have seen."""
from __future__ import annotations

from typing import Callable

import torch
from torch.utils.data import DataLoader, Dataset

from emberformer.data.wsts.samples import EpochKeyedSampler


def keyed_loader(ds: Dataset, batch_size: int, seed: int, shuffle: bool, rank: int, world_size: int,
                 num_workers: int, pin_memory: bool, collate_fn: Callable) -> DataLoader:
    """Loader of ``ds`` (its ``seed`` set) whose ``sampler.set_epoch(epoch, skip)`` fixes the
    order; its own RNG, so creating an iterator draws nothing from the global one."""
    ds.seed = seed
    sampler = EpochKeyedSampler(len(ds), seed, shuffle=shuffle, rank=rank, world_size=world_size)
    return DataLoader(
        ds, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed), collate_fn=collate_fn, pin_memory=pin_memory,
        persistent_workers=num_workers > 0, prefetch_factor=4 if num_workers > 0 else None)
