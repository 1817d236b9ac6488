"""Validation preview panels: last input | target | probability | error overlay.

Pixels whose target is unknown (a batch's ``unknown``: Next Day Wildfire Spread's ``FireMask ==
-1``) are grey in the target and error tiles: they are in no score, so they are neither hit nor miss.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# error overlay colours: true positive, false positive, false negative (background black)
TP_RGB, FP_RGB, FN_RGB = (255, 255, 255), (230, 60, 40), (40, 120, 240)
UNKNOWN_RGB = (128, 128, 128)


def _viridis(x: np.ndarray) -> np.ndarray:
    from matplotlib import colormaps

    return (colormaps["viridis"](np.clip(x, 0, 1))[..., :3] * 255).astype(np.uint8)


def panel(last: np.ndarray, target: np.ndarray, prob: np.ndarray, threshold: float,
          caption: str, unknown: np.ndarray | None = None) -> Image.Image:
    """One preview image from [H,W] arrays: four tiles side by side and a caption strip;
    ``unknown`` (bool [H,W]) pixels grey in the target and error tiles."""
    pred = prob > threshold
    tgt = target > 0.5
    err = np.zeros((*tgt.shape, 3), np.uint8)
    err[pred & tgt], err[pred & ~tgt], err[~pred & tgt] = TP_RGB, FP_RGB, FN_RGB
    target_tile = _viridis(tgt.astype(np.float32))
    if unknown is not None and unknown.any():
        err[unknown] = target_tile[unknown] = UNKNOWN_RGB
    tiles = [_viridis(last.astype(np.float32)), target_tile, _viridis(prob), err]
    h, w = tgt.shape
    scale = max(1, 160 // max(h, w))
    gap = 4
    img = Image.new("RGB", (4 * w * scale + 3 * gap, h * scale + 30), (255, 255, 255))
    for i, tile in enumerate(tiles):
        im = Image.fromarray(tile).resize((w * scale, h * scale), Image.NEAREST)
        img.paste(im, (i * (w * scale + gap), 30))
    draw = ImageDraw.Draw(img)
    draw.text((2, 2), caption, fill=(0, 0, 0))
    legend = "last input | target | probability | TP white, FP red, FN blue"
    if unknown is not None and unknown.any():
        legend += ", unknown grey"
    draw.text((2, 15), legend, fill=(80, 80, 80))
    return img


def sample_panel(sample: dict, prob, threshold: float) -> tuple[Image.Image, str]:
    """Panel and caption of one sample (fire [T,H,W], target / pixel_mask / unknown [1,H,W],
    prob [H,W]), cropped to the sample's own frame (scored and unknown pixels)."""
    unknown = sample.get("unknown")
    frame = sample["pixel_mask"][0] if unknown is None else sample["pixel_mask"][0] | unknown[0]
    h, w = (int(v) for v in frame.nonzero().max(0).values + 1)
    sid, t = int(sample["seq_id"]), int(sample["t"])
    caption = f"sequence {sid}, input frames 0..{t} -> target frame {t + 1}"
    prob = prob.float().cpu().numpy() if hasattr(prob, "cpu") else np.asarray(prob)
    img = panel(sample["fire"][-1, :h, :w].numpy(), sample["target"][0, :h, :w].numpy(),
                prob[:h, :w], threshold, caption, None if unknown is None else unknown[0, :h, :w].numpy())
    return img, caption


def write_previews(run_dir: Path, epoch: int, batch: dict, prob, threshold: float,
                   n: int) -> tuple[list[Path], list[str]]:
    """Save the first n samples of a validation batch as previews/epoch_XXX_N.png."""
    out = Path(run_dir) / "previews"
    out.mkdir(parents=True, exist_ok=True)
    paths, captions = [], []
    for i in range(min(n, prob.shape[0])):
        img, caption = sample_panel({k: v[i] for k, v in batch.items()}, prob[i, 0], threshold)
        path = out / f"epoch_{epoch:03d}_{i}.png"
        img.save(path)
        paths.append(path)
        captions.append(caption)
    return paths, captions
