"""What a WildfireSpreadTS loader worker sends: each crop's stored pixels, in one flat buffer.

Why: the model's input is 40 float32 channels of a padded crop per day, most of it padding and
one-hot zeros on small images, while the crop's real pixels of the 23 stored bands are a tenth of
that. A loader worker's cost per batch is mostly the shared memory it fills (paid per byte) and
the hand-off of every tensor in the batch (paid per tensor), so a batch is **one** float32 tensor
``raw``: per sample a block [n x 23 + 1, h, w] of the crop's real pixels (no padding to the batch's
largest crop): the n input days' 23 bands as stored, except the angle bands, which are corrected
for the sample's flips and turned into their sine here (what ``samples.crop_first`` does to
them), then the target plane (next day's active fire > 0, as 0/1). Each block is copied once,
from the cache's memory map straight into the batch. The per-sample facts (size, padded size,
flips, fire, year, day) travel as small numpy arrays, pickled by value. In a loader worker the
buffer is one of the worker's reusable slots (``data/batch_slots.py``), handed back when the batch
is finished. ``on_device.finish`` makes the dense batch of ``samples.collate`` from it on the
device, value for value.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from emberformer.data.batch_slots import BatchSlots
from emberformer.data.wsts.inputs import ChannelRoles
from emberformer.data.wsts.layout import AF_BAND, BANDS, DEGREE_BANDS
from emberformer.data.wsts.on_device import LeanSpec
from emberformer.data.wsts.samples import WSTSSamples, batch_tensor, corrected_angles, draw_flips

NO_FLIPS = (False, False, 0)


def write_block(arr: np.ndarray, n: int, box: tuple[int, int, int, int], flips: tuple[bool, bool, int],
                out: np.ndarray) -> None:
    """Sample's block into ``out`` [n x 23 + 1, h, w]: the window ``arr`` [n + 1, 23, H, W]'s box
    (top, left, h, w) of the n input days (angle bands corrected for ``flips``, as their sine),
    then the target day's active fire > 0."""
    top, left, h, w = box
    days = out[:n * BANDS].reshape(n, BANDS, h, w)
    np.copyto(days, arr[:n, :, top:top + h, left:left + w])
    deg = list(DEGREE_BANDS)
    days[:, deg] = np.sin(np.deg2rad(corrected_angles(days[:, deg], *flips)))
    np.greater(arr[n, AF_BAND, top:top + h, left:left + w], 0, out=out[-1])


def lean_batch(items: list[tuple[WSTSSamples, int]], roles: ChannelRoles, spec: LeanSpec,
               slots: BatchSlots | None = None) -> dict:
    """The lean batch of samples (data set, key) (one ``n_leading_observations``): ``raw`` (the
    blocks, flat), ``hw`` [B, 2] each crop's size, ``canvas`` [B, 2] its padded size, ``flips``
    [B, 3], ``fire_id``/``year``/``t`` [B] (numpy), ``n`` days, ``valid_t``; ``roles`` and
    ``spec`` tell ``on_device.finish`` and ``inputs.to_device`` the rest. ``raw`` is written into
    one of the worker's ``slots`` when it has one free (``slot``: its handle, for ``finish``)."""
    n = items[0][0].n
    if any(ds.n != n for ds, _ in items):
        raise ValueError("a lean batch takes samples of one n_leading_observations")
    crops = [ds.crop(key) for ds, key in items]
    flips = [draw_flips(c.rng) if c.rng is not None else NO_FLIPS for c in crops]
    sizes = [(n * BANDS + 1) * c.box[2] * c.box[3] for c in crops]
    raw, slot = slots.take(sum(sizes)) if slots is not None else (batch_tensor((sum(sizes),), torch.float32), None)
    flat, off = raw.numpy(), 0
    for c, f, size in zip(crops, flips, sizes):
        write_block(c.window, n, c.box, f, flat[off:off + size].reshape(n * BANDS + 1, *c.box[2:]))
        off += size
    return {"raw": raw, "n": n,
            "hw": np.array([c.box[2:] for c in crops], np.int64),
            "canvas": np.array([c.canvas for c in crops], np.int64),
            "flips": np.array(flips, np.int64),
            "fire_id": np.array([c.fire.id for c in crops], np.int64),
            "year": np.array([c.fire.year for c in crops], np.int64),
            "t": np.array([c.t for c in crops], np.int64),
            "valid_t": np.ones((len(items), n), bool), "roles": roles, "spec": spec,
            **({"slot": slot} if slot is not None else {})}


class LeanSamples(Dataset):
    """The samples of a :class:`WSTSSamples` as lean batches: what the data module's loaders read
    (``__getitems__``: the DataLoader asks for a batch's keys at once, so each block is written
    straight into the batch; the loader's ``collate_fn`` is :func:`as_batch`)."""

    def __init__(self, samples: WSTSSamples, roles: ChannelRoles, spec: LeanSpec):
        self.samples, self.roles, self.spec = samples, roles, spec
        self.slots = BatchSlots()     # each worker process fills its own copy

    def __len__(self) -> int:
        return len(self.samples)

    def __getitems__(self, keys: list[int]) -> dict:
        return lean_batch([(self.samples, k) for k in keys], self.roles, self.spec, self.slots)

    def __getitem__(self, key: int) -> dict:
        return self.__getitems__([key])

    @property
    def seed(self) -> int:
        return self.samples.seed

    @seed.setter
    def seed(self, value: int) -> None:
        self.samples.seed = int(value)


def as_batch(batch: dict) -> dict:
    """The collate_fn of a :class:`LeanSamples` loader: ``__getitems__`` made the batch."""
    return batch
