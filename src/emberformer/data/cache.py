"""Decoded-frame cache: each sequence's PNGs decoded once into bit-packed, memory-mapped arrays.

A training sample is then a slice of a memory map, never a PNG decode. The cache folder is keyed
by the source files' paths, sizes and modification times, so a changed data set gets a new cache.
The static raster is stored once, normalised (float16): the trainer keeps it on the device and
crops each sample's window there, so terrain never travels through the loader. Wind is stored
normalised (float32).

This module is the one owner of a cache's ``index.json``: :func:`read_index` is the only reader.
The index records every array file's size and a checksum of its own contents, so a damaged cache
(a truncated or missing ``.npy``, an emptied or edited ``index.json``) is found by one ``stat`` per
file when it is opened; :func:`build_cache` then rebuilds it with a one-line notice. A cache is
built in a temporary sibling folder (``.tmp<pid>``) that any failure removes; a full disk stops
with one line naming the folder and the space needed.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from emberformer.data import reader
from emberformer.data.frames import FrameError, decode_mask
from emberformer.files import atomic, tempdirs

CACHE_VERSION = 3  # 3: index.json records file sizes and its own checksum
INDEX = "index.json"
# build folders (decoded-<key>.tmp<pid>) and damaged caches set aside for deletion
TEMP_NAMES = r"decoded-[0-9a-f]+\.tmp(?P<pid>\d+)|\.decoded-[0-9a-f]+\.old(?P<pid2>\d+)-[0-9a-f]+"


class CacheError(reader.DataError):
    """A decoded cache that is damaged: unreadable index, missing or truncated files."""


@dataclass(frozen=True)
class CachedSequence:
    """One decoded sequence: ``frames`` frames of ``height`` x ``width``, cropped at ``window``."""

    id: int
    frames: int
    height: int
    width: int
    window: tuple[int, int, int, int]  # y0, y1, x0, x1


@dataclass(frozen=True)
class CacheIndex:
    """What ``index.json`` of a decoded cache says, checked against the files (see read_index)."""

    path: Path                               # the cache folder
    root: Path                               # the data root it was decoded from
    static_channels: int
    sequences: dict[int, CachedSequence]     # by id, ascending
    skipped: tuple[int, ...]                 # ids left out by on_bad_sequence=skip
    wind_min: tuple[float, float]            # (WS, WD) global minimum before normalisation
    wind_max: tuple[float, float]
    files: dict[str, int]                    # file name -> size in bytes at build time


def _checksum(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _parse_index(cache_dir: Path, text: str) -> CacheIndex:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise CacheError(f"{INDEX} is not valid JSON ({e})") from None
    if not isinstance(data, dict) or "checksum" not in data:
        raise CacheError(f"{INDEX} has no checksum (written by another version, or edited)")
    body = {k: v for k, v in data.items() if k != "checksum"}
    if data["checksum"] != _checksum(body):
        raise CacheError(f"{INDEX} does not match its checksum (edited or damaged)")
    if body.get("version") != CACHE_VERSION:
        raise CacheError(f"{INDEX} is version {body.get('version')}, not {CACHE_VERSION}")
    try:
        seqs = {int(s["id"]): CachedSequence(int(s["id"]), int(s["frames"]), int(s["height"]),
                                             int(s["width"]), tuple(int(v) for v in s["window"]))
                for s in body["sequences"]}
        return CacheIndex(
            path=cache_dir, root=Path(body["root"]), static_channels=int(body["static_channels"]),
            sequences=dict(sorted(seqs.items())), skipped=tuple(int(i) for i in body["skipped"]),
            wind_min=tuple(float(v) for v in body["wind_min"]),
            wind_max=tuple(float(v) for v in body["wind_max"]),
            files={str(k): int(v) for k, v in body["files"].items()})
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CacheError(f"{INDEX} lacks or garbles a field ({type(e).__name__}: {e})") from None


def read_index(cache_dir: str | Path) -> CacheIndex:
    """The index of the decoded cache in ``cache_dir``, checked against the files.

    Cheap: one read of index.json and one ``stat`` per file. Raises CacheError (a DataError, so
    one line) naming the folder and the damage: index.json missing, not JSON, not matching its
    checksum, or a listed file missing or of another size than when it was written.
    """
    cache_dir = Path(cache_dir)
    try:
        text = (cache_dir / INDEX).read_text()
    except FileNotFoundError:
        raise CacheError(f"decoded cache {cache_dir} is damaged: {INDEX} is missing") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CacheError(f"decoded cache {cache_dir} is damaged: cannot read {INDEX} ({e})") from None
    try:
        index = _parse_index(cache_dir, text)
    except CacheError as e:
        raise CacheError(f"decoded cache {cache_dir} is damaged: {e}") from None
    for name, size in index.files.items():
        try:
            actual = (cache_dir / name).stat().st_size
        except OSError:
            raise CacheError(f"decoded cache {cache_dir} is damaged: {name} is missing") from None
        if actual != size:
            raise CacheError(f"decoded cache {cache_dir} is damaged: {name} is {actual} bytes, "
                             f"{size} when it was written")
    return index


#: what is wrong with a finished cache folder (None: nothing), as read_index finds it
damage = atomic.problem_of(read_index, CacheError)


def _write_index(folder: Path, body: dict) -> None:
    body = {"version": CACHE_VERSION, **body,
            "files": {p.name: p.stat().st_size for p in sorted(folder.glob("*.npy"))}}
    (folder / INDEX).write_text(json.dumps({**body, "checksum": _checksum(body)}, indent=1))


def _fingerprint(root: Path, seqs: list[reader.SequenceInfo]) -> str:
    h = hashlib.sha1(f"v{CACHE_VERSION}|{root.resolve()}".encode())
    land = root / "landscape"
    files = [land / "Input_Geotiff.tif", land / "indices.json", land / "WeatherHistory.csv",
             *reader.weather_files(root)]
    for s in seqs:
        files += [*s.fire_frames, *s.iso_frames]
    for f in files:
        st = f.stat()
        h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def wind_range(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Global min and max of (WS, WD) over all readable weather files.

    A broken file (non-numeric or non-finite values included) is left out here; the sequence that
    uses it reports it (or is skipped).
    """
    tables = []
    for p in reader.weather_files(root):
        try:
            tables.append(reader.read_weather(p))
        except reader.DataError:
            continue
    tables = [t for t in tables if len(t)]
    if not tables:
        raise reader.DataError(f"no readable weather file with WS and WD in {root / 'landscape' / 'Weathers'}")
    allw = np.concatenate(tables)
    return allw.min(0), allw.max(0)


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def _bytes_needed(seqs: list[reader.SequenceInfo], raster_shape: tuple[int, ...] | None) -> int:
    """About how many bytes the cache of these sequences takes (frame sizes from the PNG headers)."""
    total = 4096
    if raster_shape is not None:
        total += 2 * int(np.prod(raster_shape)) + 128
    for s in seqs:
        try:
            with Image.open(s.fire_frames[0]) as im:
                w, h = im.size
        except (OSError, ValueError, SyntaxError):
            continue
        n = len(s.fire_frames)
        total += 2 * (n * h * ((w + 7) // 8) + 128) + (n * 8 + 128) + 200
    return total


def _no_space(tmp: Path, seqs: list[reader.SequenceInfo], raster_shape) -> reader.DataError:
    folder = tmp.parent
    try:
        free = _mb(shutil.disk_usage(folder).free) + " free"
    except OSError:
        free = "free space unknown"
    return reader.DataError(
        f"no space left on the device of {folder} for the decoded cache: it needs about "
        f"{_mb(_bytes_needed(seqs, raster_shape))} ({free}); free some space or set data.cache_dir "
        "to a folder on another disk")


def build_cache(root: str | Path, cache_dir: str | Path, on_bad_sequence: str = "error",
                progress: bool = True) -> Path:
    """Decode every sequence of root once; return the cache folder (reused when up to date).

    A cache folder that exists but is damaged (see :func:`read_index`) is rebuilt with a notice.
    """
    root = Path(root).expanduser()
    seqs = reader.list_sequences(root, on_bad_sequence)
    out = Path(cache_dir).expanduser() / f"decoded-{_fingerprint(root, seqs)}"
    tempdirs.remove_stale(out.parent, TEMP_NAMES)
    if out.exists():
        problem = damage(out)
        if problem is None:
            return out
        print(f"Note: {problem}; rebuilding it", flush=True)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    raster = None
    try:
        with atomic.folder(out, tmp, damage):
            raster = reader.read_landscape(root)
            _decode_into(tmp, root, seqs, raster, on_bad_sequence, progress)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _no_space(tmp, seqs, None if raster is None else raster.shape) from None
        raise reader.DataError(f"cannot build the decoded cache in {tmp.parent}: {e}") from None
    except reader.DataInterrupted:
        raise
    except KeyboardInterrupt:  # the atomic folder removed the partly built copy
        raise reader.DataInterrupted(
            f"Interrupted while decoding {root} into the cache; nothing was harmed: the partly "
            f"built cache was removed, {root} and the finished caches in {out.parent} are as they "
            "were (the next run decodes it again)") from None
    return out




def _decode_into(tmp: Path, root: Path, seqs: list[reader.SequenceInfo], raster: np.ndarray,
                 on_bad_sequence: str, progress: bool) -> None:
    lo, hi = wind_range(root)
    span = np.where(hi > lo, hi - lo, 1.0)
    index, skipped = [], []
    for s in tqdm(seqs, desc="Decoding frames", disable=not progress, unit="seq"):
        try:
            frames = [decode_mask(p) for p in (*s.fire_frames, *s.iso_frames)]
            sizes = sorted({f.shape for f in frames})
            if len(sizes) > 1:
                raise reader.DataError(f"sequence {s.seq_id}: frames of different sizes {sizes} "
                                       f"in {s.fire_frames[0].parent} and {s.iso_frames[0].parent}")
            fire, iso = np.stack(frames[:len(s.fire_frames)]), np.stack(frames[len(s.fire_frames):])
            shape = fire.shape[1:]
            reader.crop_static(raster, s.window, s.seq_id, shape)  # checks the window
            weather = reader.read_weather(s.weather_file)
            if len(weather) < len(fire):
                raise reader.DataError(f"sequence {s.seq_id}: weather file {s.weather_file} has "
                                       f"{len(weather)} rows, need one per frame ({len(fire)})")
        except (reader.DataError, FrameError) as e:
            msg = str(e) if str(e).startswith("sequence ") else f"sequence {s.seq_id}: {e}"
            if on_bad_sequence != "skip":
                raise reader.DataError(msg) from None
            print(f"WARNING: skipping {msg}")
            skipped.append(s.seq_id)
            continue
        wind = ((weather[: len(fire)] - lo) / span).astype(np.float32)
        np.save(tmp / f"{s.seq_id}_fire.npy", np.packbits(fire, axis=-1))
        np.save(tmp / f"{s.seq_id}_iso.npy", np.packbits(iso, axis=-1))
        np.save(tmp / f"{s.seq_id}_wind.npy", wind)
        index.append({"id": s.seq_id, "frames": len(fire), "height": shape[0], "width": shape[1],
                      "window": list(s.window)})
    if not index:
        raise reader.DataError(f"every sequence of {root} was skipped as bad")
    np.save(tmp / "static.npy", raster.astype(np.float16))
    _write_index(tmp, {"root": str(root), "static_channels": int(raster.shape[0]), "sequences": index,
                       "skipped": skipped, "wind_min": lo.tolist(), "wind_max": hi.tolist()})
