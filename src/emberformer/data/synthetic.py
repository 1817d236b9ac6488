"""Built-in synthetic training data: PyTorchFire fires on procedurally generated terrain.

The output uses exactly the on-disk layout of real data sets, so one reader serves both::

    ROOT/landscape/Input_Geotiff.tif     float32 [6, Y, X] static terrain (bands below)
    ROOT/landscape/indices.json          {"1": [y0, y1, x0, x1], ...} crop window per sequence
    ROOT/landscape/Weathers/WeatherN.csv Hour,WS,WD,Temp; row t = weather at frame t
    ROOT/landscape/WeatherHistory.csv    line k names the weather file of sequence k
    ROOT/fire_frames/sequence_001/fire_000.png ...   cumulative fire (burning or burned)
    ROOT/isochrones/sequence_001/iso_000.png ...     the same masks in isochrone colours

GeoTIFF bands: 0 elevation m (-9999 = lake / no data), 1 slope magnitude deg, 2 vegetation class
{1,2,3}, 3 vegetation density [0,1], 4 burnable {0,1}, 5 north-facing sign {-1,1}.

Conventions (rows increase southward, image top = north):

* Weather ``WD`` is meteorological: degrees clockwise from north the wind blows FROM.
  PyTorchFire wants the direction the air moves TOWARDS, counter-clockwise from east
  (:func:`wd_to_towards_ccw_east`).
* The simulator steps that advance frame t to frame t+1 use weather row t, so a model that sees
  frame t and the weather at frame t has what drove the next frame.

Everything is drawn from numpy Generators seeded by ``seed`` and the simulator runs inside
``torch.random.fork_rng`` (see :func:`_isolated_torch`), so a data set is a pure function of its
settings and generating one never disturbs the caller's torch RNG.
"""
from __future__ import annotations

import csv
import errno
import hashlib
import json
import math
import operator
import os
import shutil
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
import torch
from pytorchfire import WildfireModel
from tqdm import tqdm

from emberformer.data import tempdirs
from emberformer.data.frames import write_mask
from emberformer.data.reader import DataError

GENERATOR_VERSION = 1  # bump when output changes

NODATA = -9999.0
CELL_SIZE_M = 30.0
BAND_NAMES = ("elevation", "slope", "vegetation_class", "vegetation_density", "burnable", "north_facing")

# Alexandridis et al. 2008 (Spetses) give p_h 0.58, a 0.078, c_1 0.045, c_2 0.131, p_continue 0.3.
# With those the front saturates (one cell per step in all 8 directions, so low-wind fires come out
# as squares). A lower p_h keeps spread stochastic and rounder, a larger c_2 makes moderate winds
# (5-8 m/s) push the fire downwind more clearly (mean cosine between burned-area shift and wind,
# WS > 6 m/s: 0.92 vs 0.83), and a larger p_continue (thicker burning front) keeps weak fires from
# dying out within a few steps.
SIM_PARAMS = {"a": 0.078, "p_h": 0.45, "c_1": 0.045, "c_2": 0.17, "p_continue": 0.5}
VEG_CLASS_P = {1: -0.3, 2: 0.0, 3: 0.4}  # p_veg per vegetation class (sparse, mixed, dense)
DEN_P_RANGE = (-0.4, 0.3)  # p_den at density 0 and 1
WARMUP_STEPS = 2  # steps before frame 0, so the ignition is a small irregular blob
TWO_IGNITION_PROB = 0.2
MAX_ATTEMPTS = 50  # redraws of a sequence whose fire dies before it grows
MAX_WEATHER_FILES = 16
WIND_SPEED_MAX = 15.0
# A few WeatherHistory lines carry a path prefix, as exported real data does.
HISTORY_PREFIXES = ("data/sim/", "../runs/sim_out/")


# ---------------------------------------------------------------------------------------------
# Public API


