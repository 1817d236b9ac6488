"""Reader of the two published WildfireSpreadTS layouts.

TIF: ``ROOT/{year}/{fire}/{YYYY-MM-DD}.tif``, one 23-band float32 GeoTIFF per day, days in file-name
order, the active-fire band holding the VIIRS detection time as hhmm (NaN: no detection).
HDF5 (the published converter's output): ``ROOT/{year}/{fire}.hdf5`` with a dataset ``data`` of
shape (T, 23, H, W) whose active-fire band is already NaN -> 0 and hhmm -> whole hours, and the
attributes ``year``, ``fire_name``, ``img_dates``, ``lnglat``.

Both read to the same thing: one fire as float32 days [23, H, W] with the active-fire band in whole
hours (0: no detection), so everything after this module is layout-blind. Every problem is a
one-line :class:`~emberformer.data.reader.DataError` naming the file or folder.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Iterator

import numpy as np
import tifffile

from emberformer.data.reader import DataError, is_hidden

BANDS = 23
BAND_NAMES = (
    "VIIRS M11", "VIIRS I2", "VIIRS I1", "NDVI", "EVI2", "total precipitation", "wind speed",
    "wind direction", "min temperature", "max temperature", "energy release component",
    "specific humidity", "slope", "aspect", "elevation", "PDSI", "land cover class",
    "forecast total precipitation", "forecast wind speed", "forecast wind direction",
    "forecast temperature", "forecast specific humidity", "active fire",
)
DEGREE_BANDS = (7, 13, 19)   # wind direction, aspect, forecast wind direction
LANDCOVER_BAND = 16          # MODIS land cover class 1-17
AF_BAND = 22                 # active fire
FORMATS = ("tif", "hdf5", "auto")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
EXPECTED = "expected ROOT/{year}/{fire}/{YYYY-MM-DD}.tif (TIF) or ROOT/{year}/{fire}.hdf5 (HDF5)"


@dataclass(frozen=True)
class FireSource:
    """Where one fire's files are: the day files (TIF) or its one file (HDF5)."""

    year: int
    name: str
    format: str                 # "tif" | "hdf5"
    files: tuple[Path, ...]     # TIF: one per day, sorted by name; HDF5: the one file

    @property
    def label(self) -> str:
        """``year/name``, how warnings and errors name the fire."""
        return f"{self.year}/{self.name}"

    @property
    def where(self) -> Path:
        """The fire's folder (TIF) or file (HDF5)."""
        return self.files[0].parent if self.format == "tif" else self.files[0]


def one_line(e: BaseException) -> str:
    """An exception's message on one line (libraries' messages can span several)."""
    return " ".join(str(e).split()) or type(e).__name__


def _tif_days(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.suffix.lower() == ".tif" and not is_hidden(p) and p.is_file())


def _year_dirs(root: Path) -> list[Path]:
    return [p for p in root.iterdir() if p.is_dir() and p.name.isdigit() and not is_hidden(p)]


