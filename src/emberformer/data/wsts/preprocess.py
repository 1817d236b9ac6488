"""The published WildfireSpreadTS preprocessing of one sample, and the statistics it standardises by.

Per day, from the 23 bands (active fire already in whole hours, see layout.py) to 40 channels:
the degree bands (7, 13, 19) through sin; a binary active-fire channel (hours > 0) computed before
standardisation; every band but the degree bands and land cover standardised with the mean and
std of the fold's training years; the binary channel appended; non-finite values (NaN: missing)
-> 0 after standardisation, i.e. the band's mean; land cover (band 16) replaced by its one-hot
code of 17 classes. Channels, in order: bands 0-15, land cover classes 1-17, bands 17-22, binary
active fire. The feature subsets the benchmark reports pick channels of these 40 by name.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emberformer.data.wsts.layout import AF_BAND, BANDS, DEGREE_BANDS, LANDCOVER_BAND

LANDCOVER_CLASSES = 17
CHANNELS = BANDS - 1 + LANDCOVER_CLASSES + 1   # 40
AF_HOURS_CHANNEL = CHANNELS - 2                # 38: active fire, hours (standardised)
AF_BINARY_CHANNEL = CHANNELS - 1               # 39: active fire > 0
LANDCOVER_CHANNELS = tuple(range(LANDCOVER_BAND, LANDCOVER_BAND + LANDCOVER_CLASSES))  # 16-32
# channels that do not change from day to day: slope, aspect, elevation, land cover
STATIC_CHANNELS = (12, 13, 14, *LANDCOVER_CHANNELS)
UNSCALED_BANDS = (*DEGREE_BANDS, LANDCOVER_BAND)  # mean 0, std 1: not standardised

FEATURE_SETS: dict[str, tuple[int, ...]] = {
    "all": tuple(range(CHANNELS)),
    # the benchmark's Table 5: vegetation + active fire, and the "multi" combination
    "vegetation": (0, 1, 2, 3, 4, 38, 39),
    "multi": (*range(0, 10), 11, 12, 13, 14, *LANDCOVER_CHANNELS, 38, 39),
    # its Table 4 ablations: each non-vegetation group + active fire
    "topography": (12, 13, 14, 38, 39),
    "landcover": (*LANDCOVER_CHANNELS, 38, 39),
    "erc_drought": (10, 15, 38, 39),
    "weather": (5, 6, 7, 8, 9, 11, 38, 39),
    "forecast": (33, 34, 35, 36, 37, 38, 39),
    "active_fire": (38, 39),
}


def feature_ids(name: str) -> tuple[int, ...]:
    """The channels (of the 40) of feature subset ``name``; ValueError names data.features."""
    if name not in FEATURE_SETS:
        raise ValueError(f"data.features must be one of {', '.join(FEATURE_SETS)}, got {name!r}")
    return FEATURE_SETS[name]


@dataclass
class Moments:
    """Per-band count, mean and sum of squared deviations, merged image by image (Chan et al.).

    Which values count: the finite ones; for the active-fire band only detections (hours > 0),
    as in the published statistics, where "no detection" is missing rather than a value 0.
    """

    count: np.ndarray  # [23] float64
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def empty(cls) -> "Moments":
        z = np.zeros(BANDS, np.float64)
        return cls(z.copy(), z.copy(), z.copy())

    def add(self, days: np.ndarray) -> None:
        """Add the pixels of [T, 23, H, W] (active fire in hours)."""
        for b in range(BANDS):
            v = days[:, b].astype(np.float64).ravel()
            v = v[v > 0] if b == AF_BAND else v[np.isfinite(v)]
            if v.size:
                self.merge(Moments.of(b, v))

    @classmethod
    def of(cls, band: int, values: np.ndarray) -> "Moments":
        out = cls.empty()
        out.count[band] = values.size
        out.mean[band] = values.mean()
        out.m2[band] = ((values - out.mean[band]) ** 2).sum()
        return out

    def merge(self, other: "Moments") -> None:
        n = self.count + other.count
        delta = other.mean - self.mean
        safe = np.where(n > 0, n, 1.0)
        self.mean = self.mean + delta * other.count / safe
        self.m2 = self.m2 + other.m2 + delta ** 2 * self.count * other.count / safe
        self.count = n

    def to_json(self) -> dict:
        return {"count": self.count.tolist(), "mean": self.mean.tolist(), "m2": self.m2.tolist()}

    @classmethod
    def from_json(cls, d: dict) -> "Moments":
        return cls(*(np.asarray(d[k], np.float64).reshape(BANDS) for k in ("count", "mean", "m2")))


def standardisation(moments: list[Moments]) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) float32 [23] over the given years' moments; degree bands and land cover get
    (0, 1), and so does a band with no values or no spread (it stays as it is)."""
    total = Moments.empty()
    for m in moments:
        total.merge(m)
    std = np.sqrt(total.m2 / np.where(total.count > 0, total.count, 1.0))
    mean = total.mean.copy()
    flat = (total.count == 0) | ~(std > 0)
    mean[flat], std[flat] = 0.0, 1.0
    mean[list(UNSCALED_BANDS)], std[list(UNSCALED_BANDS)] = 0.0, 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def landcover_one_hot(band: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """[n, H, W] class numbers -> [n, 17, H, W] float32 (into ``out`` when given); a value outside
    1-17 (or NaN) is all 0."""
    cls = np.where(np.isfinite(band), band, 0).astype(np.int64)
    classes = np.arange(1, LANDCOVER_CLASSES + 1)[None, :, None, None]
    if out is None:
        out = np.empty((band.shape[0], LANDCOVER_CLASSES, *band.shape[1:]), np.float32)
    np.equal(cls[:, None], classes, out=out, casting="unsafe")
    return out


def _standardise(src: np.ndarray, mean: np.ndarray, std: np.ndarray, out: np.ndarray) -> None:
    np.subtract(src, mean[None, :, None, None], out=out)
    np.divide(out, std[None, :, None, None], out=out)


def preprocess(days: np.ndarray, mean: np.ndarray, std: np.ndarray, out: np.ndarray | None = None,
               degrees: np.ndarray | None = None) -> np.ndarray:
    """[n, 23, H, W] raw days (degrees, active fire in hours; any strides) -> [n, 40, H, W] float32
    model input, written into ``out`` (any strides, e.g. a flipped view of a larger array) or one
    new array. ``degrees``: the degree bands [n, 3, H, W] to take the sine of in place of the
    days' own (the loader's angle-corrected copy), so the days can stay a read-only view."""
    n, _, H, W = days.shape
    if out is None:
        out = np.empty((n, CHANNELS, H, W), np.float32)
    lc, after = LANDCOVER_BAND, LANDCOVER_BAND + LANDCOVER_CLASSES      # 16, 33
    _standardise(days[:, :lc], mean[:lc], std[:lc], out[:, :lc])
    _standardise(days[:, lc + 1:], mean[lc + 1:], std[lc + 1:], out[:, after:AF_BINARY_CHANNEL])
    for j, band in enumerate(DEGREE_BANDS):  # not standardised (mean 0, std 1): their sine
        ch = band if band < lc else band - 1 + LANDCOVER_CLASSES
        np.sin(np.deg2rad(days[:, band] if degrees is None else degrees[:, j]), out=out[:, ch])
    np.greater(days[:, AF_BAND], 0, out=out[:, AF_BINARY_CHANNEL], casting="unsafe")
    for part in (out[:, :lc], out[:, after:AF_BINARY_CHANNEL]):  # missing values -> the mean
        np.copyto(part, 0.0, where=~np.isfinite(part))
    landcover_one_hot(days[:, lc], out=out[:, lc:after])
    return out
