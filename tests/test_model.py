"""EmberFormer (tiny configuration) and the copy-last baseline."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from emberformer.data.dataset import collate, to_device
from emberformer.models.copy_last import CopyLast
from emberformer.models.emberformer import EmberFormer

TINY = dict(static_channels=3, d_model=16, nhead=2, num_layers=1, dim_feedforward=32,
            segformer_hidden_sizes=(16, 16, 16, 16), decoder_hidden_size=16, base_channels=8,
            patch_size=8)


def tiny(**over) -> EmberFormer:
    torch.manual_seed(0)
    return EmberFormer(**{**TINY, **over})


@pytest.fixture(scope="module")
def model():
    """Tiny model with larger random weights: at the default init the untrained output barely
    depends on the input (differences ~1e-4), which would make atol=1e-5 checks nearly vacuous."""
    m = tiny()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return m.eval()


def inputs(B, T, H, W, C=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return ((torch.rand(B, T, H, W, generator=g) > 0.5).float(), torch.ones(B, T, dtype=torch.bool),
            torch.rand(B, T, 2, generator=g), torch.rand(B, C, H, W, generator=g))


@pytest.mark.parametrize("B,T,H,W", [(2, 3, 20, 27), (1, 1, 16, 16), (3, 5, 9, 8), (1, 2, 7, 33)])
def test_output_shape(model, B, T, H, W):
    with torch.no_grad():
        fire, valid_t, wind, static = inputs(B, T, H, W)
        out = model.float()(fire=fire, valid_t=valid_t, wind=wind, static=static)
    assert out.shape == (B, 1, H, W)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


RASTER = torch.rand(3, 40, 27, generator=torch.Generator().manual_seed(9)).half()


def item(T, H, W, seed):
    """A sample as FireSamples gives it: bit-packed frames, a window into RASTER."""
    g = torch.Generator().manual_seed(seed)
    fire = (torch.rand(T, H, W, generator=g) > 0.6).numpy()
    y0 = 0 if seed % 2 else 20
    return {"fire": torch.from_numpy(np.packbits(fire, axis=-1)),
            "wind": torch.rand(T, 2, generator=g),
            "target": torch.from_numpy(np.packbits(np.zeros((1, H, W), bool), axis=-1)),
            "hw": (H, W), "window": [y0, y0 + H, 0, W], "seq_id": seed, "t": T - 1}


def run(model, batch, dtype=torch.float32):
    model = model.to(dtype)
    b = to_device(batch, torch.device("cpu"), RASTER)
    with torch.no_grad():
        return model(fire=b["fire"].to(dtype), valid_t=b["valid_t"], wind=b["wind"].to(dtype),
                     static=b["static"].to(dtype)).float()


# float64 keeps rounding noise (~1e-5 in float32 for logits of magnitude ~7) far below atol;
# float32 is checked with a looser tolerance.
@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-5), (torch.float32, 1e-4)])
def test_left_padding_invariance(model, dtype, atol):
    a = item(T=2, H=20, W=27, seed=1)
    b = item(T=5, H=20, W=27, seed=2)
    alone_a = run(model, collate([a]), dtype)
    alone_b = run(model, collate([b]), dtype)
    both = run(model, collate([a, b]), dtype)
    assert collate([a, b])["valid_t"][0].tolist() == [False, False, False, True, True]
    torch.testing.assert_close(both[0:1], alone_a, atol=atol, rtol=1e-6)
    torch.testing.assert_close(both[1:2], alone_b, atol=atol, rtol=1e-6)
    # the check is not vacuous: treating a's padding as real steps changes its output
    batch = collate([a, b])
    batch["valid_t"][:] = True
    assert (run(model, batch, dtype)[0:1] - alone_a).abs().max().item() > 1e-2


def test_padded_steps_content_is_ignored(model):
    fire, valid, wind, static = inputs(1, 4, 16, 16, seed=3)
    valid[:, :2] = False

    def f64(b):
        m = model.to(torch.float64)
        with torch.no_grad():
            return m(fire=b["fire"].double(), valid_t=b["valid_t"], wind=b["wind"].double(),
                     static=b["static"].double())

    out1 = f64({"fire": fire, "valid_t": valid, "wind": wind, "static": static})
    fire2, wind2 = fire.clone(), wind.clone()
    fire2[:, :2] = 1.0 - fire2[:, :2]
    wind2[:, :2] = 5.0
    out2 = f64({"fire": fire2, "valid_t": valid, "wind": wind2, "static": static})
    torch.testing.assert_close(out1, out2, atol=1e-5, rtol=0)
    # while the real steps do matter, and so would the padded ones if they were marked valid
    fire3 = fire.clone()
    fire3[:, -1] = 1.0
    out3 = f64({"fire": fire3, "valid_t": valid, "wind": wind, "static": static})
    assert (out3 - out1).abs().max().item() > 1e-2
    out4 = f64({"fire": fire2, "valid_t": torch.ones_like(valid), "wind": wind2, "static": static})
    assert (out4 - out1).abs().max().item() > 1e-2


def test_param_groups_split_temporal_and_spatial(model):
    groups = model.param_groups()
    assert set(groups) == {"temporal", "spatial"}
    temporal = {id(p) for p in groups["temporal"]}
    spatial = {id(p) for p in groups["spatial"]}
    assert len(temporal) == len(groups["temporal"]) and len(spatial) == len(groups["spatial"])
    assert not temporal & spatial
    named = dict(model.named_parameters())
    assert temporal | spatial == {id(p) for p in named.values()}
    expected_temporal = {id(p) for n, p in named.items() if n.startswith(("embed.", "temporal."))}
    assert temporal == expected_temporal
    spatial_prefixes = {n.split(".")[0] for n, p in named.items() if id(p) in spatial}
    assert spatial_prefixes == {"pyramid", "decode_head", "refine"}
    assert sum(p.numel() for p in groups["temporal"]) + sum(p.numel() for p in groups["spatial"]) == sum(
        p.numel() for p in model.parameters())


def test_every_parameter_is_used():
    m = tiny().train()
    fire, valid, wind, static = inputs(2, 3, 20, 27, seed=4)
    valid[0, 0] = False
    m(fire=fire, valid_t=valid, wind=wind, static=static).sum().backward()
    unused = [n for n, p in m.named_parameters() if p.grad is None]
    assert unused == []


def test_refinement_has_log2_patch_stages():
    m = tiny(patch_size=4)
    assert sum(isinstance(x, torch.nn.ConvTranspose2d) for x in m.refine.up) == 2
    m = tiny(patch_size=8)
    assert sum(isinstance(x, torch.nn.ConvTranspose2d) for x in m.refine.up) == 3


@pytest.mark.parametrize("patch", [0, 1, 3, 12, 24])
def test_bad_patch_size(patch):
    with pytest.raises(ValueError, match=rf"model\.patch_size must be a power of two >= 2, got {patch}"):
        tiny(patch_size=patch)


def test_d_model_not_divisible_by_nhead():
    with pytest.raises(ValueError, match=r"model\.d_model \(10\) must be divisible by model\.nhead \(4\)"):
        tiny(d_model=10, nhead=4)


# ---------------------------------------------------------------- copy-last


def test_copy_last_predicts_last_frame():
    fire, valid, wind, static = inputs(3, 4, 5, 7, seed=5)
    logits = CopyLast()(fire=fire, valid_t=valid, wind=wind, static=static)
    assert logits.shape == (3, 1, 5, 7)
    assert torch.equal(torch.sigmoid(logits) > 0.5, fire[:, -1:].bool())
    assert set(logits.unique().tolist()) == {-10.0, 10.0}
    assert set(CopyLast(confidence=3.0)(fire=fire, valid_t=valid, wind=wind, static=static).unique().tolist()) == {-3.0, 3.0}


def test_copy_last_uses_last_step_not_first():
    fire = torch.zeros(1, 2, 2, 2)
    fire[0, 0] = 1.0  # an earlier step that is all fire
    fire[0, 1, 0, 0] = 1.0
    logits = CopyLast()(fire=fire, valid_t=torch.ones(1, 2, dtype=torch.bool), wind=torch.zeros(1, 2, 2),
                        static=torch.zeros(1, 1, 2, 2))
    assert (torch.sigmoid(logits) > 0.5).tolist() == [[[[True, False], [False, False]]]]


def test_copy_last_has_no_parameters():
    m = CopyLast()
    assert list(m.parameters()) == []
    assert m.param_groups() == {"temporal": [], "spatial": []}