def wd_to_towards_ccw_east(wd_deg):
    """Meteorological wind direction (clockwise from north, blowing FROM) -> PyTorchFire's
    direction the air moves TOWARDS, counter-clockwise from east. Works on floats and arrays."""
    return (270 - wd_deg) % 360


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
    s = _validated(num_sequences, size, max_frames, steps_per_frame, seed)
    root = Path(root).expanduser()
    land = root / "landscape"
    (land / "Weathers").mkdir(parents=True, exist_ok=True)
    ent = s["seed"] % 2**64  # numpy seed sequences want non-negative entropy

    raster = _make_landscape(np.random.default_rng([ent, 0]), _raster_size(s["size"]))
    _write_geotiff(land / "Input_Geotiff.tif", raster)

    n_weather = min(s["num_sequences"], MAX_WEATHER_FILES)
    weathers = [_make_weather(np.random.default_rng([ent, 1, j]), s["max_frames"]) for j in range(n_weather)]
    for j, w in enumerate(weathers):
        _write_weather(land / "Weathers" / f"Weather{j + 1}.csv", w)

    seq_pad = max(3, len(str(s["num_sequences"])))
    frame_pad = max(3, len(str(s["max_frames"] - 1)))
    indices: dict[str, list[int]] = {}
    history: list[str] = []
    with _isolated_torch():
        for k in tqdm(range(1, s["num_sequences"] + 1), desc="Simulating fires", disable=not progress):
            seq = _simulate_sequence(ent, k, raster, weathers, s)
            indices[str(k)] = list(seq.window)
            prefix = _history_prefix(np.random.default_rng([ent, 3, k]))
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


def ensure_synthetic(
    cache_dir: str | Path,
    *,
    num_sequences: int,
    size: int,
    max_frames: int,
    steps_per_frame: int,
    seed: int,
    progress: bool = True,
) -> Path:
    """Return the root of the data set with these settings under ``cache_dir``, generating it once.

    The folder is ``cache_dir/synthetic-<hash>`` with the hash over (GENERATOR_VERSION, settings), so
    changed settings or generator code never reuse stale data. Generation goes to a temporary sibling
    renamed into place when complete (settings.json is its completion marker), so an interrupted run
    never leaves a half data set that a later call would take for finished; any failure removes the
    temporary folder, and a full disk stops with one line naming the folder and the space needed.
    settings.json lists every file with its size; a data set whose files no longer match (a frame
    deleted or truncated, no list) is generated again, with a one-line notice.
    """
    s = _validated(num_sequences, size, max_frames, steps_per_frame, seed)
    cache_dir = Path(cache_dir).expanduser()
    record = {"generator_version": GENERATOR_VERSION, **s}
    key = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:12]
    final = cache_dir / f"synthetic-{key}"
    tempdirs.remove_stale(cache_dir, r"\.synthetic-[0-9a-f]+\.(?P<pid>\d+)-[0-9a-f]+\.tmp"
                                     r"|\.synthetic-[0-9a-f]+\.old(?P<pid2>\d+)-[0-9a-f]+")
    if final.exists():
        problem = _damage(final)
        if problem is None:
            return final
        print(f"Note: synthetic data set {final} is damaged ({problem}); generating it again", flush=True)

    tmp = cache_dir / f".synthetic-{key}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        # not tempfile.mkdtemp: that folder would be mode 0700 and end up as the data set itself
        tmp.mkdir()
        generate(tmp, **s, progress=progress)
        files = {p.relative_to(tmp).as_posix(): p.stat().st_size
                 for p in sorted(tmp.rglob("*")) if p.is_file()}
        (tmp / "settings.json").write_text(json.dumps({**record, "key": key, "files": files}, indent=1) + "\n")
        if final.exists():
            if _damage(final) is None:  # another process finished the same data set first
                shutil.rmtree(tmp)
                return final
            tempdirs.discard(final)  # a damaged, foreign or broken folder under our name: never reuse it
        try:
            os.replace(tmp, final)
        except OSError:
            if _damage(final) is not None:  # not another process finishing the same data set first
                raise
            shutil.rmtree(tmp)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DataError(_no_space_message(cache_dir, s)) from None
        if isinstance(e, OSError):
            raise DataError(f"cannot write the synthetic data set in {cache_dir}: {e}") from None
        raise
    return final


def _damage(root: Path) -> str | None:
    """What is wrong with a finished data set folder (None: nothing), from settings.json's file list."""
    try:
        files = json.loads((root / "settings.json").read_text())["files"]
        items = [(str(k), int(v)) for k, v in files.items()]
    except FileNotFoundError:
        return "settings.json is missing"
    except KeyError:
        return "settings.json has no file list (written by an older version)"
    except (OSError, ValueError, TypeError, AttributeError):
        return "settings.json is unreadable"
    for rel, size in items:
        try:
            actual = (root / rel).stat().st_size
        except OSError:
            return f"{rel} is missing"
        if actual != size:
            return f"{rel} is {actual} bytes, {size} when it was written"
    return None


