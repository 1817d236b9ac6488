"""Reader for the on-disk fire-sequence layout ("Deep Crown" organized_spreads).

One reader serves both real data and the built-in synthetic fires. The rules are those of
docs/data-layout.md: ids parsed from folder names, weather looked up by the part of a
WeatherHistory line after ``Weathers/``, static bands cropped from one GeoTIFF and normalised
over the whole raster.
"""
from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

NODATA = -9999.0
_SEQ_RE = re.compile(r"^sequence_(\d+)$")

EXPECTED_LAYOUT = (
    "expected ROOT/landscape/{Input_Geotiff.tif, indices.json, WeatherHistory.csv, Weathers/}, "
    "ROOT/fire_frames/sequence_NNN/*.png and ROOT/isochrones/sequence_NNN/*.png"
)


class DataError(ValueError):
    """User data that does not follow the layout; the message names the file or sequence."""


@dataclass(frozen=True)
class SequenceInfo:
    """Where one sequence's files are."""

    seq_id: int
    fire_frames: tuple[Path, ...]
    iso_frames: tuple[Path, ...]
    window: tuple[int, int, int, int]  # y0, y1, x0, x1
    weather_file: Path


def parse_sequence_id(name: str) -> int | None:
    """``sequence_007`` / ``sequence_0007`` -> 7; anything else -> None."""
    m = _SEQ_RE.match(name)
    return int(m.group(1)) if m else None


def check_root(root: str | Path) -> Path:
    """Fail early, in one line, when root does not look like the layout."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"data.root {root} does not exist; {EXPECTED_LAYOUT}")
    need = [
        root / "landscape" / "Input_Geotiff.tif",
        root / "landscape" / "indices.json",
        root / "landscape" / "WeatherHistory.csv",
        root / "landscape" / "Weathers",
        root / "fire_frames",
        root / "isochrones",
    ]
    missing = [str(p.relative_to(root)) for p in need if not p.exists()]
    if missing:
        raise DataError(f"data.root {root} is missing {', '.join(missing)}; {EXPECTED_LAYOUT}")
    return root


def _frames(folder: Path) -> tuple[Path, ...]:
    return tuple(sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png"))


def _sequence_info(root: Path, sid: int, folder: Path, indices: dict, history: list[str]) -> SequenceInfo:
    """Check one sequence's files; DataError names the sequence and the file."""
    land = root / "landscape"
    iso_dir = root / "isochrones" / folder.name
    if not iso_dir.is_dir():
        raise DataError(f"sequence {sid}: {iso_dir} is missing")
    fire, iso = _frames(folder), _frames(iso_dir)
    if len(fire) != len(iso):
        raise DataError(f"sequence {sid}: {len(fire)} frames in {folder} but {len(iso)} in {iso_dir}")
    if len(fire) < 2:
        raise DataError(f"sequence {sid}: {len(fire)} frame(s) in {folder}, need at least 2")
    if str(sid) not in indices:
        raise DataError(f"sequence {sid}: no key \"{sid}\" in {land / 'indices.json'}")
    window = tuple(int(v) for v in indices[str(sid)])
    if len(window) != 4:
        raise DataError(f"sequence {sid}: crop window {list(window)} in {land / 'indices.json'} "
                        "must be [y0, y1, x0, x1]")
    if sid > len(history) or "Weathers/" not in history[sid - 1]:
        raise DataError(f"sequence {sid}: line {sid} of {land / 'WeatherHistory.csv'} must name a file "
                        f"under Weathers/ (file has {len(history)} lines)")
    weather = land / "Weathers" / history[sid - 1].split("Weathers/", 1)[1].strip().strip('"')
    if not weather.is_file():
        raise DataError(f"sequence {sid}: weather file {weather} does not exist")
    return SequenceInfo(sid, fire, iso, window, weather)  # type: ignore[arg-type]


