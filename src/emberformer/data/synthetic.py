"""Built-in synthetic training data: PyTorchFire fires on procedurally generated terrain, written
in exactly the on-disk layout of real data sets, so one reader serves both::

    ROOT/landscape/Input_Geotiff.tif     float32 [6, Y, X] static terrain (bands below)
    ROOT/landscape/indices.json          {"1": [y0, y1, x0, x1], ...} crop window per sequence
    ROOT/landscape/Weathers/WeatherN.csv Hour,WS,WD,Temp; row t = weather at frame t
    ROOT/landscape/WeatherHistory.csv    line k names the weather file of sequence k
    ROOT/fire_frames/sequence_001/fire_000.png ...   cumulative fire (burning or burned)
    ROOT/isochrones/sequence_001/iso_000.png ...     the same masks in isochrone colours

GeoTIFF bands: 0 elevation m (-9999 = lake / no data), 1 slope magnitude deg, 2 vegetation class
{1,2,3}, 3 vegetation density [0,1], 4 burnable {0,1}, 5 north-facing sign {-1,1}.

What is drawn (terrain, weather, each sequence's fire) and its conventions are the simulator's
(:mod:`emberformer.data.simulator`): a data set is a pure function of its settings, and
generating one never disturbs the caller's torch RNG. This module writes it and caches it.
"""
from __future__ import annotations

import csv
import errno
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import tifffile
from tqdm import tqdm

from emberformer.data import simulator
from emberformer.data.frames import write_mask
from emberformer.data.reader import DataError
from emberformer.data.simulator import CELL_SIZE_M, NODATA, Settings
from emberformer.files import atomic, tempdirs

GENERATOR_VERSION = 1  # bump when output changes

BAND_NAMES = ("elevation", "slope", "vegetation_class", "vegetation_density", "burnable", "north_facing")
# A few WeatherHistory lines carry a path prefix, as exported real data does.
HISTORY_PREFIXES = ("data/sim/", "../runs/sim_out/")


def generate(
    root: str | Path,
    *,
    num_sequences: int,
    size: int,
    max_frames: int,
    steps_per_frame: int,
    seed: int,
    progress: bool = True,
) -> Path:
    """Write the whole layout under ``root`` (creating it) and return ``root``."""
    s = Settings.checked(num_sequences, size, max_frames, steps_per_frame, seed)
    root = Path(root).expanduser()
    land = root / "landscape"
    (land / "Weathers").mkdir(parents=True, exist_ok=True)
    w = simulator.world(s)
    _write_geotiff(land / "Input_Geotiff.tif", w.raster)
    for j, weather in enumerate(w.weathers):
        _write_weather(land / "Weathers" / f"Weather{j + 1}.csv", weather)

    seq_pad = max(3, len(str(s.num_sequences)))
    frame_pad = max(3, len(str(s.max_frames - 1)))
    indices: dict[str, list[int]] = {}
    history: list[str] = []
    with simulator.isolated_torch():
        for k in tqdm(range(1, s.num_sequences + 1), desc="Simulating fires", disable=not progress):
            seq = simulator.simulate_sequence(w, k)
            indices[str(k)] = list(seq.window)
            prefix = _history_prefix(np.random.default_rng([s.entropy, 3, k]))
            history.append(f"{prefix}Weathers/Weather{seq.weather + 1}.csv")
            name = f"sequence_{k:0{seq_pad}d}"
            fire_dir, iso_dir = root / "fire_frames" / name, root / "isochrones" / name
            fire_dir.mkdir(parents=True, exist_ok=True)
            iso_dir.mkdir(parents=True, exist_ok=True)
            for t, mask in enumerate(seq.frames):
                write_mask(fire_dir / f"fire_{t:0{frame_pad}d}.png", mask, "fire")
                write_mask(iso_dir / f"iso_{t:0{frame_pad}d}.png", mask, "iso")

    lines = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in indices.items())
    (land / "indices.json").write_text("{\n" + lines + "\n}\n")
    (land / "WeatherHistory.csv").write_text("".join(line + "\n" for line in history))
    return root


