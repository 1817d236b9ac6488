"""From a record's 12 raw inputs to the model's 13 channels, with the training files' statistics.

Per covariate but wind direction: clipped to its 0.1 and 99.9 percentiles over the training files
(outliers such as NDVI's fill values do not set the scale), then standardised with the mean and
std of the clipped training values; non-finite values -> 0 (the mean). Wind direction ``th``
(degrees, clockwise from north) is an angle: its sine and cosine, never standardised, so 359 and
1 degrees are neighbours. ``PrevFireMask`` becomes the binary fire channel (> 0; its -1 uncertain
pixels count as no fire, as persistence counts them). Channels, in order::

    elevation, sin th, cos th, vs, tmmn, tmmx, sph, pr, pdsi, NDVI, population, erc, fire
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emberformer.data.ndws.records import COVARIATES, INPUTS

ANGLE = INPUTS.index("th")
PREV_FIRE = INPUTS.index("PrevFireMask")
SCALED = tuple(i for i, n in enumerate(COVARIATES) if i != ANGLE)
CHANNEL_NAMES = ("elevation", "sin_th", "cos_th", *(COVARIATES[i] for i in SCALED[1:]), "fire")
CHANNELS = len(CHANNEL_NAMES)             # 13
FIRE_CHANNEL = CHANNELS - 1
PERCENTILES = (0.1, 99.9)
SAMPLE_VALUES = 2_000_000                 # values per covariate the percentiles are taken from


@dataclass(frozen=True)
class Normalisation:
    """Per-input clip bounds and the mean and std after clipping (float32 [12]; the angle and
    the fire mask: no clipping, mean 0, std 1)."""

    low: np.ndarray
    high: np.ndarray
    mean: np.ndarray
    std: np.ndarray

    def to_json(self) -> dict:
        return {k: getattr(self, k).tolist() for k in ("low", "high", "mean", "std")}

    @classmethod
    def from_json(cls, d: dict) -> "Normalisation":
        return cls(*(np.asarray(d[k], np.float32).reshape(len(INPUTS)) for k in ("low", "high", "mean", "std")))


def fit(x: np.ndarray, chunk: int = 256) -> Normalisation:
    """The statistics of the training inputs ``x`` [N, 12, H, W] (a memory map: read in chunks).

    Percentiles from at most :data:`SAMPLE_VALUES` evenly spaced values per covariate (exact on a
    small set, a close estimate on the published 15,000 samples); moments over every value.
    """
    n_in = len(INPUTS)
    big = float(np.finfo(np.float32).max)  # no clipping (finite, so index.json stays plain JSON)
    low, high = np.full(n_in, -big), np.full(n_in, big)
    mean, std = np.zeros(n_in), np.ones(n_in)
    for c in SCALED:
        flat = x[:, c].reshape(-1)
        step = max(1, flat.size // SAMPLE_VALUES)
        sample = np.asarray(flat[::step], np.float64)
        sample = sample[np.isfinite(sample)]
        if sample.size:
            low[c], high[c] = np.percentile(sample, PERCENTILES)
    count, total, sq = np.zeros(n_in), np.zeros(n_in), np.zeros(n_in)
    for start in range(0, len(x), chunk):
        part = np.asarray(x[start:start + chunk], np.float64)
        for c in SCALED:
            v = part[:, c]
            v = np.clip(v[np.isfinite(v)], low[c], high[c])
            count[c] += v.size
            total[c] += v.sum()
            sq[c] += (v ** 2).sum()
    for c in SCALED:
        if count[c]:
            mean[c] = total[c] / count[c]
            var = max(sq[c] / count[c] - mean[c] ** 2, 0.0)
            std[c] = np.sqrt(var) if var > 0 else 1.0
    return Normalisation(*(a.astype(np.float32) for a in (low, high, mean, std)))


def preprocess(raw: np.ndarray, norm: Normalisation) -> np.ndarray:
    """[12, h, w] raw inputs (degrees for ``th``; any strides) -> [13, h, w] float32 channels."""
    out = np.empty((CHANNELS, *raw.shape[1:]), np.float32)
    scaled = list(SCALED)
    cov = np.clip(raw[scaled], norm.low[scaled, None, None], norm.high[scaled, None, None])
    cov = (cov - norm.mean[scaled, None, None]) / norm.std[scaled, None, None]
    np.copyto(cov, 0.0, where=~np.isfinite(cov))
    out[0] = cov[0]
    angle = np.deg2rad(raw[ANGLE].astype(np.float64))
    out[1], out[2] = np.sin(angle), np.cos(angle)
    np.copyto(out[1:3], 0.0, where=~np.isfinite(out[1:3]))
    out[3:FIRE_CHANNEL] = cov[1:]
    out[FIRE_CHANNEL] = raw[PREV_FIRE] > 0
    return out