def list_sequences(root: str | Path, on_bad_sequence: str = "error") -> list[SequenceInfo]:
    """All sequences of root, sorted by id, with their files checked to exist.

    ``on_bad_sequence="skip"`` warns once per broken sequence and leaves it out.
    """
    root = check_root(root)
    land = root / "landscape"
    try:
        indices = json.loads((land / "indices.json").read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{land / 'indices.json'} is not valid JSON: {e}") from None
    history = [ln.strip() for ln in (land / "WeatherHistory.csv").read_text().splitlines()]
    seqs = []
    folders = [(parse_sequence_id(f.name), f) for f in (root / "fire_frames").iterdir() if f.is_dir()]
    for sid, folder in sorted((i, f) for i, f in folders if i is not None):
        try:
            seqs.append(_sequence_info(root, sid, folder, indices, history))
        except DataError as e:
            if on_bad_sequence != "skip":
                raise
            print(f"WARNING: skipping {e}")  # the message starts with "sequence N:"
    if not seqs:
        raise DataError(f"no usable sequence_NNN folders in {root / 'fire_frames'}; {EXPECTED_LAYOUT}")
    return seqs


def read_weather(path: Path) -> np.ndarray:
    """WS and WD columns of a weather CSV as float32 [rows, 2]."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise DataError(f"weather file {path} is empty")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in ("WS", "WD") if c not in header]
    if missing:
        raise DataError(f"weather file {path} has no {' or '.join(missing)} column (has {header})")
    iws, iwd = header.index("WS"), header.index("WD")
    try:
        return np.array([[float(r[iws]), float(r[iwd])] for r in rows[1:] if r], dtype=np.float32)
    except (ValueError, IndexError) as e:
        raise DataError(f"weather file {path}: non-numeric WS/WD value ({e})") from None


def read_landscape(root: Path) -> np.ndarray:
    """The whole static raster [C, Y, X], no-data replaced by -1, normalised per band.

    Bands whose values are exactly {0,1} or {-1,1} are kept as they are; the others are
    min-max normalised over the whole raster (not per crop, so crops stay comparable).
    """
    path = Path(root) / "landscape" / "Input_Geotiff.tif"
    try:
        raster = tifffile.imread(path).astype(np.float32)
    except Exception as e:  # tifffile raises many kinds for broken files
        raise DataError(f"cannot read GeoTIFF {path}: {e}") from None
    if raster.ndim == 2:
        raster = raster[None]
    elif raster.ndim == 3 and raster.shape[-1] < raster.shape[0] and raster.shape[-1] <= 64:
        raster = np.moveaxis(raster, -1, 0)  # stored band-last (pixel-interleaved)
    raster[raster == NODATA] = -1.0
    for b in range(raster.shape[0]):
        band = raster[b]
        values = np.unique(band) if band.size <= 4_000_000 else np.unique(band[::7, ::7])
        if set(values.tolist()) in ({0.0, 1.0}, {-1.0, 1.0}):
            continue
        lo, hi = float(band.min()), float(band.max())
        raster[b] = (band - lo) / (hi - lo) if hi > lo else 0.0
    return raster


def crop_static(raster: np.ndarray, window: tuple[int, int, int, int], seq_id: int,
                shape: tuple[int, int]) -> np.ndarray:
    """Crop one sequence's window; its size must match the frames'."""
    y0, y1, x0, x1 = window
    _, ny, nx = raster.shape
    if not (0 <= y0 < y1 <= ny and 0 <= x0 < x1 <= nx):
        raise DataError(
            f"sequence {seq_id}: crop window {list(window)} lies outside the raster ({ny}x{nx})"
        )
    if (y1 - y0, x1 - x0) != tuple(shape):
        raise DataError(
            f"sequence {seq_id}: crop window {list(window)} is {y1 - y0}x{x1 - x0} "
            f"but its frames are {shape[0]}x{shape[1]}"
        )
    return raster[:, y0:y1, x0:x1]
