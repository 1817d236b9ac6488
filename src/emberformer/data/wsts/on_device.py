"""A lean WildfireSpreadTS batch (``lean.lean_batch``) -> the 40-channel batch, on the device.

The loader worker sends each crop's real pixels of the 23 stored bands (``lean.py`` says why);
here they are padded, flipped and rotated, then standardised, one-hot coded and given the binary
fire channel, as ``preprocess.preprocess`` does it. Every step is an exact float32 operation, so
the batch is the one ``samples.collate`` makes of ``WSTSSamples.__getitem__`` samples, value for
value (tests/test_wsts_lean.py), and on a GPU the work is a few elementwise kernels beside the model.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from emberformer.data.batch_slots import hand_back
from emberformer.data.wsts.layout import AF_BAND, BANDS, LANDCOVER_BAND
from emberformer.data.wsts.preprocess import AF_BINARY_CHANNEL, CHANNELS, LANDCOVER_CLASSES


@dataclass(frozen=True, eq=False)
class LeanSpec:
    """What the device needs beside a lean batch: the fold's standardisation [23] and the
    selected feature channels (of the 40)."""

    mean: np.ndarray
    std: np.ndarray
    features: tuple[int, ...]


def standardise(raw: torch.Tensor, spec: LeanSpec) -> torch.Tensor:
    """[..., 23, H, W] stored bands (angle bands as their sine) -> [..., 40, H, W]: the rules of
    ``preprocess.preprocess`` in torch; a NaN pixel (padding, missing data) becomes 0."""
    mean = torch.as_tensor(spec.mean, device=raw.device)[:, None, None]
    std = torch.as_tensor(spec.std, device=raw.device)[:, None, None]
    lc, after = LANDCOVER_BAND, LANDCOVER_BAND + LANDCOVER_CLASSES      # 16, 33
    out = raw.new_empty((*raw.shape[:-3], CHANNELS, *raw.shape[-2:]))
    torch.div(raw[..., :lc, :, :] - mean[:lc], std[:lc], out=out[..., :lc, :, :])
    torch.div(raw[..., lc + 1:, :, :] - mean[lc + 1:], std[lc + 1:], out=out[..., after:AF_BINARY_CHANNEL, :, :])
    for part in (out[..., :lc, :, :], out[..., after:AF_BINARY_CHANNEL, :, :]):
        part.masked_fill_(~torch.isfinite(part), 0.0)
    out[..., AF_BINARY_CHANNEL, :, :] = raw[..., AF_BAND, :, :] > 0
    band = raw[..., lc, :, :]
    cls = torch.where(torch.isfinite(band), band, torch.zeros_like(band)).long()
    classes = torch.arange(1, LANDCOVER_CLASSES + 1, device=raw.device)[:, None, None]
    out[..., lc:after, :, :] = cls.unsqueeze(-3) == classes
    return out


def _moved(a: torch.Tensor, hflip: int, vflip: int, k: int) -> torch.Tensor:
    """``samples.flip_and_rotate``'s moves of the last two axes: left-right, top-bottom, k x 90 degrees."""
    if hflip:
        a = a.flip(-1)
    if vflip:
        a = a.flip(-2)
    return torch.rot90(a, k, dims=(-2, -1)) if k else a


def finish(batch: dict, device: torch.device) -> dict:
    """A lean batch -> ``samples.collate``'s keys (``x``, ``target``, ``fire_today``, ``valid``,
    ``fire_id``, ``year``, ``t``, ``valid_t``) on ``device``, beside the batch's other keys."""
    nb = device.type == "cuda"
    spec: LeanSpec = batch["spec"]
    raw = batch["raw"].to(device, non_blocking=nb)                     # the samples' blocks, flat
    n = int(batch["n"])
    hw, canvas, flips = batch["hw"].tolist(), batch["canvas"].tolist(), batch["flips"].tolist()
    B, H, W = len(hw), max(c[0] for c in canvas), max(c[1] for c in canvas)
    days = raw.new_full((B, n, BANDS, H, W), float("nan"))             # NaN: 0 once standardised
    target = torch.zeros(B, 1, H, W, dtype=torch.float32, device=device)
    valid = torch.zeros(B, 1, H, W, dtype=torch.bool, device=device)
    off = 0
    for b, ((h, w), (ch, cw), f) in enumerate(zip(hw, canvas, flips)):
        block = raw[off:off + (n * BANDS + 1) * h * w].view(n * BANDS + 1, h, w)
        off += block.numel()
        pad = raw.new_full((n, BANDS, ch, cw), float("nan"))
        pad[..., :h, :w] = block[:-1].view(n, BANDS, h, w)
        t, v = torch.zeros(1, ch, cw, device=device), torch.zeros(1, ch, cw, dtype=torch.bool, device=device)
        t[0, :h, :w], v[0, :h, :w] = block[-1], True
        pad, t, v = (_moved(a, *f) for a in (pad, t, v))
        days[b, ..., :pad.shape[-2], :pad.shape[-1]] = pad
        target[b, ..., :t.shape[-2], :t.shape[-1]] = t
        valid[b, ..., :v.shape[-2], :v.shape[-1]] = v
    hand_back(batch)                   # every block is copied out: the worker may refill its buffer
    x = standardise(days, spec)                                        # [B, n, 40, H, W]
    out = {k: v for k, v in batch.items() if k not in ("raw", "n", "hw", "canvas", "flips", "spec", "slot")}
    out.update({k: torch.from_numpy(batch[k]) for k in ("fire_id", "year", "t", "valid_t")})
    out["fire_today"] = x[:, -1:, AF_BINARY_CHANNEL].clone()
    out["x"] = x if list(spec.features) == list(range(CHANNELS)) else x[:, :, list(spec.features)]
    out["target"], out["valid"] = target, valid
    return out
