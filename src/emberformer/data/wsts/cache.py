"""WildfireSpreadTS decoded once: each fire as one memory-mapped float32 [T, 23, H, W] array.

Both layouts decode to the same cache (active fire already in whole hours), so a training sample
is a slice of a memory map and never a GeoTIFF or HDF5 read. The cache folder is keyed by the
source files' paths, sizes and modification times and holds every year of the folds, so one
cache serves all 12 folds; ``index.json`` records each year's per-band moments, from which the
standardisation of any fold's training years follows (:func:`fold_standardisation`).

The folder is built aside and published whole (files/atomic.py); ``index.json`` carries a
checksum of its own contents and the size of every array, so a damaged cache is found by one
``stat`` per file and rebuilt with a notice.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from emberformer.data import cache_folder
from emberformer.data.reader import DataError
from emberformer.data.wsts import layout
from emberformer.data.wsts.folds import YEARS, Fold
from emberformer.data.wsts.preprocess import Moments, standardisation
from emberformer.files import atomic

VERSION = 1
INDEX = "index.json"
TEMP_NAMES = r"wsts-[0-9a-f]+\.tmp(?P<pid>\d+)|\.wsts-[0-9a-f]+\.old(?P<pid2>\d+)-[0-9a-f]+"


@dataclass(frozen=True)
class CachedFire:
    """One decoded fire: ``days`` days of ``height`` x ``width`` in ``f<id>.npy``."""

    id: int
    year: int
    name: str
    days: int
    height: int
    width: int
    dates: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.year}/{self.name}"


@dataclass(frozen=True)
class WSTSIndex:
    """What a cache's ``index.json`` says, checked against its files (see :func:`read_index`)."""

    path: Path
    root: Path
    format: str
    fires: tuple[CachedFire, ...]
    skipped: tuple[str, ...]            # one message per fire left out by on_bad_sequence=skip
    moments: dict[int, Moments]         # per year

    def array(self, fire: CachedFire) -> np.ndarray:
        """The fire's days, memory-mapped read-only: float32 [T, 23, H, W]."""
        return np.load(self.path / f"f{fire.id}.npy", mmap_mode="r")


def _checksum(body: dict) -> str:
    return cache_folder.checksum(body)


def read_index(folder: str | Path) -> WSTSIndex:
    """The index of the cache in ``folder``; DataError (one line) names the folder and the damage."""
    folder = Path(folder)

    def parse(body: dict) -> WSTSIndex:
        return WSTSIndex(
            path=folder, root=Path(body["root"]), format=str(body["format"]),
            fires=tuple(CachedFire(int(f["id"]), int(f["year"]), str(f["name"]), int(f["days"]),
                                   int(f["height"]), int(f["width"]), tuple(f["dates"]))
                        for f in body["fires"]),
            skipped=tuple(str(s) for s in body["skipped"]),
            moments={int(y): Moments.from_json(m) for y, m in body["moments"].items()})
    return cache_folder.read_index(folder, "WildfireSpreadTS", VERSION, "files", parse)


#: what is wrong with a finished cache folder (None: nothing), as read_index finds it
damage = atomic.problem_of(read_index, DataError)




def _fingerprint(root: Path, fmt: str, fires: list[layout.FireSource]) -> str:
    h = hashlib.sha1(f"wsts v{VERSION}|{fmt}|{root.resolve()}".encode())
    for src in fires:
        h.update(f"{src.label}|".encode())
        for f in src.files:
            st = f.stat()
            h.update(f"{f.name}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def build_cache(root: str | Path, cache_dir: str | Path, fmt: str = "auto",
                on_bad_sequence: str = "error", progress: bool = True) -> Path:
    """Decode every fire of the four fold years under root once; return the cache folder.

    Reused while the source files are unchanged; a damaged one is rebuilt with a notice. A bad fire
    is an error, or with ``on_bad_sequence="skip"`` left out with a warning (also when a cache built
    that way is reused with ``error``: then the first skipped fire's message is the error).
    """
    if on_bad_sequence not in ("error", "skip"):
        raise ValueError(f"data.on_bad_sequence must be 'error' or 'skip', got {on_bad_sequence!r}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"data.root {root} does not exist; {layout.EXPECTED}")
    fmt = layout.detect_format(root, fmt)
    fires = layout.list_fires(root, YEARS, fmt, on_bad_sequence)
    out = Path(cache_dir).expanduser() / f"wsts-{_fingerprint(root, fmt, fires)}"
    cache_folder.build(out, TEMP_NAMES, damage,
                       lambda tmp: _decode_into(tmp, root, fmt, fires, on_bad_sequence, progress), "WildfireSpreadTS")
    index = read_index(out)
    for msg in index.skipped:
        if on_bad_sequence != "skip":
            raise DataError(msg)
        print(f"WARNING: skipping {msg}", flush=True)
    return out


def _decode_into(tmp: Path, root: Path, fmt: str, fires: list[layout.FireSource],
                 on_bad_sequence: str, progress: bool) -> None:
    entries, skipped = [], []
    moments = {y: Moments.empty() for y in YEARS}
    for src in tqdm(fires, desc="Decoding WildfireSpreadTS", disable=not progress, unit="fire"):
        fid, fire_moments = len(entries), Moments.empty()
        try:
            n_days, dates = layout.fire_header(src)
            shape = _write_days(tmp / f"f{fid}.npy", src, n_days, fire_moments)
        except DataError as e:  # a fire that fails half way adds nothing to its year's statistics
            (tmp / f"f{fid}.npy").unlink(missing_ok=True)
            if on_bad_sequence != "skip":
                raise
            skipped.append(f"fire {src.label}: {e}")
            continue
        moments[src.year].merge(fire_moments)
        entries.append({"id": fid, "year": src.year, "name": src.name, "days": shape[0],
                        "height": shape[2], "width": shape[3], "dates": dates})
    body = {"version": VERSION, "root": str(root), "format": fmt, "fires": entries,
            "skipped": skipped, "moments": {str(y): m.to_json() for y, m in moments.items()},
            "files": {p.name: p.stat().st_size for p in sorted(tmp.glob("*.npy"))}}
    atomic.write_text(tmp / INDEX, json.dumps({**body, "checksum": _checksum(body)}, indent=1))


def _write_days(path: Path, src: layout.FireSource, n_days: int, moments: Moments) -> tuple[int, ...]:
    """Write the fire's days into ``path`` (.npy, float32 [T, 23, H, W]) one day at a time, so a
    long fire never sits in memory whole; add them to the year's moments; return the shape.

    Plain writes, not a writable memory map: a full disk is then an OSError, not a SIGBUS.
    """
    shape: tuple[int, ...] = (0, layout.BANDS, 0, 0)
    with open(path, "wb") as f:
        for t, day in enumerate(layout.read_days(src)):
            if t == 0:
                shape = (n_days, *day.shape)
                np.lib.format.write_array_header_1_0(
                    f, {"descr": np.lib.format.dtype_to_descr(np.dtype("<f4")),
                        "fortran_order": False, "shape": shape})
            f.write(np.ascontiguousarray(day, dtype="<f4").tobytes())
            moments.add(day[None])
    if shape[0] == 0:
        np.save(path, np.zeros(shape, np.float32))
    return shape


def fold_standardisation(index: WSTSIndex, fold: Fold) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) float32 [23] of the fold's training years, from the cached per-year moments."""
    return standardisation([index.moments[y] for y in fold.train])
