"""The 12 published WildfireSpreadTS folds: orderings of the four years as (train, train, val, test).

The split is by year only, so a fold never depends on a random seed; fold k is the k-th ordering
of the benchmark's list (Gerard et al. 2023).
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations, permutations

YEARS = (2018, 2019, 2020, 2021)

#: (train, train, val, test) for fold 0-11: the benchmark lists every pair of training years in
#: order, each followed by the two remaining years in both orders (tests check it against the list).
FOLDS: tuple[tuple[int, int, int, int], ...] = tuple(
    (*train, *rest) for train in combinations(YEARS, 2)
    for rest in permutations(y for y in YEARS if y not in train))


@dataclass(frozen=True)
class Fold:
    """The years of each split of one fold."""

    index: int
    train: tuple[int, int]
    val: tuple[int]
    test: tuple[int]

    def years(self, split: str) -> tuple[int, ...]:
        """The years of ``split`` ("train", "val" or "test")."""
        return {"train": self.train, "val": self.val, "test": self.test}[split]

    def describe(self) -> str:
        """One line for notices and errors: which year serves which split."""
        return (f"fold {self.index}: train {self.train[0]}, {self.train[1]}, val {self.val[0]}, "
                f"test {self.test[0]}")


def fold(k: int) -> Fold:
    """Fold ``k`` (0-11); ValueError names data.fold otherwise."""
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < len(FOLDS):
        raise ValueError(f"data.fold must be an integer 0-{len(FOLDS) - 1}, got {k!r}")
    a, b, v, t = FOLDS[k]
    return Fold(k, (a, b), (v,), (t,))
