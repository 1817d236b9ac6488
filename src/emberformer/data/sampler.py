"""A shuffling sampler whose order depends only on (seed, epoch), so a run can resume mid-epoch."""
from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[int]):
    """Permutation per epoch from (seed, epoch); sharded by rank; can skip samples already seen."""

    def __init__(self, n: int, seed: int, shuffle: bool = True, rank: int = 0, world_size: int = 1):
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def _order(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        if self.world_size > 1 and self.shuffle:  # training: equal step counts for gradient sync
            per = -(-self.n // self.world_size)
            order = (order * 2)[: per * self.world_size][self.rank::self.world_size]
        elif self.world_size > 1:  # evaluation: every sample exactly once over all ranks
            order = order[self.rank::self.world_size]
        return order

    def __iter__(self) -> Iterator[int]:
        return iter(self._order()[self.skip:])

    def __len__(self) -> int:
        return len(self._order()) - self.skip
