"""collate: left padding in time, spatial padding with a pixel mask, dtypes."""
from __future__ import annotations

import torch

from emberformer.data.dataset import collate


def item(T, H, W, C, seq_id, t, seed):
    g = torch.Generator().manual_seed(seed)
    return {
        "fire": (torch.rand(T, H, W, generator=g) > 0.5).to(torch.uint8),
        "wind": torch.rand(T, 2, generator=g),
        "static": torch.rand(C, H, W, generator=g) + 1.0,  # never 0, so padding is visible
        "target": (torch.rand(1, H, W, generator=g) > 0.5).to(torch.uint8),
        "seq_id": seq_id,
        "t": t,
    }


def test_collate_pads_time_on_the_left_and_space_on_the_right_bottom():
    a = item(T=2, H=3, W=4, C=2, seq_id=7, t=1, seed=1)
    b = item(T=4, H=5, W=2, C=2, seq_id=12, t=3, seed=2)
    batch = collate([a, b])

    assert set(batch) == {"fire", "wind", "valid_t", "static", "target", "pixel_mask", "seq_id", "t"}
    assert batch["fire"].shape == (2, 4, 5, 4)
    assert batch["wind"].shape == (2, 4, 2)
    assert batch["valid_t"].shape == (2, 4)
    assert batch["static"].shape == (2, 2, 5, 4)
    assert batch["target"].shape == (2, 1, 5, 4)
    assert batch["pixel_mask"].shape == (2, 1, 5, 4)

    assert batch["fire"].dtype == torch.uint8
    assert batch["target"].dtype == torch.uint8
    assert batch["valid_t"].dtype == torch.bool
    assert batch["pixel_mask"].dtype == torch.bool
    assert batch["wind"].dtype == torch.float32
    assert batch["static"].dtype == torch.float32

    # time: a's two real frames are at the end, the two padded steps at the front are zero
    assert batch["valid_t"].tolist() == [[False, False, True, True], [True, True, True, True]]
    assert torch.equal(batch["fire"][0, 2:, :3, :4], a["fire"])
    assert batch["fire"][0, :2].sum().item() == 0
    assert torch.equal(batch["fire"][1, :, :5, :2], b["fire"])
    # wind aligned with the frames
    assert torch.equal(batch["wind"][0, 2:], a["wind"])
    assert torch.equal(batch["wind"][0, :2], torch.zeros(2, 2))
    assert torch.equal(batch["wind"][1], b["wind"])

    # space: pixel_mask is exactly each item's H x W in the top-left corner
    expected_mask = torch.zeros(2, 1, 5, 4, dtype=torch.bool)
    expected_mask[0, :, :3, :4] = True
    expected_mask[1, :, :5, :2] = True
    assert torch.equal(batch["pixel_mask"], expected_mask)
    assert torch.equal(batch["static"][0, :, :3, :4], a["static"])
    assert torch.equal(batch["static"][1, :, :5, :2], b["static"])
    assert torch.equal(batch["target"][0, :, :3, :4], a["target"])
    assert torch.equal(batch["target"][1, :, :5, :2], b["target"])
    # everything outside the mask is zero
    pad = ~batch["pixel_mask"]
    assert batch["static"][pad.expand(-1, 2, -1, -1)].abs().sum().item() == 0
    assert batch["target"][pad].sum().item() == 0
    assert batch["fire"][pad.expand(-1, 4, -1, -1)].sum().item() == 0

    assert batch["seq_id"].tolist() == [7, 12]
    assert batch["t"].tolist() == [1, 3]


def test_collate_same_sizes_is_a_plain_stack():
    items = [item(T=3, H=4, W=4, C=1, seq_id=i, t=2, seed=i) for i in range(3)]
    batch = collate(items)
    assert torch.equal(batch["fire"], torch.stack([it["fire"] for it in items]))
    assert torch.equal(batch["wind"], torch.stack([it["wind"] for it in items]))
    assert torch.equal(batch["static"], torch.stack([it["static"] for it in items]))
    assert torch.equal(batch["target"], torch.stack([it["target"] for it in items]))
    assert batch["valid_t"].all() and batch["pixel_mask"].all()


def test_collate_last_step_is_always_real():
    items = [item(T=T, H=2, W=2, C=1, seq_id=0, t=T - 1, seed=T) for T in (1, 5, 3)]
    batch = collate(items)
    assert batch["valid_t"].sum(1).tolist() == [1, 5, 3]
    assert batch["valid_t"][:, -1].all()
    for b, it in enumerate(items):
        assert torch.equal(batch["fire"][b, -1], it["fire"][-1])
