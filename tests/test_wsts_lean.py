"""The WildfireSpreadTS loaders send lean batches (the crops' stored bands) and the device makes
the 40-channel input (``data/wsts/lean.py``, ``on_device.py``): the finished batch must be the one the dense
path (``WSTSSamples.__getitem__`` + ``samples.collate``) gives, value for value, for every crop,
flip, rotation, padding, feature subset and number of input days, on files written with tifffile."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from emberformer.data.batch_slots import BatchSlots
from emberformer.data.dataset import to_device
from emberformer.data.wsts.on_device import finish
from emberformer.data.wsts.lean import lean_batch
from emberformer.data.wsts.samples import collate
from test_wsts import module, tif_root, wsts_cache  # noqa: F401  (the module's fixtures)

CPU = torch.device("cpu")
DENSE_KEYS = ("x", "target", "fire_today", "valid", "fire_id", "year", "t", "valid_t")


def assert_same_batch(got: dict, want: dict) -> None:
    for key in DENSE_KEYS:
        assert got[key].dtype == want[key].dtype and got[key].shape == want[key].shape, key
        assert torch.equal(got[key], want[key]), key   # bit for bit (NaN never reaches a batch)


@pytest.mark.parametrize("crop, n, features", [(16, 2, "all"), (128, 1, "all"), (24, 1, "vegetation")])
def test_finished_lean_batches_equal_the_dense_batches(tif_root, wsts_cache, crop, n, features):
    dm = module(tif_root, wsts_cache, fold=0, crop_size=crop, n_leading_observations=n, features=features,
                batch_size=3)
    ds = dm.datasets["train"]
    keys = list(range(5 * len(ds)))      # five epochs of crops, flips and rotations
    flips = set()
    for start in range(0, len(keys), 3):
        part = keys[start:start + 3]
        lean = lean_batch([(ds, k) for k in part], dm.roles, dm.spec)
        flips |= {tuple(f) for f in lean["flips"].tolist()}
        assert_same_batch(finish(lean, CPU), collate([ds[k] for k in part], roles=dm.roles))
    assert len(flips) >= 8              # most of the 16 flip/rotation draws were among them
    for split in ("val", "test"):       # whole centre crops, and one beside a smaller training crop
        ev = dm.datasets[split]
        for items in ([(ev, 0)], [(ev, len(ev) - 1)], [(ev, 0), (ds, 7)]):
            lean = lean_batch(items, dm.roles, dm.spec)
            assert_same_batch(finish(lean, CPU), collate([d[k] for d, k in items], roles=dm.roles))
    assert ds[7]["x"].shape[-1] < ev[0]["x"].shape[-1] or crop >= 32


def test_the_loader_sends_a_tenth_of_the_bytes_and_to_device_finishes_it(tif_root, wsts_cache):
    dm = module(tif_root, wsts_cache, fold=0, batch_size=4)     # crop 128 of 40x36 and 33x45 images
    loader = dm.loader("train", seed=3)
    loader.sampler.set_epoch(1)
    lean = next(iter(loader))
    assert "x" not in lean and lean["n"] == 1 and lean["raw"].dtype == torch.float32
    assert lean["raw"].numel() == sum((23 + 1) * h * w for h, w in lean["hw"].tolist())   # real pixels only
    keys = list(loader.sampler)[:4]                              # epoch 1: keys len(ds) + i
    dense = collate([dm.datasets["train"][k] for k in keys], roles=dm.roles)
    sent = lean["raw"].numel() * 4
    full = sum(dense[k].numel() * dense[k].element_size() for k in ("x", "target", "fire_today", "valid"))
    assert sent * 10 < full
    got, want = to_device(lean, CPU, torch.zeros(0)), to_device(dense, CPU, torch.zeros(0))
    for key in ("fire", "static", "dynamic", "target", "mask", "valid_t"):
        assert torch.equal(got[key], want[key]), key
    assert got["static"].shape[1] == dm.static_channels and got["dynamic"].shape[2] == dm.day_channels


def test_nan_and_out_of_range_land_cover_become_zeros():
    """The device's preprocessing of single pixels: a NaN band -> 0, land cover outside 1-17 or
    NaN -> no class, the binary fire channel from hours > 0."""
    from emberformer.data.wsts.on_device import LeanSpec, standardise
    from emberformer.data.wsts.preprocess import preprocess

    rng = np.random.default_rng(0)
    days = rng.normal(0, 1, (2, 23, 3, 4)).astype(np.float32)
    days[:, 16] = np.array([[0, 1, 17, 18], [np.nan, 5, 2.0, -3], [9, 9, 9, np.inf]], np.float32)
    days[0, 3, 0, 0] = np.nan
    days[:, 22] = np.array([[0, 3, 0, 21], [0, 0, 1, 0], [np.nan, 0, 0, 4]], np.float32)
    mean, std = rng.normal(0, 1, 23).astype(np.float32), rng.uniform(0.5, 2, 23).astype(np.float32)
    for b in (7, 13, 16, 19):
        mean[b], std[b] = 0.0, 1.0
    sines = days.copy()
    sines[:, [7, 13, 19]] = np.sin(np.deg2rad(days[:, [7, 13, 19]]))
    got = standardise(torch.from_numpy(sines), LeanSpec(mean, std, tuple(range(40))))
    np.testing.assert_array_equal(got.numpy(), preprocess(days, mean, std), strict=True)
    assert float(got[0, 3, 0, 0]) == 0.0 and float(got[1, 16:33, 0, 0].sum()) == 0.0


def test_workers_reuse_their_buffers_and_every_finished_batch_is_the_dense_one(tif_root, wsts_cache):
    """Two real loader workers over three epochs: each batch, finished as the trainer does, is the
    dense batch of its keys; the workers refill a few shared buffers (slots) handed back by
    ``finish`` instead of a new one per batch."""
    dm = module(tif_root, wsts_cache, fold=0, crop_size=16, n_leading_observations=2, batch_size=2,
                num_workers=2)
    ds, loader = dm.datasets["train"], dm.loader("train", seed=1)
    slots, batches = set(), 0
    for epoch in range(3):
        loader.sampler.set_epoch(epoch)
        keys = list(loader.sampler)
        for b, lean in enumerate(loader):
            assert lean["slot"].key[0] != os.getpid()          # filled in a worker process
            slots.add(lean["slot"].key)
            part = keys[2 * b:2 * b + 2]
            assert_same_batch(finish(lean, CPU), collate([ds[k] for k in part], roles=dm.roles))
            batches += 1
    assert batches == 3 * math.ceil(len(ds) / 2) >= 3 * len(slots)    # each slot used three times or more
    assert len({w for w, _ in slots}) == 2


def test_batches_held_unfinished_are_never_overwritten(tif_root, wsts_cache):
    """A whole epoch taken from the loader before any batch is finished (more batches than a
    worker has slots): the worker takes new buffers for them, and each is still its own batch
    when finished afterwards; finishing a batch twice is an error, not a read of a reused buffer."""
    dm = module(tif_root, wsts_cache, fold=0, crop_size=16, batch_size=1, num_workers=1)
    ds, loader = dm.datasets["train"], dm.loader("train", seed=2)
    loader.sampler.set_epoch(1)
    keys, held = list(loader.sampler), list(loader)
    assert len(held) > BatchSlots().count and sum("slot" in b for b in held) <= BatchSlots().count
    for k, lean in zip(keys, held):
        assert_same_batch(finish(lean, CPU), collate([ds[k]], roles=dm.roles))
    with pytest.raises(RuntimeError, match="finish each batch from the loader once"):
        finish(held[0], CPU)


def test_batches_dropped_unfinished_hand_their_buffers_back(tif_root, wsts_cache):
    """Iterators left after two batches (a ``limit_batches`` run drops what the worker had
    prefetched), five epochs running: the worker's slots come back as the dropped batches go, so
    a full epoch afterwards still gets every batch in one of them."""
    dm = module(tif_root, wsts_cache, fold=0, crop_size=16, batch_size=1, num_workers=1)
    ds, loader = dm.datasets["train"], dm.loader("train", seed=4)
    for epoch in range(5):
        loader.sampler.set_epoch(epoch)
        for i, lean in enumerate(loader):
            finish(lean, CPU)
            if i == 1:
                break
    loader.sampler.set_epoch(5)
    keys = list(loader.sampler)
    for k, lean in zip(keys, loader):
        assert "slot" in lean
        assert_same_batch(finish(lean, CPU), collate([ds[k]], roles=dm.roles))


def test_a_stale_copy_of_a_slot_handle_frees_nothing():
    """A copy of a handle (copy.copy, or one a forked child inherits) dropped after the slot was
    refilled leaves the new batch's mark: only the handle of the fill the slot holds frees it."""
    import copy

    from emberformer.data.batch_slots import FREE, SlotHandle

    slot = torch.zeros(16)
    slot[0] = 1.0
    a = SlotHandle(slot[:1], (0, 0), 1.0, os.getpid())
    b = copy.copy(a)
    a.release()
    assert float(slot[0]) == FREE
    slot[0] = 2.0                        # the worker refills the slot
    del b
    assert float(slot[0]) == 2.0
    other = SlotHandle(slot[:1], (0, 0), 2.0, os.getpid() + 1)   # armed in another process
    other.release()
    assert float(slot[0]) == 2.0
