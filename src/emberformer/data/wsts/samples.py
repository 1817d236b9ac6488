"""WildfireSpreadTS samples over the decoded cache: n days in, next day's active fire out.

A fire of D days gives D - n samples for ``n_leading_observations`` = n: sample t takes days
t .. t+n-1 as input and day t+n's active fire > 0 as the target (not a burned-area mask: the
persistence forecast is "tomorrow's active fire = today's"). A fire of fewer than n + 1 days
gives none, with a warning naming it.

Training samples are random square crops (``crop_size``, the best of 10 tries by fire in the
target weighted 1000x, then fire in the input), flipped and rotated by multiples of 90 degrees
with the angle bands corrected; validation and test samples are the centre crop to the largest
multiple of 32 in each dimension. Crops and flips are drawn from (seed, epoch, sample), never
from a global RNG, so an epoch's samples are the same whatever the number of workers, and a run
resumed mid-epoch sees the same ones. An image smaller than the crop (or than 32 px) is padded;
``valid`` marks its real pixels.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from emberformer.data.batch_slots import shared_tensor
from emberformer.data.sampler import EpochSampler
from emberformer.data.wsts.cache import CachedFire, read_index
from emberformer.data.wsts.inputs import ChannelRoles
from emberformer.data.wsts.layout import AF_BAND, DEGREE_BANDS
from emberformer.data.wsts.preprocess import AF_BINARY_CHANNEL, CHANNELS, preprocess

CROP_TRIES = 10
TARGET_WEIGHT = 1000.0
EVAL_MULTIPLE = 32
ALL = list(range(CHANNELS))


def window_mean(a: np.ndarray) -> float:
    """``float(a.mean())`` bit for bit (the same sum, the same division) without np.mean's
    Python overhead: the crop search takes 20 means per training sample."""
    if a.dtype == np.bool_:
        return float(np.add.reduce(a, axis=None, dtype=np.float64) / np.intp(a.size))
    if a.dtype in (np.float32, np.float64):
        return float(a.dtype.type(np.add.reduce(a, axis=None) / np.intp(a.size)))
    return float(a.mean())      # other dtypes: np.mean's own accumulation


def best_crop(fire_in: np.ndarray, target: np.ndarray, size: int,
              rng: np.random.Generator) -> tuple[int, int]:
    """Top-left corner of the best of 10 random ``size`` crops: the mean active fire (hours) of the
    input days ``fire_in`` [n, H, W] plus 1000x the fire fraction of the target [H, W], the first
    best kept. The 20 draws (top, left, top, left, ...) come from one call, which consumes the
    generator as 20 calls do; a corner drawn twice is scored once; an image no larger than the
    crop has one corner, (0, 0), and is not scored."""
    H, W = target.shape
    ch, cw = min(size, H), min(size, W)
    draws = rng.integers(0, np.tile([H - ch + 1, W - cw + 1], CROP_TRIES)).tolist()
    if ch == H and cw == W:
        return 0, 0
    best, corner, scores = -np.inf, (0, 0), {}
    for top, left in zip(draws[::2], draws[1::2]):
        if (top, left) not in scores:
            scores[top, left] = (window_mean(fire_in[:, top:top + ch, left:left + cw])
                                 + TARGET_WEIGHT * window_mean(target[top:top + ch, left:left + cw]))
        if scores[top, left] > best:
            best, corner = scores[top, left], (top, left)
    return corner


def pad_to(days: np.ndarray, target: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pad [n,23,H,W] days (NaN: becomes 0 after preprocessing) and the [H,W] target (0) at the
    bottom and right to at least h x w; also return the valid-pixel mask."""
    H, W = target.shape
    ph, pw = max(h - H, 0), max(w - W, 0)
    valid = np.ones((H, W), bool)
    if ph or pw:
        days = np.pad(days, ((0, 0), (0, 0), (0, ph), (0, pw)), constant_values=np.nan)
        target = np.pad(target, ((0, ph), (0, pw)))
        valid = np.pad(valid, ((0, ph), (0, pw)))
    return days, target, valid


def draw_flips(rng: np.random.Generator) -> tuple[bool, bool, int]:
    """(horizontal flip, vertical flip, k): a training sample's flips and rotation by k*90 degrees
    (counter-clockwise), drawn in this order."""
    return rng.random() > 0.5, rng.random() > 0.5, int(rng.integers(0, 4))


