"""Reader for the on-disk fire-sequence layout ("Deep Crown" organized_spreads).

One reader serves both real data and the built-in synthetic fires. The rules are those of
docs/data-layout.md: ids parsed from folder names, weather looked up by the part of a
WeatherHistory line after ``Weathers/``, static bands cropped from one GeoTIFF and normalised
over the whole raster.
"""
from __future__ import annotations

import codecs
import csv
import io
import json
import math
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


def is_hidden(path: Path) -> bool:
    """Dot files, macOS AppleDouble ``._*`` files included: never data."""
    return path.name.startswith(".")


def _frames(folder: Path) -> tuple[Path, ...]:
    return tuple(sorted(p for p in folder.iterdir()
                        if p.suffix.lower() == ".png" and not is_hidden(p) and p.is_file()))


def weather_files(root: Path) -> list[Path]:
    """The weather CSVs of root, hidden files (``._Weather1.csv``) left out."""
    return sorted(p for p in (Path(root) / "landscape" / "Weathers").glob("*.csv") if not is_hidden(p))


def read_text(path: Path) -> str:
    """A text file as str: UTF-8 (a BOM is dropped), UTF-16 with a BOM, otherwise Latin-1."""
    data = Path(path).read_bytes()
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as e:
            raise DataError(f"{path} starts with a UTF-16 byte-order mark but is not UTF-16 text ({e})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # never fails; the usual other encoding of CSV exports


def _window(sid: int, value: object, path: Path) -> tuple[int, int, int, int]:
    """indices.json's value for one sequence -> (y0, y1, x0, x1); DataError names the sequence."""
    def as_int(v: object) -> int | None:
        if isinstance(v, bool):
            return None
        if isinstance(v, int):
            return v
        if isinstance(v, float) and math.isfinite(v) and v == int(v):
            return int(v)
        return None

    ints = [as_int(v) for v in value] if isinstance(value, list) else []
    if len(ints) != 4 or any(v is None for v in ints):
        raise DataError(f"sequence {sid}: crop window {json.dumps(value)} in {path} must be a list of "
                        "4 integers [y0, y1, x0, x1]")
    return tuple(ints)  # type: ignore[return-value]


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
    window = _window(sid, indices[str(sid)], land / "indices.json")
    if sid > len(history) or "Weathers/" not in history[sid - 1]:
        raise DataError(f"sequence {sid}: line {sid} of {land / 'WeatherHistory.csv'} must name a file "
                        f"under Weathers/ (file has {len(history)} lines)")
    weather = land / "Weathers" / history[sid - 1].split("Weathers/", 1)[1].strip().strip('"')
    if not weather.is_file():
        raise DataError(f"sequence {sid}: weather file {weather} does not exist")
    return SequenceInfo(sid, fire, iso, window, weather)


def list_sequences(root: str | Path, on_bad_sequence: str = "error") -> list[SequenceInfo]:
    """All sequences of root, sorted by id, with their files checked to exist.

    ``on_bad_sequence="skip"`` warns once per broken sequence and leaves it out.
    """
    root = check_root(root)
    land = root / "landscape"
    try:
        indices = json.loads(read_text(land / "indices.json"))
    except json.JSONDecodeError as e:
        raise DataError(f"{land / 'indices.json'} is not valid JSON: {e}") from None
    if not isinstance(indices, dict):
        raise DataError(f"{land / 'indices.json'} must be a JSON object mapping sequence ids to "
                        f"[y0, y1, x0, x1], got a {type(indices).__name__}")
    history = [ln.strip() for ln in read_text(land / "WeatherHistory.csv").splitlines()]
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


# WS (m/s or km/h) and WD (degrees) beyond these are a no-data code (-9999), a typo or an overflow;
# one of them would flatten every sequence's wind through the global min-max normalisation.
WEATHER_LIMITS = {"WS": (0.0, 1000.0), "WD": (-1000.0, 1000.0)}
_DELIMITERS = (",", ";", "\t", "|")


def _weather_dialect(text: str) -> str:
    """The delimiter under which the header has WS and WD (',' ';' tab '|'), else the sniffer's."""
    header = text.split("\n", 1)[0]
    for d in _DELIMITERS:
        cells = [c.strip().strip('"').strip() for c in header.split(d)]
        if "WS" in cells and "WD" in cells:
            return d
    try:
        return csv.Sniffer().sniff(text[:4096], delimiters="".join(_DELIMITERS)).delimiter
    except csv.Error:
        return ","


def read_weather(path: Path) -> np.ndarray:
    """WS and WD columns of a weather CSV as float32 [rows, 2].

    Read: UTF-8 with or without a BOM, UTF-16 with a BOM, Latin-1; ',' ';' tab or '|' between
    columns (';', tab and '|' files may write decimal commas). Every WS and WD value must be a
    finite number within WEATHER_LIMITS; otherwise DataError names the file, line and column.
    """
    path = Path(path)
    text = read_text(path)
    delimiter = _weather_dialect(text)
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        rows = [(reader.line_num, r) for r in reader]
    except csv.Error as e:
        raise DataError(f"weather file {path} is not a readable CSV text file ({e})") from None
    if not rows:
        raise DataError(f"weather file {path} is empty")
    header = [h.strip() for h in rows[0][1]]
    missing = [c for c in ("WS", "WD") if c not in header]
    if missing:
        shown = repr(header) if len(repr(header)) <= 200 else repr(header)[:200] + "..."
        raise DataError(f"weather file {path} has no {' or '.join(missing)} column (has {shown})")
    cols = {"WS": header.index("WS"), "WD": header.index("WD")}
    out = []
    for line, r in rows[1:]:
        if not any(c.strip() for c in r):
            continue  # blank line
        pair = []
        for name, i in cols.items():
            cell = r[i].strip() if i < len(r) else ""
            if delimiter != "," and "," in cell and "." not in cell:
                cell = cell.replace(",", ".")  # decimal comma
            try:
                v = float(cell)
            except ValueError:
                raise DataError(f"weather file {path}: line {line}, column {name}: non-numeric value "
                                f"{cell!r}") from None
            lo, hi = WEATHER_LIMITS[name]
            if not (lo <= v <= hi):  # also False for nan
                raise DataError(f"weather file {path}: line {line}, column {name}: value {cell} is not a "
                                f"finite number in [{lo:g}, {hi:g}]")
            pair.append(v)
        out.append(pair)
    return np.array(out, dtype=np.float32).reshape(-1, 2)


def _gdal_nodata(tif: tifffile.TiffFile) -> float | None:
    """The GDAL_NODATA tag (42113) as a number, when present and numeric."""
    tag = tif.pages[0].tags.get(42113)
    if tag is None:
        return None
    value = tag.value.decode("latin-1") if isinstance(tag.value, bytes) else str(tag.value)
    try:
        v = float(value.strip("\x00 "))
    except ValueError:
        return None
    return v if math.isfinite(v) and abs(v) <= float(np.finfo(np.float32).max) else None


def read_landscape(root: Path) -> np.ndarray:
    """The whole static raster [C, Y, X], no-data replaced by -1, normalised per band.

    No-data cells are -9999, the value of the GDAL_NODATA tag when the file has one, and NaN or
    infinite cells (a notice says how many of those); all become -1 before normalisation, so a
    band keeps the range of its real values. Bands whose values are exactly {0,1} or {-1,1} are
    kept as they are; the others are min-max normalised over the whole raster (not per crop, so
    crops stay comparable).
    """
    path = Path(root) / "landscape" / "Input_Geotiff.tif"
    try:
        with tifffile.TiffFile(path) as tif:
            nodata = _gdal_nodata(tif)
            raster = tif.asarray().astype(np.float32)
    except Exception as e:  # tifffile raises many kinds for broken files
        raise DataError(f"cannot read GeoTIFF {path}: {e}") from None
    if raster.ndim == 2:
        raster = raster[None]
    elif raster.ndim == 3 and raster.shape[-1] < raster.shape[0] and raster.shape[-1] <= 64:
        raster = np.moveaxis(raster, -1, 0)  # stored band-last (pixel-interleaved)
    elif raster.ndim != 3:
        raise DataError(f"GeoTIFF {path} has shape {list(raster.shape)}; expected one 2-D band [Y, X] "
                        "or bands [C, Y, X] / [Y, X, C]")
    bad = ~np.isfinite(raster)
    n_bad = int(bad.sum())
    if n_bad:
        print(f"Note: {path}: {n_bad} NaN/infinite cell(s) read as no-data (like {NODATA:g})", flush=True)
    nodata_cells = bad | (raster == NODATA)
    if nodata is not None:
        nodata_cells |= raster == np.float32(nodata)
    raster[nodata_cells] = -1.0
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
