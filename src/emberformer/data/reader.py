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
from typing import Callable

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


class DataInterrupted(KeyboardInterrupt):
    """Ctrl-C while a data set or its cache was being built; the message says what was kept.

    Still a KeyboardInterrupt, so callers that stop on Ctrl-C keep doing so; the apps print the
    message in one line and exit 130 (cli.errors.user_errors).
    """


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


def number_key(name: str) -> tuple[str | int, ...]:
    """``fire_7`` and ``fire_007`` -> ``("fire_", 7, "")``: runs of digits compare as numbers, so
    ``fire_6`` comes before ``fire_11`` whatever the zero padding (zero-padded names keep the order
    of their text)."""
    parts = re.split(r"(\d+)", name)
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts))


def listdir(folder: Path) -> list[Path]:
    """The entries of a folder of the layout; DataError names a folder that cannot be listed."""
    try:
        return list(folder.iterdir())
    except OSError as e:
        raise DataError(f"cannot list folder {folder}: {e.strerror or e}") from None


def by_number(paths: list[Path], key_of: Callable[[Path], tuple], what: str) -> list[Path]:
    """``paths`` in the order of their numbers (``key_of(path)``); two with one number are a
    DataError naming both (``fire_7.png`` and ``fire_007.png``: which is the frame?)."""
    keyed = sorted(((key_of(p), p.name, p) for p in paths), key=lambda t: (t[0], t[1]))
    for (k1, _, p1), (k2, _, p2) in zip(keyed, keyed[1:]):
        if k1 == k2:
            raise DataError(f"{p1} and {p2} are the same {what} (the same number, padded differently); "
                            "remove one of them")
    return [p for _, _, p in keyed]


def _frames(folder: Path) -> tuple[Path, ...]:
    pngs = [p for p in listdir(folder) if p.suffix.lower() == ".png" and not is_hidden(p) and p.is_file()]
    return tuple(by_number(pngs, lambda p: number_key(p.stem), "frame"))


def weather_files(root: Path) -> list[Path]:
    """The weather CSVs of root, hidden files (``._Weather1.csv``) left out."""
    return sorted(p for p in (Path(root) / "landscape" / "Weathers").glob("*.csv") if not is_hidden(p))


def read_text(path: Path) -> str:
    """A text file as str: UTF-8 (a BOM is dropped), UTF-16 with a BOM, otherwise Latin-1."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:  # unreadable (permissions), a folder, ...: one line naming the file
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
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
    try:
        fire, iso = _frames(folder), _frames(iso_dir)
    except DataError as e:
        raise DataError(f"sequence {sid}: {e}") from None
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


def weather_history(path: Path) -> list[str]:
    """Line k of WeatherHistory.csv, stripped, is entry k - 1 (the weather file of sequence k).

    Lines end at ``\\n``, ``\\r\\n`` or ``\\r`` only (not at the other characters ``str.splitlines``
    breaks at, a form feed say). A blank line followed by more names is a DataError naming it: a
    line deleted or inserted by mistake there would give every later sequence the weather of
    another sequence, and nothing else would tell. Blank lines at the end are ignored.
    """
    lines = [ln.strip() for ln in re.split(r"\r\n|\r|\n", read_text(path))]
    while lines and not lines[-1].strip('"').strip():
        lines.pop()
    for k, line in enumerate(lines, start=1):
        if not line.strip('"').strip():
            raise DataError(
                f"{path}: line {k} is blank but later lines name weather files; line k names the "
                f"weather file of sequence k, so a blank line would shift the weather of every later "
                f"sequence: delete it, or name the weather file of sequence {k} on it")
    return lines


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
    history = weather_history(land / "WeatherHistory.csv")
    seqs = []
    folders: dict[int, list[Path]] = {}
    for f in listdir(root / "fire_frames"):
        sid = parse_sequence_id(f.name)
        if sid is not None and f.is_dir():
            folders.setdefault(sid, []).append(f)
    for sid, found in sorted(folders.items()):
        try:
            if len(found) > 1:
                names = " and ".join(sorted(p.name for p in found))
                raise DataError(f"sequence {sid}: folders {names} in {root / 'fire_frames'} are both "
                                f"sequence {sid} (the same number, padded differently); remove one of them")
            seqs.append(_sequence_info(root, sid, found[0], indices, history))
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
    """The whole static raster [C, Y, X], no-data replaced, normalised per band.

    No-data codes (-9999, and the value of the GDAL_NODATA tag when the file has one) become -1
    before normalisation, as the original reader did. Bands whose values are exactly {0,1} or
    {-1,1} are kept as they are; the others are min-max normalised over the whole raster (not per
    crop, so crops stay comparable). NaN and infinite cells are missing values: left out of that
    range (so they never move where the real values land) and set to the band's lowest normalised
    value afterwards; a notice says how many there were in which band. Bands without them come out
    exactly as before.
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
    missing = ~np.isfinite(raster)
    nodata_cells = raster == NODATA
    if nodata is not None:
        nodata_cells |= raster == np.float32(nodata)
    raster[nodata_cells] = -1.0
    raster[missing] = np.nan
    counts = {}
    for b in range(raster.shape[0]):
        band = raster[b]
        n_missing = int(missing[b].sum())
        if n_missing:
            counts[b + 1] = n_missing
        if n_missing == band.size:
            raster[b] = 0.0  # no value at all: like a constant band
            continue
        sample = band if band.size <= 4_000_000 else band[::7, ::7]
        values = np.unique(sample[np.isfinite(sample)])
        if set(values.tolist()) not in ({0.0, 1.0}, {-1.0, 1.0}):
            lo, hi = float(np.nanmin(band)), float(np.nanmax(band))  # = min(), max() without NaN
            raster[b] = (band - lo) / (hi - lo) if hi > lo else 0.0
        if n_missing:
            raster[b][missing[b]] = np.nanmin(raster[b])
    if counts:
        bands = "; ".join(f"band {b} of {raster.shape[0]}: {n} cell(s)" for b, n in counts.items())
        print(f"Note: {path}: missing (NaN/infinite) values in {bands}; left out of each band's "
              "normalisation and set to its lowest value", flush=True)
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
