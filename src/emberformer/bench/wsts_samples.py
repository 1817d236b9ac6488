"""The published loader's two data paths, kept as the WSTS data-loader benchmark's references:
every access decodes the sample's day GeoTIFFs again (its TIF path) or reads the sample's days
from the fire's HDF5 file (its HDF5 path), then crops and preprocesses as the project's loader.

Both are :class:`~emberformer.data.wsts.samples.WSTSSamples` whose :meth:`window` reads files
instead of slicing the decoded cache, and which preprocess in the published loader's order
(:func:`~emberformer.data.wsts.samples.published_order`: pad, flip, then every pixel of the
padded crop), so the samples, crops and values are the project's own; the project's loader
gets them from its own memory maps, preprocessing the crop's real pixels only."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from emberformer.data.wsts import layout
from emberformer.data.wsts.cache import WSTSIndex
from emberformer.data.wsts.samples import WSTSSamples, published_order


class TifPerAccess(WSTSSamples):
    """Sample (fire, t) opens the n + 1 day files t .. t + n with tifffile on every access."""

    make_sample = staticmethod(published_order)

    def __init__(self, like: WSTSSamples, root: str | Path):
        self.__dict__.update(like.__dict__)
        self._maps = {}
        self.day_files = {f.id: sorted((Path(root) / str(f.year) / f.name).glob("*.tif")) for f in self.fires}

    def window(self, i: int) -> np.ndarray:
        k, t = self.samples[i]
        days = [layout.read_tif_day(p) for p in self.day_files[self.fires[k].id][t:t + self.n + 1]]
        arr = np.stack(days)
        arr[:, layout.AF_BAND] = layout.active_fire_hours(arr[:, layout.AF_BAND])
        return arr


class Hdf5PerAccess(WSTSSamples):
    """Sample (fire, t) opens the fire's HDF5 file with h5py and reads days t .. t + n on every
    access (the converter's file: active fire already in whole hours)."""

    make_sample = staticmethod(published_order)

    def __init__(self, like: WSTSSamples, root: str | Path):
        self.__dict__.update(like.__dict__)
        self._maps = {}
        self.files = {f.id: Path(root) / str(f.year) / f"{f.name}.hdf5" for f in self.fires}

    def window(self, i: int) -> np.ndarray:
        import h5py

        k, t = self.samples[i]
        with h5py.File(self.files[self.fires[k].id], "r") as f:
            return np.asarray(f["data"][t:t + self.n + 1], dtype=np.float32)


def write_hdf5(index: WSTSIndex, out: str | Path) -> Path:
    """The fires of a decoded cache as the published converter writes them
    (``out/{year}/{fire}.hdf5``, dataset ``data`` (T, 23, H, W), attributes ``year``, ``fire_name``,
    ``img_dates``), uncompressed as the converter leaves them."""
    import h5py

    out = Path(out)
    for fire in index.fires:
        (out / str(fire.year)).mkdir(parents=True, exist_ok=True)
        with h5py.File(out / str(fire.year) / f"{fire.name}.hdf5", "w") as f:
            dset = f.create_dataset("data", data=np.asarray(index.array(fire)))
            dset.attrs["year"] = fire.year
            dset.attrs["fire_name"] = fire.name
            dset.attrs["img_dates"] = list(fire.dates)
    return out
