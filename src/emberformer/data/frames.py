"""Fire masks <-> the viridis PNGs of the data layout.

How a frame is decoded (:func:`decode_mask`), by its PNG mode:

* colour frames, RGB, RGBA or palette (P, PA): a pixel is fire where the green channel equals 231
  (viridis yellow, RGB 253,231,37); every other colour is not fire. A colour frame in which every
  pixel is gray (R = G = B: a black-and-white mask saved as colour) is read as a mask, below;
* single-channel masks, 1, L, LA, I;16, I or F (8-bit, 16-bit, 32-bit gray): 0 is no fire and any
  non-zero value is fire. A single-channel frame with two or more different non-zero values is a
  grayscale picture rather than a mask and stops with FrameError naming the file and its mode;
* any other mode stops with FrameError naming the file and its mode.
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


COLOUR_MODES = ("RGB", "RGBA", "P", "PA")
MASK_MODES = ("1", "L", "LA", "I;16", "I;16B", "I;16L", "I", "F")


def _gray_mask(arr: np.ndarray, path: str | Path, mode: str) -> np.ndarray:
    """Single-channel values -> mask: 0 no fire, non-zero fire; several non-zero values: an error."""
    nonzero = np.unique(arr[arr != 0])
    if nonzero.size > 1:
        raise FrameError(f"PNG frame {path} is a single-channel image (mode {mode}) with "
                         f"{nonzero.size} different non-zero values; a single-channel frame must be a "
                         "mask (0 = no fire, one non-zero value = fire) or an RGB/RGBA viridis frame")
    return arr != 0


def decode_mask(path: str | Path) -> np.ndarray:
    """Read one PNG frame as a bool mask [H, W] (True = fire); the rule is in the module docstring."""
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("P", "PA"):
                im = im.convert("RGBA" if mode == "PA" else "RGB")
            arr = np.asarray(im)
    except (OSError, ValueError, SyntaxError) as e:  # PIL raises several kinds for broken files
        raise FrameError(f"unreadable PNG frame {path}: {e}") from None
    if mode in MASK_MODES:
        return _gray_mask(arr[..., 0] if arr.ndim == 3 else arr, path, mode)
    if mode not in COLOUR_MODES:
        raise FrameError(f"PNG frame {path} has mode {mode}, which is neither a colour frame (RGB, RGBA, "
                         f"P, PA) nor a single-channel mask ({', '.join(MASK_MODES)})")
    r, g, b = arr[..., 0], arr[..., 1], arr[..., 2]
    if np.array_equal(r, g) and np.array_equal(g, b):
        return _gray_mask(g, path, mode)  # a black-and-white mask saved as colour
    return g == FIRE_GREEN


def encode_mask(mask: np.ndarray, kind: str = "fire") -> np.ndarray:
    """Render a bool mask [H, W] as an RGB uint8 image in the layout's colours."""
    out = np.empty((*mask.shape, 3), dtype=np.uint8)
    out[...] = BACKGROUND_RGB[kind]
    out[mask.astype(bool)] = FIRE_RGB
    return out


def write_mask(path: str | Path, mask: np.ndarray, kind: str = "fire") -> None:
    """Write a bool mask as a viridis PNG."""
    Image.fromarray(encode_mask(mask, kind)).save(path, optimize=False, compress_level=1)