def angle_map(hflip: bool, vflip: bool, k: int) -> tuple[float, float]:
    """(sign, offset): the flips and the rotation map an angle a (degrees clockwise from north) to
    sign * a + offset (mod 360): mirroring left-right a -> 360 - a, top-bottom a -> 180 - a,
    turning by k*90 degrees counter-clockwise a -> a - 90k."""
    sign, offset = 1.0, 0.0
    if hflip:
        sign, offset = -sign, 360.0 - offset
    if vflip:
        sign, offset = -sign, 180.0 - offset
    return sign, offset - 90.0 * k


def corrected_angles(deg: np.ndarray, hflip: bool, vflip: bool, k: int) -> np.ndarray:
    """The angle bands' values ``deg`` after the flips and the rotation (:func:`angle_map`), in one
    pass: a new array, or ``deg`` itself when nothing moves."""
    if not (hflip or vflip or k):
        return deg
    sign, offset = angle_map(hflip, vflip, k)
    return mod_360(sign * deg + offset)


def mod_360(y: np.ndarray) -> np.ndarray:
    """``y % 360.0`` bit for bit, in place, for |y| < 720 (every angle of [0, 360] after the
    moves), by the steps numpy's remainder takes (an exact fmod, then + 360 when negative; 0 is
    +0) at a fraction of its cost; other values (out-of-range angles, inf) take ``%`` itself."""
    if not np.fmax.reduce(np.abs(y), axis=None, initial=0.0) < 720.0:   # fmax skips NaN
        return y % 360.0
    np.subtract(y, 360.0, out=y, where=y >= 360.0)    # the exact fmod: y - 360 is exact here
    np.add(y, 360.0, out=y, where=y <= -360.0)        # (Sterbenz), as is y + 360 below -360
    np.add(y, 360.0, out=y, where=y < 0.0)            # what remainder does to a negative fmod
    y += 0.0                                          # -0 -> +0
    return y


