"""The built-in WildfireSpreadTS-layout data set: simulator fires written as the published GeoTIFFs.

``data=wsts`` with ``data.root: null`` trains on this set, read by the same reader
(:mod:`~emberformer.data.wsts.layout`) that serves the real files, so a fresh machine runs the
benchmark's pipeline with no download. The layout is the published one::

    ROOT/{year}/fire_{year}{k:03d}/{YYYY-MM-DD}.tif   one day, 23 float32 bands [23, H, W]
    ROOT/settings.json                                 the settings, key and every file's size

Four years (2018-2021), ``fires_per_year`` fires each, images of differing sizes and days. Each
fire is a PyTorchFire run (:mod:`emberformer.data.simulator`) on a window of its year's simulated
terrain; a day is one simulator frame (``steps_per_day`` steps). The day's **active fire** (band 22)
is the set of cells burning after any step of that day (day 0: burning at frame 0), each given a
VIIRS-like detection time hhmm; NaN elsewhere. The other bands carry the simulator's terrain and
weather in the published units (see :data:`UNITS`); the bands the simulator has no counterpart for
(VIIRS reflectances, NDVI/EVI2, precipitation, humidity, ERC, PDSI, forecasts) are drawn around
the published means from the terrain, the weather and the fire, so they are plausible, not real.

Everything is a pure function of :class:`SimulatedSettings` (seeded numpy Generators, the
simulator inside :func:`~emberformer.data.simulator.isolated_torch`), so :func:`simulate_fire`
re-creates any fire's simulator state exactly (what a simulator ceiling restores). The set is
written once into the cache folder (built aside, published whole) and reused while its settings
and generator versions are unchanged.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import tifffile
import torch
from tqdm.auto import tqdm

from emberformer.data import builtin_set, integer_setting, simulator
from emberformer.data.reader import DataError
from emberformer.data.synthetic import GENERATOR_VERSION as SIMULATOR_VERSION
from emberformer.data.wsts import layout
from emberformer.data.wsts.folds import YEARS

GENERATOR_VERSION = 1  # bump when what this module writes changes
PREFIX = "wsts-simulated-"
SETTINGS_FILE = builtin_set.SETTINGS_FILE
TEMP_NAMES = r"\.wsts-simulated-[0-9a-f]+\.(?P<pid>\d+)-[0-9a-f]+\.tmp|\.wsts-simulated-[0-9a-f]+\.old(?P<pid2>\d+)-[0-9a-f]+"
MAX_ATTEMPTS = 50      # redraws of a fire that goes out before its last day
SEASON_START = (6, 1)  # fires start between June 1 and early September
SEASON_DAYS = 100
UNITS = (
    "reflectance x 1e4", "reflectance x 1e4", "reflectance x 1e4", "NDVI x 1e4", "EVI2 x 1e4",
    "mm", "m/s", "degrees (from, clockwise from north)", "K", "K", "BTU/ft2 (index)", "kg/kg",
    "degrees", "degrees (facing, clockwise from north)", "m", "index", "MODIS IGBP class 1-17",
    "mm", "m/s", "degrees (from, clockwise from north)", "degrees C", "kg/kg", "hhmm (NaN: none)",
)
# MODIS IGBP classes used: vegetation class (sparse, mixed, dense) x density (< 0.5, >= 0.5)
LANDCOVER = {1: (10, 7), 2: (9, 8), 3: (5, 1)}  # grassland/open shrubland, savanna/woody savanna, mixed/needleleaf forest
BARREN, WATER = 16, 17


@dataclass(frozen=True)
class SimulatedSettings:
    """The settings the built-in set is a pure function of (the ``data.simulated.*`` keys)."""

    fires_per_year: int
    min_size: int
    max_size: int
    min_days: int
    max_days: int
    steps_per_day: int
    seed: int

    @classmethod
    def checked(cls, values: Mapping[str, Any]) -> SimulatedSettings:
        """Check ``data.simulated``: every key present and an integer in range, none unknown."""
        names = [f for f in cls.__dataclass_fields__]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ValueError(f"data.simulated.{unknown[0]} is not a setting of the built-in WSTS set; "
                             f"its settings: {', '.join(names)}")
        missing = [n for n in names if n not in values]
        if missing:
            raise ValueError(f"data.simulated.{missing[0]} is missing (conf/data/wsts.yaml sets every "
                             f"key: {', '.join(names)})")
        minimum = {"fires_per_year": 1, "min_size": 16, "max_size": 16, "min_days": 2, "max_days": 2,
                   "steps_per_day": 1, "seed": None}
        out = {}
        for name in names:
            out[name] = integer_setting.checked(f"data.simulated.{name}", values[name], minimum[name])
        for lo, hi in (("min_size", "max_size"), ("min_days", "max_days")):
            if out[lo] > out[hi]:
                raise ValueError(f"data.simulated.{lo} ({out[lo]}) must be <= data.simulated.{hi} ({out[hi]})")
        return cls(**out)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @property
    def key(self) -> str:
        """The cache key: the settings and both generator versions (simulator and this writer)."""
        record = {"wsts_simulated_version": GENERATOR_VERSION, "simulator_version": SIMULATOR_VERSION,
                  **self.as_dict()}
        return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:12]


def year_world(s: SimulatedSettings, year: int) -> simulator.World:
    """The year's terrain and weather scenarios: the simulator's world with a seed of the year.

    The scenarios have ``max_days + 1`` rows: row t drives day t -> t + 1, and the last day's
    forecast bands read row t + 1.
    """
    seed = int(np.random.SeedSequence([s.seed % 2**64, year]).generate_state(1, np.uint64)[0] % 2**62)
    return simulator.world(simulator.Settings.checked(
        simulator.MAX_WEATHER_FILES, s.max_size, s.max_days + 1, s.steps_per_day, seed))


@dataclass
class SimulatedFire:
    """One fire as the simulator ran it."""

    year: int
    k: int                                   # 1-based within its year
    window: tuple[int, int, int, int]        # y0, y1, x0, x1 in the year's terrain raster
    weather: int                             # index of the weather scenario
    start: date
    active: np.ndarray                       # bool [days, H, W]: burning during the day
    states: np.ndarray                       # bool [days, 2, H, W]: burning, burned at each day's end
    env: dict                                # the simulator's environment (torch tensors)

    @property
    def name(self) -> str:
        return f"fire_{self.year}{self.k:03d}"

    @property
    def days(self) -> int:
        return len(self.active)


def simulate_fire(s: SimulatedSettings, w: simulator.World, year: int, k: int) -> SimulatedFire:
    """Fire k (1-based) of ``year``: redrawn (deterministically) until it burns on every one of
    its days; after :data:`MAX_ATTEMPTS` the longest-lived draw, its days after the fire went out
    without active fire. Must run inside :func:`~emberformer.data.simulator.isolated_torch`."""
    best: SimulatedFire | None = None
    for attempt in range(MAX_ATTEMPTS):
        fire = _try_fire(np.random.default_rng([s.seed % 2**64, year, k, attempt]), s, w, year, k)
        if fire is None:
            continue
        if fire.active.any(axis=(1, 2)).all():
            return fire
        if best is None or fire.active.any(axis=(1, 2)).sum() > best.active.any(axis=(1, 2)).sum():
            best = fire
    if best is None:
        raise DataError(f"built-in WSTS set: fire {k} of {year} finds no burnable cell in "
                        f"{MAX_ATTEMPTS} windows (data.simulated.seed={s.seed})")
    return best


def _try_fire(rng: np.random.Generator, s: SimulatedSettings, w: simulator.World, year: int,
              k: int) -> SimulatedFire | None:
    h, wd = (int(v) for v in rng.integers(s.min_size, s.max_size + 1, size=2))
    n = w.raster.shape[1]
    y0, x0 = int(rng.integers(0, n - h + 1)), int(rng.integers(0, n - wd + 1))
    crop = w.raster[:, y0:y0 + h, x0:x0 + wd]
    weather_idx = int(rng.integers(len(w.weathers)))
    days = int(rng.integers(s.min_days, s.max_days + 1))
    start = date(year, *SEASON_START) + timedelta(days=int(rng.integers(0, SEASON_DAYS)))
    burnable = crop[4] > 0.5
    inner = np.zeros_like(burnable)
    my, mx = max(2, h // 4), max(2, wd // 4)
    inner[my:h - my, mx:wd - mx] = True
    candidates = np.flatnonzero(burnable & inner)
    if candidates.size == 0:
        return None
    ignition = np.zeros(h * wd, dtype=bool)
    ignition[rng.choice(candidates)] = True
    torch_seed = int(rng.integers(0, 2**62))
    env = simulator.environment(crop, ignition.reshape(h, wd))
    active = np.zeros((days, h, wd), dtype=bool)

    def on_step(t: int, state: torch.Tensor) -> None:
        active[t] |= state[0].numpy()

    states: list[np.ndarray] = []
    frames = simulator.run_fire(env, w.weathers[weather_idx], days, s.steps_per_day, torch_seed, states, on_step)
    if frames is None:
        return None
    active[0] = states[0][0]
    while len(states) < days:  # the fire went out early: the remaining days stay as it left them
        states.append(np.stack([np.zeros_like(states[-1][0]), states[-1].any(0)]))
    return SimulatedFire(year, k, (y0, y0 + h, x0, x0 + wd), weather_idx, start, active,
                         np.stack(states), env)


# ---------------------------------------------------------------------------------------------
# The 23 bands


def aspect_degrees(elev: np.ndarray) -> np.ndarray:
    """The direction a slope faces, degrees clockwise from north (0 on flat cells); rows run
    southward, columns eastward, as in the simulator."""
    d_row, d_col = np.gradient(elev.astype(np.float64), simulator.CELL_SIZE_M)
    # downhill: -gradient; its north component is +d_row (rows increase southward)
    out = np.degrees(np.arctan2(-d_col, d_row)) % 360.0
    return np.where(np.hypot(d_row, d_col) > 1e-9, out, 0.0)


def landcover(crop: np.ndarray) -> np.ndarray:
    """MODIS IGBP class (1-17) of each cell: water for the lake, barren for rock and roads, else
    by vegetation class and density (:data:`LANDCOVER`)."""
    veg, dense = crop[2].astype(int), crop[3] >= 0.5
    out = np.full(crop.shape[1:], BARREN, dtype=np.float32)
    for cls, (sparse_code, dense_code) in LANDCOVER.items():
        out[(veg == cls) & ~dense] = sparse_code
        out[(veg == cls) & dense] = dense_code
    out[crop[4] <= 0.5] = BARREN
    out[crop[0] == simulator.NODATA] = WATER
    return out


def fire_bands(s: SimulatedSettings, w: simulator.World, fire: SimulatedFire) -> np.ndarray:
    """The fire's days as the published GeoTIFFs hold them: float32 [days, 23, H, W]."""
    y0, y1, x0, x1 = fire.window
    crop = w.raster[:, y0:y1, x0:x1]
    weather = w.weathers[fire.weather]
    rng = np.random.default_rng([s.seed % 2**64, fire.year, fire.k, 1_000_003])
    lake = crop[0] == simulator.NODATA
    elev = crop[0].astype(np.float64).copy()
    elev[lake] = elev[~lake].min() if (~lake).any() else 0.0  # the lake surface: its lowest shore
    density, shape = crop[3].astype(np.float64), crop.shape[1:]
    lc = landcover(crop)
    ndvi0 = np.where(lc == WATER, -0.05, np.where(lc == BARREN, 0.08,
                     0.15 + 0.6 * density + 0.05 * (crop[2] - 1)))
    days = fire.days
    rain = np.where(rng.random(days + 1) < 0.12, rng.exponential(4.0, days + 1), 0.0)
    sph = np.clip(0.0055 + 0.0015 * rng.standard_normal() + np.cumsum(rng.normal(0, 0.0003, days + 1)),
                  0.001, 0.02)
    pdsi = rng.normal(-2.0, 1.5) + np.cumsum(rng.normal(0, 0.05, days + 1))
    dtr = 15.0 + rng.normal(0, 2.0, days + 1)
    lapse = -0.0065 * (elev - elev.mean())
    burned_before = np.zeros(shape, dtype=bool)
    out = np.empty((days, layout.BANDS, *shape), dtype=np.float32)
    def noise(scale: float) -> np.ndarray:
        return rng.normal(0.0, scale, shape)

    for t in range(days):
        active = fire.active[t]
        ndvi = np.clip(ndvi0 * np.where(burned_before, 0.4, 1.0) + noise(0.02), -0.2, 0.95)
        total = 4500.0 + noise(250.0)
        tmax = weather["Temp"][t] + 273.15 + 4.0 + lapse
        b = out[t]
        b[0] = 1200.0 + 1800.0 * (1 - density) + 3000.0 * active + noise(120.0)          # M11
        b[1] = total * (1 + ndvi) / 2 + 800.0 * active                                    # I2 (NIR)
        b[2] = total * (1 - ndvi) / 2 + 800.0 * active                                    # I1 (red)
        b[3] = 1e4 * ndvi
        b[4] = 1e4 * (0.5 * ndvi + noise(0.01))
        b[5] = rain[t] * (1 + 0.1 * noise(1.0)).clip(0)
        b[6] = weather["WS"][t]                 # what drives day t -> t + 1 in the simulator
        b[7] = weather["WD"][t]
        b[8] = tmax - dtr[t]
        b[9] = tmax
        b[10] = np.clip(55.0 + 2.5 * (weather["Temp"][t] - 24.0) - 3.0 * rain[t], 0, 120) + noise(0.5)
        b[11] = sph[t] * np.exp(-lapse / 30.0)
        b[12] = crop[1]
        b[13] = aspect_degrees(elev)
        b[14] = elev
        b[15] = pdsi[t]
        b[16] = lc
        b[17] = max(rain[t + 1] + rng.normal(0, 1.0), 0.0)
        b[18] = max(weather["WS"][t + 1] + rng.normal(0, 0.5), 0.0)
        b[19] = (weather["WD"][t + 1] + rng.normal(0, 8.0)) % 360.0
        b[20] = weather["Temp"][t + 1] + rng.normal(0, 1.0)
        b[21] = max(sph[t + 1] + rng.normal(0, 0.0002), 0.0005)
        b[22] = np.where(active, detection_times(rng, shape), np.nan)
        burned_before |= fire.states[t].any(0)
    return out


