"""Collate (left padding in time, spatial padding) and the device step (unpack bits, crop static)."""
from __future__ import annotations

import numpy as np
import torch

from emberformer.data.dataset import collate, to_device, unpack_bits


def item(T: int, H: int, W: int, window: list[int], seq_id: int, t: int, seed: int):
    rng = np.random.default_rng(seed)
    fire = rng.random((T, H, W)) > 0.5
    target = rng.random((1, H, W)) > 0.5
    wind = rng.random((T, 2)).astype(np.float32)
    packed = {"fire": torch.from_numpy(np.packbits(fire, axis=-1)),
              "target": torch.from_numpy(np.packbits(target, axis=-1)),
              "wind": torch.from_numpy(wind), "hw": (H, W), "window": window, "seq_id": seq_id, "t": t}
    return packed, fire, target, wind


def test_unpack_bits_is_the_inverse_of_packbits():
    x = np.random.default_rng(0).random((3, 5, 13)) > 0.5
    got = unpack_bits(torch.from_numpy(np.packbits(x, axis=-1)), 13)
    assert got.dtype == torch.float32 and torch.equal(got, torch.from_numpy(x).float())


def test_collate_and_to_device_pad_left_in_time_and_right_bottom_in_space():
    raster = torch.arange(2 * 20 * 30, dtype=torch.float16).reshape(2, 20, 30)
    a, fa, ta, wa = item(T=2, H=3, W=12, window=[1, 4, 2, 14], seq_id=7, t=1, seed=1)
    b, fb, tb, wb = item(T=4, H=5, W=9, window=[10, 15, 20, 29], seq_id=12, t=3, seed=2)
    batch = collate([a, b])
    assert batch["fire"].dtype == torch.uint8 and batch["fire"].shape == (2, 4, 5, 2)  # still packed
    assert batch["valid_t"].tolist() == [[False, False, True, True], [True, True, True, True]]
    assert batch["seq_id"].tolist() == [7, 12] and batch["t"].tolist() == [1, 3]
    out = to_device(batch, torch.device("cpu"), raster)
    assert out["fire"].shape == (2, 4, 5, 12) and out["static"].shape == (2, 2, 5, 12)
    # sample a: two real steps at the end, zeros before and outside its 3x12 frame
    assert torch.equal(out["fire"][0, 2:, :3, :12], torch.from_numpy(fa).float())
    assert out["fire"][0, :2].abs().sum() == 0 and out["fire"][0, :, 3:].abs().sum() == 0
    assert torch.equal(out["fire"][1, :, :5, :9], torch.from_numpy(fb).float())
    assert out["fire"][1, :, :, 9:].abs().sum() == 0
    assert torch.equal(out["target"][0, :, :3, :12], torch.from_numpy(ta).float())
    assert torch.allclose(out["wind"][0, 2:], torch.from_numpy(wa)) and out["wind"][0, :2].abs().sum() == 0
    assert torch.allclose(out["wind"][1], torch.from_numpy(wb))
    # static: each sample's window of the raster, zero padded
    assert torch.equal(out["static"][0, :, :3, :12], raster[:, 1:4, 2:14].float())
    assert out["static"][0, :, 3:].abs().sum() == 0
    assert torch.equal(out["static"][1, :, :5, :9], raster[:, 10:15, 20:29].float())
    # pixel mask marks exactly each sample's own frame
    assert out["mask"].dtype == torch.bool and out["mask"].shape == (2, 1, 5, 12)
    assert out["mask"][0, 0].sum() == 3 * 12 and out["mask"][0, 0, :3, :12].all()
    assert out["mask"][1, 0].sum() == 5 * 9 and not out["mask"][1, 0, :, 9:].any()
