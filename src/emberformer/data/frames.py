"""Fire masks <-> the viridis PNGs of the data layout.

A pixel is fire where the green channel equals 231 (viridis yellow, RGB 253,231,37); every other
colour is not fire. Frames may be RGB or RGBA.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

FIRE_RGB = (253, 231, 37)  # viridis(1.0)
FIRE_GREEN = 231
# Non-fire colours used when writing: viridis(0.0) for fire frames, viridis(0.33) for isochrones.
BACKGROUND_RGB = {"fire": (68, 1, 84), "iso": (49, 104, 142)}


class FrameError(ValueError):
    """A frame file that cannot be read as a fire mask."""


def decode_mask(path: str | Path) -> np.ndarray:
    """Read one PNG frame as a bool mask [H, W] (True = fire)."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode not in ("RGB", "RGBA"):
                im = im.convert("RGB")
            arr = np.asarray(im)
    except (OSError, ValueError, SyntaxError) as e:  # PIL raises several kinds for broken files
        raise FrameError(f"unreadable PNG frame {path}: {e}") from None
    return arr[..., 1] == FIRE_GREEN


def encode_mask(mask: np.ndarray, kind: str = "fire") -> np.ndarray:
    """Render a bool mask [H, W] as an RGB uint8 image in the layout's colours."""
    out = np.empty((*mask.shape, 3), dtype=np.uint8)
    out[...] = BACKGROUND_RGB[kind]
    out[mask.astype(bool)] = FIRE_RGB
    return out


def write_mask(path: str | Path, mask: np.ndarray, kind: str = "fire") -> None:
    """Write a bool mask as a viridis PNG."""
    Image.fromarray(encode_mask(mask, kind)).save(path, optimize=False, compress_level=1)