def detect_format(root: Path, fmt: str) -> str:
    """``tif`` or ``hdf5``: ``fmt`` itself, or (``auto``) what the year folders of root hold."""
    if fmt not in FORMATS:
        raise ValueError(f"data.format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt != "auto":
        return fmt
    has_h5 = has_tif = False
    for y in _year_dirs(root):
        has_h5 |= any(not is_hidden(p) for p in y.glob("*.hdf5"))
        has_tif |= any(d.is_dir() and not is_hidden(d) and _tif_days(d) for d in y.iterdir())
    if has_h5 and has_tif:
        raise DataError(f"data.root {root} holds both .hdf5 files and .tif folders; "
                        "set data.format=tif or data.format=hdf5")
    if not (has_h5 or has_tif):
        raise DataError(f"data.root {root} holds no WildfireSpreadTS fires; {EXPECTED}")
    return "hdf5" if has_h5 else "tif"


def is_date(text: str) -> bool:
    """Whether text is a real calendar day written YYYY-MM-DD."""
    if not _DATE.fullmatch(text):
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def parse_date(path: Path) -> date:
    """The day a TIF file's name gives (``2020-08-17.tif``; text after an ``_`` is ignored)."""
    text = path.stem.split("_")[0]
    if not is_date(text):
        raise DataError(f"{path}: file name {path.name!r} is not a date YYYY-MM-DD.tif")
    return date.fromisoformat(text)


def _tif_fire(year: int, folder: Path) -> FireSource:
    days = _tif_days(folder)
    for p in days:
        parse_date(p)
    return FireSource(year, folder.name, "tif", tuple(days))


def list_fires(root: str | Path, years: tuple[int, ...], fmt: str,
               on_bad_sequence: str = "error") -> list[FireSource]:
    """Every fire of ``years`` under root in layout ``fmt`` (tif|hdf5), sorted by year and name.

    A missing year folder is an error in every mode (the fold cannot be formed); a fire whose day
    files do not parse as dates is an error, or with ``on_bad_sequence="skip"`` a warning.
    """
    root = Path(root).expanduser()
    fires: list[FireSource] = []
    for year in years:
        ydir = root / str(year)
        if not ydir.is_dir():
            raise DataError(f"data.root {root} has no folder {year} (the WildfireSpreadTS folds use "
                            f"the years {', '.join(str(y) for y in years)}): {ydir} is missing")
        if fmt == "hdf5":
            fires += [FireSource(year, p.stem, "hdf5", (p,))
                      for p in sorted(ydir.glob("*.hdf5")) if not is_hidden(p) and p.is_file()]
            continue
        for folder in sorted(d for d in ydir.iterdir() if d.is_dir() and not is_hidden(d)):
            try:
                fires.append(_tif_fire(year, folder))
            except DataError as e:
                if on_bad_sequence != "skip":
                    raise
                print(f"WARNING: skipping fire {year}/{folder.name}: {e}", flush=True)
    return fires


def _bands_first(arr: np.ndarray, axes: str, path: Path) -> np.ndarray:
    """A GeoTIFF's pixels as [bands, H, W], whichever way the bands are stored."""
    if arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim == 3:
        band_axis = next((i for i, a in enumerate(axes) if a not in "YX"), 0)
        arr = np.moveaxis(arr, band_axis, 0)
    else:
        raise DataError(f"{path}: GeoTIFF of shape {list(arr.shape)}, expected {BANDS} bands of one image")
    if arr.shape[0] != BANDS:
        raise DataError(f"{path}: {arr.shape[0]} band(s), a WildfireSpreadTS day has {BANDS}")
    return arr


def read_tif_day(path: Path) -> np.ndarray:
    """One day's GeoTIFF as float32 [23, H, W], active fire still hhmm with NaN."""
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            arr, axes = series.asarray(), series.axes
    except DataError:
        raise
    except Exception as e:  # tifffile raises many kinds for broken files
        raise DataError(f"cannot read GeoTIFF {path}: {one_line(e)}") from None
    return _bands_first(arr, axes, path).astype(np.float32, copy=False)


def active_fire_hours(af: np.ndarray) -> np.ndarray:
    """The published conversion of the active-fire band: NaN -> 0, hhmm -> whole hours."""
    return np.floor_divide(np.nan_to_num(af, nan=0.0), 100).astype(np.float32)


def _tif_arrays(src: FireSource) -> Iterator[np.ndarray]:
    first: tuple[int, int] | None = None
    for p in src.files:
        day = read_tif_day(p)
        size = day.shape[1:]
        if first is None:
            first = size
        elif size != first:
            raise DataError(f"fire {src.where}: days of different sizes ({src.files[0].name} is "
                            f"{first[0]}x{first[1]}, {p.name} is {size[0]}x{size[1]})")
        day[AF_BAND] = active_fire_hours(day[AF_BAND])
        yield day


def _text(v: object) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


@contextmanager
def _hdf5_data(path: Path) -> Iterator:
    """The file's dataset ``data``, checked to be (T, 23, H, W); DataError names the file."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "data" not in f:
                raise DataError(f"{path}: no dataset 'data' (the published converter writes "
                                f"'data' of shape (T, {BANDS}, H, W))")
            dset = f["data"]
            if dset.ndim != 4 or dset.shape[1] != BANDS:
                raise DataError(f"{path}: dataset 'data' has shape {list(dset.shape)}, expected "
                                f"(T, {BANDS}, H, W): {BANDS} bands a day")
            yield dset
    except DataError:
        raise
    except Exception as e:  # h5py raises OSError, KeyError, ... for broken files
        raise DataError(f"cannot read HDF5 file {path}: {one_line(e)}") from None


def _hdf5_arrays(src: FireSource) -> Iterator[np.ndarray]:
    with _hdf5_data(src.files[0]) as dset:
        for t in range(dset.shape[0]):
            yield np.asarray(dset[t], dtype=np.float32)


def read_days(src: FireSource) -> Iterator[np.ndarray]:
    """The fire's days in order, one at a time: float32 [23, H, W], active fire in whole hours
    (0: no detection). DataError names the file (or the fire, for days of different sizes)."""
    return _tif_arrays(src) if src.format == "tif" else _hdf5_arrays(src)


def fire_header(src: FireSource) -> tuple[int, list[str]]:
    """How many days the fire has, and their dates YYYY-MM-DD: from the TIF names, or the HDF5
    attribute ``img_dates`` (no dates when the file has none)."""
    if src.format == "tif":
        return len(src.files), [parse_date(p).isoformat() for p in src.files]
    path = src.files[0]
    with _hdf5_data(path) as dset:
        days, raw = dset.shape[0], dset.attrs.get("img_dates")
    if raw is None:
        return days, []
    dates = [_text(d).replace(".tif", "") for d in np.atleast_1d(raw)]
    if len(dates) != days:
        raise DataError(f"{path}: attribute img_dates lists {len(dates)} dates for {days} days")
    for d in dates:
        if not is_date(d):
            raise DataError(f"{path}: img_dates entry {d!r} is not a date YYYY-MM-DD")
    return days, dates
