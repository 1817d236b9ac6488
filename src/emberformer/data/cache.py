"""Decoded-frame cache: each sequence's PNGs decoded once into bit-packed, memory-mapped arrays.

A training sample is then a slice of a memory map, never a PNG decode. The cache folder is keyed
by the source files' paths, sizes and modification times, so a changed data set gets a new cache.
The static raster is stored once, normalised (float16): the trainer keeps it on the device and
crops each sample's window there, so terrain never travels through the loader. Wind is stored
normalised (float32).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from emberformer.data import layout
from emberformer.data.frames import FrameError, decode_mask

CACHE_VERSION = 2


def _fingerprint(root: Path, seqs: list[layout.SequenceInfo]) -> str:
    h = hashlib.sha1(f"v{CACHE_VERSION}|{root.resolve()}".encode())
    land = root / "landscape"
    files = [land / "Input_Geotiff.tif", land / "indices.json", land / "WeatherHistory.csv",
             *sorted((land / "Weathers").glob("*.csv"))]
    for s in seqs:
        files += [*s.fire_frames, *s.iso_frames]
    for f in files:
        st = f.stat()
        h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def wind_range(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Global min and max of (WS, WD) over all readable weather files.

    A broken file is left out here; the sequence that uses it reports it (or is skipped).
    """
    tables = []
    for p in sorted((root / "landscape" / "Weathers").glob("*.csv")):
        try:
            tables.append(layout.read_weather(p))
        except layout.DataError:
            continue
    tables = [t for t in tables if len(t)]
    if not tables:
        raise layout.DataError(f"no readable weather file with WS and WD in {root / 'landscape' / 'Weathers'}")
    allw = np.concatenate(tables)
    return allw.min(0), allw.max(0)


def build_cache(root: str | Path, cache_dir: str | Path, on_bad_sequence: str = "error",
                progress: bool = True) -> Path:
    """Decode every sequence of root once; return the cache folder (reused when up to date)."""
    root = Path(root).expanduser()
    seqs = layout.list_sequences(root, on_bad_sequence)
    out = Path(cache_dir).expanduser() / f"decoded-{_fingerprint(root, seqs)}"
    if (out / "index.json").is_file():
        return out
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    raster = layout.read_landscape(root)
    lo, hi = wind_range(root)
    span = np.where(hi > lo, hi - lo, 1.0)
    index, skipped = [], []
    for s in tqdm(seqs, desc="Decoding frames", disable=not progress, unit="seq"):
        try:
            frames = [decode_mask(p) for p in (*s.fire_frames, *s.iso_frames)]
            sizes = sorted({f.shape for f in frames})
            if len(sizes) > 1:
                raise layout.DataError(f"sequence {s.seq_id}: frames of different sizes {sizes} "
                                       f"in {s.fire_frames[0].parent} and {s.iso_frames[0].parent}")
            fire, iso = np.stack(frames[:len(s.fire_frames)]), np.stack(frames[len(s.fire_frames):])
            shape = fire.shape[1:]
            layout.crop_static(raster, s.window, s.seq_id, shape)  # checks the window
            weather = layout.read_weather(s.weather_file)
            if len(weather) < len(fire):
                raise layout.DataError(f"sequence {s.seq_id}: weather file {s.weather_file} has "
                                       f"{len(weather)} rows, need one per frame ({len(fire)})")
        except (layout.DataError, FrameError) as e:
            msg = str(e) if str(e).startswith("sequence ") else f"sequence {s.seq_id}: {e}"
            if on_bad_sequence != "skip":
                shutil.rmtree(tmp, ignore_errors=True)
                raise layout.DataError(msg) from None
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
        shutil.rmtree(tmp, ignore_errors=True)
        raise layout.DataError(f"every sequence of {root} was skipped as bad")
    np.save(tmp / "static.npy", raster.astype(np.float16))
    (tmp / "index.json").write_text(json.dumps(
        {"root": str(root), "static_channels": int(raster.shape[0]), "sequences": index,
         "skipped": skipped, "wind_min": lo.tolist(), "wind_max": hi.tolist()}, indent=1))
    try:
        os.replace(tmp, out)
    except OSError:  # another process finished the same cache first
        shutil.rmtree(tmp, ignore_errors=True)
    return out
