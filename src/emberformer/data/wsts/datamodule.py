"""``data=wsts``: WildfireSpreadTS split by the fold's years -> train/val/test loaders.

The same interface as :class:`emberformer.data.datamodule.FireDataModule` (``setup``, ``loader``,
``describe``, ``static_channels``, ``day_channels``), plus what a model needs to know of a sample:
``n_leading_observations`` days of ``channels`` features each, of which ``static_positions`` do
not change from day to day (``inputs.py`` says which channel is the model's fire, static and
per-day input). Validation and test loaders use batch size 1 (whole centre-cropped images of
different sizes), as the benchmark does.

The target is tomorrow's active fire, not a cumulative burned area (``cumulative_target`` is
False): fire can go out, so nothing may assume that today's fire stays (``model.keep_last``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch.utils.data import DataLoader

from emberformer.data import builtin_set
from emberformer.data.keyed_loader import keyed_loader
from emberformer.data.reader import DataError
from emberformer.data.wsts import layout
from emberformer.data.wsts.cache import build_cache, fold_standardisation, read_index
from emberformer.data.wsts.folds import fold as get_fold
from emberformer.data.wsts.inputs import ChannelRoles
from emberformer.data.wsts.preprocess import feature_ids
from emberformer.data.wsts.on_device import LeanSpec
from emberformer.data.wsts.lean import LeanSamples, as_batch
from emberformer.data.wsts.samples import WSTSSamples
from emberformer.data.wsts.simulated import SimulatedSettings, ensure_simulated
from emberformer.data.wsts.simulated import describe as describe_simulated

SPLITS = ("train", "val", "test")


def _int_in(key: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"data.{key} must be an integer {lo}-{hi}, got {value!r}")
    return value


class WSTSDataModule:
    """WildfireSpreadTS at ``root`` (TIF or HDF5 layout), fold ``fold`` -> loaders; with ``root``
    None, the built-in simulated set of settings ``simulated`` (written once into ``cache_dir``)."""

    #: the target is next-day active fire, which can go out (FireDataModule's masks never shrink)
    cumulative_target = False
    #: the metric the field reports first (the run's closing block and the sweep table lead with it)
    primary_metric = "ap"

    def __init__(self, root: str | None = None, fold: int = 0, n_leading_observations: int = 1,
                 features: str = "all", format: str = "auto", crop_size: int = 128,
                 cache_dir: str = "~/.cache/emberformer", on_bad_sequence: str = "error",
                 batch_size: int = 16, num_workers: int = 0, pin_memory: bool = False,
                 progress: bool = True, simulated: Mapping[str, Any] | None = None):
        if root is None and simulated is None:
            raise ValueError("data.root is required with data=wsts unless data.simulated holds the built-in "
                             "set's settings: data.root=/path/to/WildfireSpreadTS (the folder holding "
                             "2018/ 2019/ 2020/ 2021/)")
        # checked now, so a bad data.simulated.* key stops the run before any work
        self.simulated = SimulatedSettings.checked(simulated) if root is None else None
        self.fold = get_fold(fold)
        self.n_leading_observations = _int_in("n_leading_observations", n_leading_observations, 1, 5)
        self.crop_size = _int_in("crop_size", crop_size, 1, 4096)
        self.feature_ids = feature_ids(features)
        if format not in layout.FORMATS:
            raise ValueError(f"data.format must be one of {', '.join(layout.FORMATS)}, got {format!r}")
        if on_bad_sequence not in ("error", "skip"):
            raise ValueError(f"data.on_bad_sequence must be 'error' or 'skip', got {on_bad_sequence!r}")
        if int(batch_size) < 1:
            raise ValueError(f"hardware.batch_size must be >= 1, got {batch_size}")
        self.root = Path(root).expanduser() if root is not None else None
        self.features, self.format = features, format
        self.cache_dir, self.on_bad_sequence, self.progress = cache_dir, on_bad_sequence, progress
        self.batch_size, self.num_workers, self.pin_memory = int(batch_size), int(num_workers), pin_memory
        self.channels = len(self.feature_ids)
        # what each selected channel is to a model: the fire, static, or per-day (inputs.py)
        self.roles = ChannelRoles.of(self.feature_ids)
        # positions (within the selected features) of the channels that are the same every day
        self.static_positions = self.roles.static
        self.datasets: dict[str, WSTSSamples] = {}
        self.mean = self.std = np.zeros(0, np.float32)

    def setup(self) -> None:
        """Decode the root once (reused while unchanged) and build the fold's three data sets."""
        self.root = self.resolve_root()
        cache = build_cache(self.root, self.cache_dir, self.format, self.on_bad_sequence, self.progress)
        self.mean, self.std = fold_standardisation(read_index(cache), self.fold)
        self.datasets = {
            split: WSTSSamples(cache, self.fold.years(split), self.n_leading_observations, self.mean,
                               self.std, self.feature_ids, train=split == "train", crop_size=self.crop_size)
            for split in SPLITS}
        empty = [f"{s} ({', '.join(map(str, self.fold.years(s)))})" for s in ("train", "val")
                 if len(self.datasets[s]) == 0]
        if empty:
            raise DataError(f"data.root {self.root}: {self.fold.describe()} gives no samples for "
                            f"{' and '.join(empty)} with data.n_leading_observations="
                            f"{self.n_leading_observations}")

    def resolve_root(self) -> Path:
        """``data.root``, or (root null) the built-in simulated set, written on first use."""
        return builtin_set.resolve_root(self.root, self.simulated, ensure_simulated, describe_simulated,
                                        "the built-in WSTS set", self.cache_dir, self.progress)

    def loader(self, split: str, seed: int = 0, rank: int = 0, world_size: int = 1) -> DataLoader:
        """Loader whose ``sampler.set_epoch(epoch, skip)`` fixes the order and the crops. Its
        batches are lean (the crops' stored bands, ``lean.py``): ``inputs.to_device``
        makes the 40-channel input on the device (``on_device.finish``)."""
        return keyed_loader(LeanSamples(self.datasets[split], self.roles, self.spec), self.batch_size if split == "train" else 1, seed,
                            split == "train", rank, world_size, self.num_workers, self.pin_memory,
                            as_batch)

    @property
    def spec(self) -> LeanSpec:
        """What the device needs to finish a lean batch (``on_device.py``): the fold's
        standardisation and the selected features."""
        return LeanSpec(self.mean, self.std, tuple(self.feature_ids))

    @property
    def static_channels(self) -> int:
        """Static channels a model gets (``static``): those of ``data.features`` that do not change."""
        return len(self.roles.static)

    @property
    def day_channels(self) -> int:
        """Per-day channels a model gets beside the fire (``dynamic``): the other features."""
        return len(self.roles.dynamic)

    @property
    def split(self) -> dict[str, dict[str, list]]:
        """What split.json records: each split's years and fires (``year/name``)."""
        return {s: {"years": list(self.fold.years(s)),
                    "fires": [f.label for f in self.datasets[s].fires] if s in self.datasets else []}
                for s in SPLITS}

    def static_raster(self) -> torch.Tensor:
        """Nothing to keep on the device: a WSTS batch carries its static bands (``inputs.py``)."""
        return torch.zeros(0)

    def describe(self) -> dict[str, int]:
        out: dict[str, int] = {"data/fold": self.fold.index}
        for split, ds in self.datasets.items():
            out[f"data/{split}_samples"] = len(ds)
            out[f"data/{split}_fires"] = len(ds.fires)
        return out