def flip_and_rotate(days: np.ndarray, target: np.ndarray, valid: np.ndarray,
                    rng: np.random.Generator, angle_bands: tuple[int, ...] = DEGREE_BANDS
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random horizontal and vertical flip and rotation by k*90 degrees (counter-clockwise), the
    angle bands (``angle_bands`` of axis 1, degrees clockwise from north) corrected to match.

    ``days`` must be the caller's own array: the angle correction is pointwise, so it is applied in
    place before the pixels move, and the results are views (the preprocessing makes the copy).
    """
    hflip, vflip, k = draw_flips(rng)
    deg = list(angle_bands)
    if hflip or vflip or k:
        days[:, deg] = corrected_angles(days[:, deg], hflip, vflip, k)
    if hflip:
        days, target, valid = days[..., ::-1], target[..., ::-1], valid[..., ::-1]
    if vflip:
        days, target, valid = days[..., ::-1, :], target[..., ::-1, :], valid[..., ::-1, :]
    if k:
        days, target, valid = (np.rot90(a, k, axes=(-2, -1)) for a in (days, target, valid))
    return days, target, valid


def unflipped(a: np.ndarray, hflip: bool, vflip: bool, k: int) -> np.ndarray:
    """The view of ``a`` (a flipped and rotated sample, last two axes space) in the frame before
    :func:`flip_and_rotate` moved its pixels: writing pixel (r, c) of the view writes where that
    pixel ends up."""
    v = np.rot90(a, -k, axes=(-2, -1)) if k else a
    if vflip:
        v = v[..., ::-1, :]
    return v[..., ::-1] if hflip else v


Box = tuple[int, int, int, int]   # top, left, height, width


def published_order(arr: np.ndarray, n: int, box: Box, rng: np.random.Generator | None,
                    size: tuple[int, int], mean: np.ndarray, std: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, target, valid) of a window [n + 1, 23, H, W] in the published loader's order: crop, pad
    to ``size`` (NaN, so 0 after preprocessing), flip and rotate the raw bands (training: ``rng``),
    then preprocess every pixel of the padded crop. The data-loader benchmark's per-access paths
    use this; the project's loader gets the same values from :func:`crop_first`."""
    top, left, h, w = box
    days = arr[:n, :, top:top + h, left:left + w]   # a view of the memory map
    target = np.asarray(arr[n, AF_BAND, top:top + h, left:left + w]) > 0
    if rng is not None:  # flip_and_rotate corrects angles in place: on a copy of our own
        days, target, valid = pad_to(np.array(days), target, *size)
        days, target, valid = flip_and_rotate(days, target, valid, rng)
    else:
        days, target, valid = pad_to(days, target, *size)
    return preprocess(days, mean, std), np.ascontiguousarray(target), np.ascontiguousarray(valid)


def crop_first(arr: np.ndarray, n: int, box: Box, rng: np.random.Generator | None,
               size: tuple[int, int], mean: np.ndarray, std: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What :func:`published_order` gives, value for value, with per-pixel work on the crop's real
    pixels only: the outputs start as zeros (what padding becomes), and the crop is preprocessed
    straight from the memory map into the view of them that undoes the flips and the rotation
    (every step is pointwise, so where it is computed changes no value). Only the three angle
    bands are copied, to correct them."""
    top, left, h, w = box
    days = arr[:n, :, top:top + h, left:left + w]   # a view of the memory map
    H, W = max(size[0], h), max(size[1], w)
    x = np.zeros((n, CHANNELS, H, W), np.float32)
    target, valid = np.zeros((H, W), bool), np.zeros((H, W), bool)
    flips = draw_flips(rng) if rng is not None else (False, False, 0)
    degrees = corrected_angles(days[:, list(DEGREE_BANDS)], *flips)
    xv, tv, vv = (unflipped(a, *flips) for a in (x, target, valid))
    preprocess(days, mean, std, out=xv[..., :h, :w], degrees=degrees)
    np.greater(arr[n, AF_BAND, top:top + h, left:left + w], 0, out=tv[:h, :w])
    vv[:h, :w] = True
    return x, target, valid


def centre_window(n: int) -> tuple[int, int]:
    """(start, length) of the centre crop of n pixels to the largest multiple of 32 (torchvision's
    rounding of the offset); under 32 pixels: the whole image."""
    length = n // EVAL_MULTIPLE * EVAL_MULTIPLE or n
    return int(round((n - length) / 2.0)), length


class Crop(NamedTuple):
    """A sample's crop: its fire, first day t, window [n + 1, 23, H, W] (a view of the cache),
    box (top, left, h, w), the generator that draws its flips next (training) or None, and the
    size it is padded to at least."""

    fire: CachedFire
    t: int
    window: np.ndarray
    box: Box
    rng: np.random.Generator | None
    size: tuple[int, int]

    @property
    def canvas(self) -> tuple[int, int]:
        """The padded sample's height and width."""
        return max(self.size[0], self.box[2]), max(self.size[1], self.box[3])


class WSTSSamples(Dataset):
    """The samples of the given years from a cache folder made by ``build_cache``.

    Index ``epoch * len(self) + i`` is sample i with the crop of that epoch (see
    :class:`EpochKeyedSampler`); plain ``i`` is epoch 0.
    """

    def __init__(self, cache: str | Path, years: tuple[int, ...], n_leading_observations: int,
                 mean: np.ndarray, std: np.ndarray, features: tuple[int, ...], train: bool,
                 crop_size: int = 128, seed: int = 0):
        self.index = read_index(cache)
        self.n = int(n_leading_observations)
        self.mean, self.std = mean, std
        self.features = list(features)
        self.train, self.crop_size, self.seed = train, int(crop_size), int(seed)
        self.fires = [f for f in self.index.fires if f.year in years]
        self.samples: list[tuple[int, int]] = []
        for k, f in enumerate(self.fires):
            if f.days < self.n + 1:
                print(f"WARNING: fire {f.label} has {f.days} day(s), fewer than "
                      f"data.n_leading_observations + 1 = {self.n + 1}: it gives no samples", flush=True)
            self.samples += [(k, t) for t in range(f.days - self.n)]
        self._maps: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def days(self, fire: CachedFire) -> np.ndarray:
        """The fire's cached days [T, 23, H, W], mapped on first use in each worker process."""
        if fire.id not in self._maps:  # a plain view of the map: slicing it costs less
            self._maps[fire.id] = np.asarray(self.index.array(fire))
        return self._maps[fire.id]

    def window(self, i: int) -> np.ndarray:
        """Sample i's n input days and its target day [n + 1, 23, H, W]: a view of the fire's
        memory map (the data-loader benchmark's per-access readers decode these files instead)."""
        k, t = self.samples[i]
        return self.days(self.fires[k])[t:t + self.n + 1]

    def crop_window(self, i: int, epoch: int, arr: np.ndarray | None = None
                    ) -> tuple[tuple[int, int, int, int], np.random.Generator | None]:
        """(top, left, height, width) of sample i's crop in that epoch, chosen from the active-fire
        band alone (the other bands are read for the window only); for a training sample also the
        generator, left where the crop's draws end, that draws the flips next. ``arr``: the
        sample's :meth:`window`, when the caller has it."""
        arr = self.window(i) if arr is None else arr
        H, W = arr.shape[-2:]
        if not self.train:
            (top, h), (left, w) = centre_window(H), centre_window(W)
            return (top, left, h, w), None
        rng = np.random.default_rng([self.seed, epoch, i])
        top, left = best_crop(arr[:self.n, AF_BAND], arr[self.n, AF_BAND] > 0, self.crop_size, rng)
        return (top, left, min(self.crop_size, H), min(self.crop_size, W)), rng

    #: how a window becomes (x, target, valid); the benchmark's per-access readers use published_order
    make_sample = staticmethod(crop_first)

    def crop(self, key: int) -> Crop:
        """Where sample ``key`` (epoch * len + i) comes from and how it is cropped (:class:`Crop`)."""
        epoch, i = divmod(int(key), len(self))
        k, t = self.samples[i]
        arr = self.window(i)
        box, rng = self.crop_window(i, epoch, arr)
        size = (self.crop_size, self.crop_size) if rng is not None else (EVAL_MULTIPLE, EVAL_MULTIPLE)
        return Crop(self.fires[k], t, arr, box, rng, size)

    def __getitem__(self, key: int) -> dict:
        fire, t, arr, box, rng, size = self.crop(key)
        x, target, valid = self.make_sample(arr, self.n, box, rng, size, self.mean, self.std)
        x_today = x[-1:, AF_BINARY_CHANNEL].copy()
        if self.features != ALL:
            x = x[:, self.features]
        return {
            "x": torch.from_numpy(x),                                                  # [n, C, h, w] float32
            "target": torch.from_numpy(target[None].astype(np.float32)),              # [1, h, w] 0/1
            "fire_today": torch.from_numpy(x_today),                                   # [1, h, w] 0/1
            "valid": torch.from_numpy(valid[None]),                                    # [1, h, w] bool
            "fire_id": fire.id, "year": fire.year, "t": t,
        }

def batch_tensor(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised batch tensor; in a loader worker, in shared memory from the start."""
    if get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    return shared_tensor(math.prod(shape), dtype).view(shape)


def collate(items: list[dict], roles: ChannelRoles | None = None) -> dict:
    """Stack samples, padding space (bottom, right) to the largest in the batch; valid=False there.
    ``valid_t`` (all True: every sample has n real days) and ``roles`` (what each channel is,
    when given) let ``inputs.to_device`` make the model's inputs from it."""
    B = len(items)
    n, C = items[0]["x"].shape[:2]
    H = max(it["x"].shape[-2] for it in items)
    W = max(it["x"].shape[-1] for it in items)
    out = {"x": batch_tensor((B, n, C, H, W), torch.float32), "target": batch_tensor((B, 1, H, W), torch.float32),
           "fire_today": batch_tensor((B, 1, H, W), torch.float32),
           "valid": batch_tensor((B, 1, H, W), torch.bool)}
    for b, it in enumerate(items):
        h, w = it["x"].shape[-2:]
        for key, batch in out.items():
            batch[b, ..., :h, :w] = it[key]
            batch[b, ..., h:, :] = 0   # only where a smaller sample leaves room (nothing, mostly)
            batch[b, ..., :h, w:] = 0
    for key in ("fire_id", "year", "t"):
        out[key] = torch.tensor([it[key] for it in items])
    out["valid_t"] = torch.ones(B, n, dtype=torch.bool)
    if roles is not None:
        out["roles"] = roles
    return out


class EpochKeyedSampler(EpochSampler):
    """:class:`EpochSampler` whose indices carry the epoch (``epoch * n + i``), so each epoch's
    random crops follow from (seed, epoch, sample) inside any worker."""

    def __iter__(self) -> Iterator[int]:
        base = self.epoch * self.n
        return iter(base + i for i in super().__iter__())