def _no_space_message(cache_dir: Path, s: dict[str, int]) -> str:
    """One line: where, and an upper bound of the space the data set takes (uncompressed sizes)."""
    n = _raster_size(s["size"])
    need = 6 * n * n * 4 + s["num_sequences"] * (2 * s["max_frames"] * (s["size"] ** 2 * 3 + 100) + 600)
    try:
        free = f"{shutil.disk_usage(cache_dir).free / 1e6:.1f} MB free"
    except OSError:
        free = "free space unknown"
    return (f"no space left on the device of {cache_dir} for the synthetic data set: it needs up to "
            f"{need / 1e6:.1f} MB ({free}); free some space or set data.cache_dir to a folder on "
            "another disk")


# ---------------------------------------------------------------------------------------------
# Settings


def _validated(num_sequences, size, max_frames, steps_per_frame, seed) -> dict[str, int]:
    """Check the settings, naming the config key in errors (they come from ``data.*``)."""
    out = {}
    for name, value, minimum in (
        ("num_sequences", num_sequences, 1),
        ("size", size, 16),
        ("max_frames", max_frames, 2),
        ("steps_per_frame", steps_per_frame, 1),
        ("seed", seed, None),
    ):
        if isinstance(value, bool):
            raise ValueError(f"data.{name} must be an integer, got {value!r}")
        try:
            value = operator.index(value)
        except TypeError:
            raise ValueError(f"data.{name} must be an integer, got {value!r}") from None
        if minimum is not None and value < minimum:
            raise ValueError(f"data.{name} must be >= {minimum}, got {value}")
        out[name] = value
    return out


def _raster_size(size: int) -> int:
    """Room for many different crop windows while keeping the GeoTIFF small."""
    return max(4 * size, 256)


# ---------------------------------------------------------------------------------------------
# Terrain


def _bump_field(rng: np.random.Generator, n: int, count: int, sigma: tuple[float, float]) -> np.ndarray:
    """A smooth random field: a sum of separable gaussian bumps, normalised to mean 0, std 1."""
    ax = np.arange(n, dtype=np.float64)
    field = np.zeros((n, n))
    for _ in range(count):
        cy, cx = rng.uniform(-0.1 * n, 1.1 * n, size=2)
        sy, sx = rng.uniform(*sigma, size=2)
        amp = rng.normal()
        field += amp * np.outer(np.exp(-0.5 * ((ax - cy) / sy) ** 2), np.exp(-0.5 * ((ax - cx) / sx) ** 2))
    return (field - field.mean()) / (field.std() + 1e-9)


def _quantise(x: np.ndarray, step: float) -> np.ndarray:
    """Round to a binary fraction so float32 mantissas end in zeros and deflate compresses them."""
    return (np.round(x / step) * step).astype(np.float32)


