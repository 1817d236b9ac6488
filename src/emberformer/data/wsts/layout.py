"""Reader of the two published WildfireSpreadTS layouts.

TIF: ``ROOT/{year}/{fire}/{YYYY-MM-DD}.tif``, one 23-band float32 GeoTIFF per day, days in file-name
order, the active-fire band holding the VIIRS detection time as hhmm (NaN: no detection).
HDF5 (the published converter's output): ``ROOT/{year}/{fire}.hdf5`` with a dataset ``data`` of
shape (T, 23, H, W) whose active-fire band is already NaN -> 0 and hhmm -> whole hours, and the
attributes ``year``, ``fire_name``, ``img_dates``, ``lnglat``.

Both read to the same thing: one fire as float32 [T, 23, H, W] with the active-fire band in whole
hours (0: no detection), so everything after this module is layout-blind. Every problem is a
one-line :class:`~emberformer.data.reader.DataError` naming the file or folder.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

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
                  if p.suffix.lower() in (".tif", ".tiff") and not is_hidden(p) and p.is_file())


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
        has_tif |= any(d.is_dir() and not is_hidden(d) and any(d.glob("*.tif")) for d in y.iterdir())
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


def _read_tif_fire(src: FireSource) -> tuple[np.ndarray, list[str]]:
    days = [read_tif_day(p) for p in src.files]
    sizes = [d.shape[1:] for d in days]
    if len(set(sizes)) > 1:
        odd = next(i for i, s in enumerate(sizes) if s != sizes[0])
        raise DataError(f"fire {src.where}: days of different sizes ({src.files[0].name} is "
                        f"{sizes[0][0]}x{sizes[0][1]}, {src.files[odd].name} is {sizes[odd][0]}x{sizes[odd][1]})")
    arr = np.stack(days)
    arr[:, AF_BAND] = active_fire_hours(arr[:, AF_BAND])
    return arr, [parse_date(p).isoformat() for p in src.files]


def _text(v: object) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _read_hdf5_fire(src: FireSource) -> tuple[np.ndarray, list[str]]:
    import h5py

    path = src.files[0]
    try:
        with h5py.File(path, "r") as f:
            if "data" not in f:
                raise DataError(f"{path}: no dataset 'data' (the published converter writes "
                                f"'data' of shape (T, {BANDS}, H, W))")
            dset = f["data"]
            if dset.ndim != 4 or dset.shape[1] != BANDS:
                raise DataError(f"{path}: dataset 'data' has shape {list(dset.shape)}, expected "
                                f"(T, {BANDS}, H, W): {BANDS} bands a day")
            arr = dset[()].astype(np.float32, copy=False)
            raw_dates = dset.attrs.get("img_dates")
    except DataError:
        raise
    except Exception as e:  # h5py raises OSError, KeyError, ... for broken files
        raise DataError(f"cannot read HDF5 file {path}: {one_line(e)}") from None
    if raw_dates is None:
        return arr, []
    dates = [_text(d).replace(".tif", "") for d in np.atleast_1d(raw_dates)]
    if len(dates) != len(arr):
        raise DataError(f"{path}: attribute img_dates lists {len(dates)} dates for {len(arr)} days")
    for d in dates:
        if not is_date(d):
            raise DataError(f"{path}: img_dates entry {d!r} is not a date YYYY-MM-DD")
    return arr, dates


def read_fire(src: FireSource) -> tuple[np.ndarray, list[str]]:
    """One fire as float32 [T, 23, H, W] (active fire in whole hours, 0: none) and its dates."""
    if src.format == "tif":
        if not src.files:
            return np.zeros((0, BANDS, 0, 0), np.float32), []
        return _read_tif_fire(src)
    return _read_hdf5_fire(src)
