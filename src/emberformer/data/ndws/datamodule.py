"""``data=ndws``: Next Day Wildfire Spread's train / eval / test files -> train / val / test loaders.

The interface of :class:`emberformer.data.wsts.datamodule.WSTSDataModule` (``setup``, ``loader``,
``describe``, ``static_channels``, ``day_channels``, ``split``). A model gets one day of history
(``fire``: ``PrevFireMask`` > 0) and the 12 covariate channels as per-sample spatial ``static``
inputs, no per-day ones; the target is the next day's fire (``FireMask == 1``), which can go out
(``cumulative_target`` False), scored only where ``FireMask != -1`` (``target_valid``).
"""
from __future__ import annotations

import functools
import operator
from pathlib import Path
from typing import Any, Mapping

import torch
from torch.utils.data import DataLoader

from emberformer.data import builtin_set
from emberformer.data.keyed_loader import keyed_loader
from emberformer.data.ndws.cache import build_cache, read_index
from emberformer.data.ndws.preprocess import CHANNELS, FIRE_CHANNEL
from emberformer.data.ndws.samples import NDWSSamples, collate
from emberformer.data.ndws.simulated import SimulatedSettings, describe as describe_simulated, ensure_simulated
from emberformer.data.reader import DataError
from emberformer.data.wsts.inputs import ChannelRoles

SPLITS = ("train", "val", "test")
AUGMENT_KEYS = ("crop_size", "flip_rotate")


def _augment(values: Mapping[str, Any] | None) -> tuple[int | None, bool]:
    """``data.augment`` checked: ``crop_size`` null or 8-64 px, ``flip_rotate`` a bool."""
    values = dict(values or {})
    unknown = sorted(set(values) - set(AUGMENT_KEYS))
    if unknown:
        raise ValueError(f"data.augment.{unknown[0]} is not a setting; the settings: {', '.join(AUGMENT_KEYS)}")
    crop, flip = values.get("crop_size"), values.get("flip_rotate", False)
    if crop is not None:
        try:
            if isinstance(crop, bool):
                raise TypeError
            crop = operator.index(crop)
        except TypeError:
            crop = -1
        if not 8 <= crop <= 64:
            raise ValueError(f"data.augment.crop_size must be null (no crop) or an integer 8-64, got "
                             f"{values.get('crop_size')!r}")
    if not isinstance(flip, bool):
        raise ValueError(f"data.augment.flip_rotate must be true or false, got {flip!r}")
    return crop, flip


class NDWSDataModule:
    """The files at ``root`` (the folder of .tfrecord files); with ``root`` None, the built-in
    simulated set of settings ``simulated`` (written once into ``cache_dir``)."""

    #: the target is next-day fire, which can go out (model.keep_last is refused)
    cumulative_target = False
    #: the metric the field reports first (AUC-PR)
    primary_metric = "ap"

    def __init__(self, root: str | None = None, augment: Mapping[str, Any] | None = None,
                 cache_dir: str = "~/.cache/emberformer", batch_size: int = 16, num_workers: int = 0,
                 pin_memory: bool = False, progress: bool = True, simulated: Mapping[str, Any] | None = None):
        if root is None and simulated is None:
            raise ValueError("data.root is required with data=ndws unless data.simulated holds the built-in "
                             "set's settings: data.root=/path/to/next-day-wildfire-spread (the folder of "
                             ".tfrecord files)")
        self.simulated = SimulatedSettings.checked(simulated) if root is None else None
        self.crop_size, self.flip_rotate = _augment(augment)
        if int(batch_size) < 1:
            raise ValueError(f"hardware.batch_size must be >= 1, got {batch_size}")
        self.root = Path(root).expanduser() if root is not None else None
        self.cache_dir, self.progress = cache_dir, progress
        self.batch_size, self.num_workers, self.pin_memory = int(batch_size), int(num_workers), pin_memory
        self.roles = ChannelRoles(FIRE_CHANNEL, tuple(range(FIRE_CHANNEL)), ())
        self.channels = CHANNELS
        self.datasets: dict[str, NDWSSamples] = {}

    def setup(self) -> None:
        """Decode the root once (reused while unchanged) and build the three splits."""
        self.root = self.resolve_root()
        cache = build_cache(self.root, self.cache_dir, self.progress)
        self.datasets = {s: NDWSSamples(cache, s, train=s == "train", crop_size=self.crop_size,
                                        flip_rotate=self.flip_rotate) for s in SPLITS}
        index = read_index(cache)
        for s in ("train", "val"):
            if len(self.datasets[s]) == 0:
                names = ", ".join(n for n, _ in index.files[s])
                raise DataError(f"data.root {self.root}: the {s} files ({names}) hold no records")

    def resolve_root(self) -> Path:
        """``data.root``, or (root null) the built-in simulated set, written on first use."""
        return builtin_set.resolve_root(self.root, self.simulated, ensure_simulated, describe_simulated,
                                        "the built-in NDWS set", self.cache_dir, self.progress)

    def loader(self, split: str, seed: int = 0, rank: int = 0, world_size: int = 1) -> DataLoader:
        """Loader whose ``sampler.set_epoch(epoch, skip)`` fixes the order and the augmentation."""
        return keyed_loader(self.datasets[split], self.batch_size, seed, split == "train", rank, world_size,
                            self.num_workers, self.pin_memory, functools.partial(collate, roles=self.roles))

    @property
    def static_channels(self) -> int:
        """The 12 covariate channels (elevation, sin/cos wind direction, ... erc), per sample."""
        return len(self.roles.static)

    @property
    def day_channels(self) -> int:
        """None: one day of history, whose only per-day input is the fire."""
        return 0

    @property
    def split(self) -> dict[str, dict[str, list]]:
        """What split.json records: each split's files and their record counts."""
        out: dict[str, dict[str, list]] = {}
        for s in SPLITS:
            files = self.datasets[s].index.files[s] if s in self.datasets else ()
            out[s] = {"files": [n for n, _ in files], "records": [c for _, c in files]}
        return out

    def static_raster(self) -> torch.Tensor:
        """Nothing to keep on the device: a batch carries its covariates."""
        return torch.zeros(0)

    def describe(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for split, ds in self.datasets.items():
            out[f"data/{split}_samples"] = len(ds)
            out[f"data/{split}_files"] = len(ds.index.files[split])
        return out