def _make_landscape(rng: np.random.Generator, n: int) -> np.ndarray:
    """The shared static raster [6, n, n], float32 (band meanings in the module docstring)."""
    elev = (
        450.0
        + 140.0 * _bump_field(rng, n, 12, (n / 10, n / 4))
        + 35.0 * _bump_field(rng, n, 40, (n / 40, n / 14))
    )
    elev = np.maximum(elev, 5.0)
    d_row, d_col = np.gradient(elev, CELL_SIZE_M)
    slope_mag = np.degrees(np.arctan(np.hypot(d_row, d_col)))
    north = np.where(d_row >= 0, 1.0, -1.0)  # elevation rising southward: the slope faces north

    veg_field = _bump_field(rng, n, 60, (n / 40, n / 12))
    lo, hi = np.quantile(veg_field, [0.3, 0.75])
    veg_class = 1.0 + (veg_field > lo) + (veg_field > hi)
    density = 1.0 / (1.0 + np.exp(-1.5 * _bump_field(rng, n, 60, (n / 50, n / 15))))
    density = np.clip(density + rng.uniform(-0.05, 0.05, size=(n, n)), 0.0, 1.0)

    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64)
    burnable = np.ones((n, n), dtype=bool)
    # lake: an ellipse away from the edges, no-data elevation
    cy, cx = rng.uniform(0.15 * n, 0.85 * n, size=2)
    ry, rx = rng.uniform(n / 30, n / 16, size=2)
    lake = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    burnable &= ~lake
    # bare rock: a few small discs
    for _ in range(max(3, n // 64)):
        cy, cx = rng.uniform(0, n, size=2)
        r = rng.uniform(2.0, 3.0 + n / 60)
        burnable &= (yy - cy) ** 2 + (xx - cx) ** 2 > r * r
    # roads: straight segments about two cells wide (a fire break for an 8-neighbour automaton)
    for _ in range(2):
        y0, x0 = rng.uniform(0, n, size=2)
        angle = rng.uniform(0, np.pi)
        length = rng.uniform(0.3 * n, 0.8 * n)
        dy, dx = np.sin(angle), np.cos(angle)
        along = np.clip((yy - y0) * dy + (xx - x0) * dx, 0.0, length)
        dist = np.hypot(yy - (y0 + along * dy), xx - (x0 + along * dx))
        burnable &= dist > 1.0

    elev = _quantise(elev, 0.25)
    elev[lake] = NODATA
    slope_mag[lake] = 0.0
    north[lake] = 1.0
    density[lake] = 0.0
    return np.stack(
        [
            elev,
            _quantise(slope_mag, 1 / 16),
            veg_class.astype(np.float32),
            _quantise(density, 1 / 256),
            burnable.astype(np.float32),
            north.astype(np.float32),
        ]
    ).astype(np.float32)


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


# ---------------------------------------------------------------------------------------------
# Weather


def _make_weather(rng: np.random.Generator, rows: int) -> dict[str, np.ndarray]:
    """One scenario: wind speed and direction drifting as random walks, row t = frame t."""
    ws = np.empty(rows)
    wd = np.empty(rows)
    ws[0] = 12.0 * rng.beta(2.0, 3.0)
    wd[0] = rng.uniform(0, 360)
    for t in range(1, rows):
        ws[t] = np.clip(ws[t - 1] + rng.normal(0, 0.8), 0.0, WIND_SPEED_MAX)
        wd[t] = wd[t - 1] + rng.normal(0, 10.0)
    hour0 = int(rng.integers(0, 24))
    temp = 24 + rng.normal(0, 3) + np.cumsum(rng.normal(0, 0.4, rows))
    return {
        "Hour": (hour0 + np.arange(rows)) % 24,
        "WS": np.round(ws, 1),  # the simulator uses exactly what the file says
        "WD": np.round(wd).astype(int) % 360,
        "Temp": np.round(temp, 1),
    }


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


# ---------------------------------------------------------------------------------------------
# Simulation


@dataclass
class _Sequence:
    window: tuple[int, int, int, int]  # y0, y1, x0, x1 (y1, x1 exclusive)
    weather: int  # 0-based index of the weather scenario
    frames: list[np.ndarray]  # cumulative fire masks, bool [size, size]
    env: dict | None = None  # the simulator's environment (recorded runs only)
    states: list[np.ndarray] | None = None  # simulator state [2, size, size] per frame (recorded runs)


def _directional_slope(elev: np.ndarray) -> np.ndarray:
    """Slope [H, W, 3, 3] in degrees in PyTorchFire's convention.

    Index (c1, c2) is the direction d = (c1 - 1, c2 - 1) the fire travels INTO cell x, coming from
    neighbour x - d (index (0, 1) pairs with the neighbour below: fire moving north), so the entry
    is atan((elev[x] - elev[x - d]) / dist): positive when the fire runs uphill. 0 at the window
    border and wherever the lake (no data) is involved.
    """
    h, w = elev.shape
    valid = elev != NODATA
    pe = np.pad(elev.astype(np.float64), 1)
    pv = np.pad(valid, 1)
    out = np.zeros((h, w, 3, 3), dtype=np.float32)
    for c1 in range(3):
        for c2 in range(3):
            if c1 == 1 and c2 == 1:
                continue
            src = pe[2 - c1 : 2 - c1 + h, 2 - c2 : 2 - c2 + w]
            ok = valid & pv[2 - c1 : 2 - c1 + h, 2 - c2 : 2 - c2 + w]
            dist = CELL_SIZE_M * (math.sqrt(2.0) if c1 != 1 and c2 != 1 else 1.0)
            ang = np.degrees(np.arctan((elev - src) / dist))
            out[:, :, c1, c2] = np.where(ok, ang, 0.0)
    return out


def _frame_count(rng: np.random.Generator, max_frames: int) -> int:
    """Between 3 and max_frames, skewed toward long sequences (density grows linearly)."""
    lo = min(3, max_frames)
    return min(max_frames, lo + int((max_frames - lo + 1) * math.sqrt(rng.random())))


def _simulate_sequence(ent: int, k: int, raster: np.ndarray, weathers: list[dict], s: dict,
                       record: bool = False) -> _Sequence:
    """Simulate sequence k; redraw (deterministically) while the fire dies before it ever grows.

    ``record``: also keep the simulator's environment and full state (burning, burned) at every
    frame (see :func:`replay`); the frames are the same either way.
    """
    for attempt in range(MAX_ATTEMPTS):
        seq = _try_sequence(np.random.default_rng([ent, 2, k, attempt]), raster, weathers, s, record)
        if seq is not None and len(seq.frames) >= 2 and seq.frames[-1].sum() > seq.frames[0].sum():
            return seq
    if seq is None:  # pathological terrain: no burnable cell in any drawn window
        size = s["size"]
        empty = np.zeros((size, size), dtype=bool)
        states = [np.zeros((2, size, size), dtype=bool)] * 2 if record else None
        return _Sequence((0, size, 0, size), 0, [empty, empty], None, states)
    while len(seq.frames) < 2:
        seq.frames.append(seq.frames[-1].copy())
        if seq.states is not None:
            seq.states.append(seq.states[-1].copy())
    return seq


def _environment(crop: np.ndarray, ignition: np.ndarray) -> dict:
    """The simulator's environment for a cropped raster window and an ignition mask."""
    size = crop.shape[-1]
    burnable = crop[4] > 0.5
    veg = np.select([crop[2] < 1.5, crop[2] < 2.5], [VEG_CLASS_P[1], VEG_CLASS_P[2]], VEG_CLASS_P[3])
    p_veg = np.where(burnable, veg, -1.0)  # (1 + p_veg) = 0: nothing ignites there
    p_den = DEN_P_RANGE[0] + (DEN_P_RANGE[1] - DEN_P_RANGE[0]) * crop[3]
    return {
        "p_veg": torch.from_numpy(p_veg.astype(np.float32)),
        "p_den": torch.from_numpy(p_den.astype(np.float32)),
        "wind_velocity": torch.zeros(size, size),
        "wind_towards_direction": torch.zeros(size, size),
        "slope": torch.from_numpy(_directional_slope(crop[0])),
        "initial_ignition": torch.from_numpy(ignition),
    }


def _try_sequence(rng: np.random.Generator, raster: np.ndarray, weathers: list[dict], s: dict,
                  record: bool = False) -> _Sequence | None:
    size, n = s["size"], raster.shape[1]
    y0, x0 = (int(v) for v in rng.integers(0, n - size + 1, size=2))
    crop = raster[:, y0 : y0 + size, x0 : x0 + size]
    weather_idx = int(rng.integers(len(weathers)))
    weather = weathers[weather_idx]
    n_frames = _frame_count(rng, s["max_frames"])

    burnable = crop[4] > 0.5
    margin = max(2, size // 6)
    inner = np.zeros_like(burnable)
    inner[margin : size - margin, margin : size - margin] = True
    candidates = np.flatnonzero(burnable & inner)
    if candidates.size == 0:
        return None
    n_ign = 2 if rng.random() < TWO_IGNITION_PROB else 1
    ignition = np.zeros(size * size, dtype=bool)
    ignition[rng.choice(candidates, size=min(n_ign, candidates.size), replace=False)] = True
    ignition = ignition.reshape(size, size)
    torch_seed = int(rng.integers(0, 2**62))

    env = _environment(crop, ignition)
    states: list[np.ndarray] | None = [] if record else None
    frames = _run_fire(env, weather, n_frames, s["steps_per_frame"], torch_seed, states)
    if frames is None:
        return None
    return _Sequence((y0, y0 + size, x0, x0 + size), weather_idx, frames,
                     env if record else None, states)


class _CachedWildfireModel(WildfireModel):
    """PyTorchFire's model with the same p_ignite, computed about 3x faster.

    The stock p_ignite rebuilds the burning-independent propagation probabilities [H, W, 3, 3]
    (slope, wind, vegetation terms) every step; they only change with the weather, so they are cached
    until :meth:`set_weather`, and the neighbour product is taken with in-place slice products instead
    of a [H, W, 3, 3] scatter. compute(), the state update and the RNG draws are the package's own.
    """

    _p_propagate: torch.Tensor | None = None

    def set_weather(self, wind_speed: float, wind_towards_ccw_east: float) -> None:
        self.wind_velocity.fill_(wind_speed)
        self.wind_towards_direction.fill_(wind_towards_ccw_east)
        self._p_propagate = None

    def p_ignite(self) -> torch.Tensor:
        if self._p_propagate is None:
            p_s = torch.exp(self.a * self.slope)
            offset = torch.tensor([[3, 2, 1], [4, 0, 0], [5, 6, 7]], device=p_s.device) * 45  # as upstream
            v = self.wind_velocity[:, :, None, None]
            towards = self.wind_towards_direction[:, :, None, None]
            p_w = torch.exp(self.c_1 * v) * torch.exp(
                self.c_2 * v * (torch.cos(torch.deg2rad((offset - towards) % 360)) - 1)
            )
            p = (self.p_h * (1 + self.p_veg) * (1 + self.p_den))[:, :, None, None] * p_s * p_w
            self._p_propagate = torch.tanh(1.1486328125 * p)
        p = self._p_propagate
        b = self.state[0].to(p.dtype)
        keep = torch.ones_like(b)  # product over burning neighbours of (1 - p_propagate)
        keep[:-1, :-1] *= 1 - p[:-1, :-1, 0, 0] * b[1:, 1:]
        keep[:-1, :] *= 1 - p[:-1, :, 0, 1] * b[1:, :]
        keep[:-1, 1:] *= 1 - p[:-1, 1:, 0, 2] * b[1:, :-1]
        keep[:, :-1] *= 1 - p[:, :-1, 1, 0] * b[:, 1:]
        keep[:, 1:] *= 1 - p[:, 1:, 1, 2] * b[:, :-1]
        keep[1:, :-1] *= 1 - p[1:, :-1, 2, 0] * b[:-1, 1:]
        keep[1:, :] *= 1 - p[1:, :, 2, 1] * b[:-1, :]
        keep[1:, 1:] *= 1 - p[1:, 1:, 2, 2] * b[:-1, :-1]
        return 1 - keep


@contextmanager
def _isolated_torch():
    """Private torch RNG, no autograd, one intra-op thread for the simulation.

    The model seeds and draws from the global RNG, so fork_rng keeps the caller's state. The tensors
    are tiny; with two threads on a busy 2-core machine OpenMP hand-offs made each step ~10x slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            yield
    finally:
        torch.set_num_threads(threads)


def _run_fire(env: dict, weather: dict, n_frames: int, steps_per_frame: int, torch_seed: int,
              states: list[np.ndarray] | None = None) -> list[np.ndarray] | None:
    """Cumulative masks for frames 0..n_frames-1, stopping early once nothing burns.

    None when the fire is out before frame 0. Must run inside :func:`_isolated_torch` (the model
    seeds and draws from the global torch RNG). ``states``, when given, receives the full state
    [2, H, W] (burning, burned) at every frame.
    """
    params = {name: torch.tensor(float(v)) for name, v in SIM_PARAMS.items()}
    model = _CachedWildfireModel(env_data=env, params=params)
    model.eval()  # no autograd accumulator: plain simulation
    model.reset(seed=torch_seed)

    def set_weather(t: int) -> None:
        model.set_weather(float(weather["WS"][t]), float(wd_to_towards_ccw_east(weather["WD"][t])))

    set_weather(0)
    for _ in range(WARMUP_STEPS):
        model.compute()
    if not model.state[0].any():
        return None
    frames = [model.state.any(dim=0).numpy().copy()]
    if states is not None:
        states.append(model.state.numpy().copy())
    for t in range(n_frames - 1):
        set_weather(t)  # row t drives the steps from frame t to frame t + 1
        for _ in range(steps_per_frame):
            model.compute()
        frames.append(model.state.any(dim=0).numpy().copy())
        if states is not None:
            states.append(model.state.numpy().copy())
        if not model.state[0].any():
            break
    return frames