def ensure_synthetic(cache_dir: str | Path, *, progress: bool = True, **settings: int) -> Path:
    """Return the root of the data set with these ``settings`` (the keyword arguments of
    :func:`generate`: ``num_sequences``, ``size``, ``max_frames``, ``steps_per_frame``, ``seed``)
    under ``cache_dir``, generating it once.

    The folder is ``cache_dir/synthetic-<hash>`` with the hash over (GENERATOR_VERSION, settings), so
    changed settings or generator code never reuse stale data. Generation goes to a temporary sibling
    renamed into place when complete (settings.json is its completion marker), so an interrupted run
    never leaves a half data set that a later call would take for finished; any failure removes the
    temporary folder, and a full disk stops with one line naming the folder and the space needed.
    settings.json lists every file with its size; a data set whose files no longer match (a frame
    deleted or truncated, no list) is generated again, with a one-line notice.
    """
    s = Settings.checked(**settings)
    cache_dir = Path(cache_dir).expanduser()
    record = {"generator_version": GENERATOR_VERSION, **s.as_dict()}
    key = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:12]
    final = cache_dir / f"synthetic-{key}"
    tempdirs.remove_stale(cache_dir, r"\.synthetic-[0-9a-f]+\.(?P<pid>\d+)-[0-9a-f]+\.tmp"
                                     r"|\.synthetic-[0-9a-f]+\.old(?P<pid2>\d+)-[0-9a-f]+")
    if final.exists():
        problem = atomic.listed_files_problem(final)
        if problem is None:
            return final
        print(f"Note: synthetic data set {final} is damaged ({problem}); generating it again", flush=True)

    tmp = cache_dir / f".synthetic-{key}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
    try:
        with atomic.folder(final, tmp, atomic.listed_files_problem):
            generate(tmp, **s.as_dict(), progress=progress)
            files = {p.relative_to(tmp).as_posix(): p.stat().st_size
                     for p in sorted(tmp.rglob("*")) if p.is_file()}
            (tmp / "settings.json").write_text(json.dumps({**record, "key": key, "files": files}, indent=1) + "\n")
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DataError(_no_space_message(cache_dir, s)) from None
        raise DataError(f"cannot write the synthetic data set in {cache_dir}: {e}") from None
    return final




def _no_space_message(cache_dir: Path, s: Settings) -> str:
    """One line: where, and an upper bound of the space the data set takes (uncompressed sizes)."""
    n = s.raster_size
    need = 6 * n * n * 4 + s.num_sequences * (2 * s.max_frames * (s.size ** 2 * 3 + 100) + 600)
    try:
        free = f"{shutil.disk_usage(cache_dir).free / 1e6:.1f} MB free"
    except OSError:
        free = "free space unknown"
    return (f"no space left on the device of {cache_dir} for the synthetic data set: it needs up to "
            f"{need / 1e6:.1f} MB ({free}); free some space or set data.cache_dir to a folder on "
            "another disk")


# ---------------------------------------------------------------------------------------------
# Writing the layout


def _write_geotiff(path: Path, raster: np.ndarray) -> None:
    """Tiled, deflate-compressed multi-band TIFF; GDAL_NODATA tag so GIS tools see the lake."""
    tifffile.imwrite(
        path,
        raster,
        photometric="minisblack",
        planarconfig="separate",
        tile=(64, 64),
        compression="zlib",
        metadata={"bands": list(BAND_NAMES), "cell_size_m": CELL_SIZE_M},
        extratags=[(42113, "s", 0, str(int(NODATA)), True)],
    )


def _write_weather(path: Path, w: dict[str, np.ndarray]) -> None:
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(list(w))
        for row in zip(*w.values()):
            out.writerow([str(v) for v in row])


def _history_prefix(rng: np.random.Generator) -> str:
    """Mostly plain ``Weathers/...``; sometimes an arbitrary leading path, as in real exports."""
    if rng.random() < 0.2:
        return HISTORY_PREFIXES[int(rng.integers(len(HISTORY_PREFIXES)))]
    return ""