def detection_times(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """VIIRS-like detection times hhmm: one overpass of the day (08:00-21:59) plus up to 40 minutes
    per cell; never before 01:00, so every one counts as fire in whole hours."""
    minutes = int(rng.integers(8 * 60, 22 * 60)) + rng.integers(0, 41, shape)
    minutes = np.minimum(minutes, 23 * 60 + 59)
    return (minutes // 60 * 100 + minutes % 60).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Writing and caching


def generate(root: str | Path, s: SimulatedSettings, progress: bool = True) -> Path:
    """Write the whole set under ``root`` (its year folders) and return ``root``."""
    root = Path(root)
    with simulator.isolated_torch():
        jobs = [(year, k) for year in YEARS for k in range(1, s.fires_per_year + 1)]
        worlds: dict[int, simulator.World] = {}
        for year, k in tqdm(jobs, desc="Simulating the built-in WSTS set", disable=not progress, unit="fire"):
            if year not in worlds:
                worlds = {year: year_world(s, year)}
            fire = simulate_fire(s, worlds[year], year, k)
            folder = root / str(year) / fire.name
            folder.mkdir(parents=True, exist_ok=True)
            for t, day in enumerate(fire_bands(s, worlds[year], fire)):
                name = (fire.start + timedelta(days=t)).isoformat()
                tifffile.imwrite(folder / f"{name}.tif", day, photometric="minisblack",
                                 planarconfig="separate", compression="zlib",
                                 metadata={"bands": list(layout.BAND_NAMES)})
    return root




def ensure_simulated(cache_dir: str | Path, settings: Mapping[str, Any], progress: bool = True) -> Path:
    """The root of the built-in set with these settings under ``cache_dir``, written once.

    ``cache_dir/wsts-simulated-<key>``, the key over the settings and the generator versions. It is
    written aside and renamed into place whole (``settings.json``, the list of every file and its
    size, last), under a lock so that two runs starting together simulate it once; a set whose
    files no longer match the list is written again with a one-line notice.
    """
    s = SimulatedSettings.checked(settings)
    cache_dir = Path(cache_dir).expanduser()
    need = math.ceil(len(YEARS) * s.fires_per_year * s.max_days * layout.BANDS * s.max_size ** 2 * 4 / 1e6)
    record = {"wsts_simulated_version": GENERATOR_VERSION, "simulator_version": SIMULATOR_VERSION,
              **s.as_dict(), "key": s.key}
    return builtin_set.write_once(
        cache_dir, f"{PREFIX}{s.key}", "the built-in WSTS set", TEMP_NAMES, lambda tmp: generate(tmp, s, progress),
        record, no_space=f"no space left in {cache_dir} for the built-in WSTS set (up to {need} MB, and as much "
                         "again for its decoded cache); set data.cache_dir to a folder on another disk")


def describe(root: Path) -> str:
    """One line for the log: what the built-in set is and where it lies."""
    rec = json.loads((Path(root) / SETTINGS_FILE).read_text())
    days = sum(1 for k in rec["files"] if k.endswith(".tif"))
    return (f"Data: the built-in simulated WildfireSpreadTS set (no download; not real fires): "
            f"{len(YEARS)} years x {rec['fires_per_year']} fires, {days} days in all, "
            f"{rec['min_size']}-{rec['max_size']} px, at {root}")
