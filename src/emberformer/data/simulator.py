"""The fire simulator behind the built-in data: its settings, the world it burns (terrain and
weather), one sequence's fire, the replay of a sequence's full state, and the ignition rule.

Everything is a pure function of :class:`Settings`: numpy Generators seeded from ``seed`` draw the
terrain, the weather and each sequence, and the simulator (PyTorchFire's ``WildfireModel``) runs
inside :func:`isolated_torch`. So :func:`replay` re-creates exactly what
:mod:`emberformer.data.synthetic` wrote to disk, plus what the masks cannot show (which cells still
burn and which have burned out); the simulator ceiling (:mod:`emberformer.scoring.ceiling`) runs
its ensemble from there with :func:`propagation` and :func:`ignition_probability`, the rule the
simulator itself applies. A change to what this module draws changes the data sets: bump
``synthetic.GENERATOR_VERSION``.

Conventions (rows increase southward, image top = north; raster bands in :mod:`~.synthetic`):

* Weather ``WD`` is meteorological: degrees clockwise from north the wind blows FROM.
  PyTorchFire wants the direction the air moves TOWARDS, counter-clockwise from east
  (:func:`wd_to_towards_ccw_east`).
* The simulator steps that advance frame t to frame t+1 use weather row t, so a model that sees
  frame t and the weather at frame t has what drove the next frame.

PyTorchFire is imported by the functions that run it, not with this module: the trainer imports
the ceiling, and most runs never simulate (start-up time).
"""
from __future__ import annotations

import functools
import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

import numpy as np
import torch

from emberformer.data import integer_setting

if TYPE_CHECKING:
    from pytorchfire import WildfireModel

NODATA = -9999.0
CELL_SIZE_M = 30.0

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


# ---------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class Settings:
    """The settings a built-in data set is a pure function of (the ``data.*`` keys of data=synthetic)."""

    num_sequences: int
    size: int
    max_frames: int
    steps_per_frame: int
    seed: int

    @classmethod
    def checked(cls, num_sequences, size, max_frames, steps_per_frame, seed) -> Settings:
        """Check the settings, naming the config key in errors (they come from ``data.*``)."""
        out = {}
        for name, value, minimum in (
            ("num_sequences", num_sequences, 1),
            ("size", size, 16),
            ("max_frames", max_frames, 2),
            ("steps_per_frame", steps_per_frame, 1),
            ("seed", seed, None),
        ):
            out[name] = integer_setting.checked(f"data.{name}", value, minimum)
        return cls(**out)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @property
    def entropy(self) -> int:
        """The seed as numpy seed sequences want it (non-negative)."""
        return self.seed % 2**64

    @property
    def raster_size(self) -> int:
        """Room for many different crop windows while keeping the GeoTIFF small."""
        return max(4 * self.size, 256)


def wd_to_towards_ccw_east(wd_deg):
    """Meteorological wind direction (clockwise from north, blowing FROM) -> PyTorchFire's
    direction the air moves TOWARDS, counter-clockwise from east. Works on floats and arrays."""
    return (270 - wd_deg) % 360


# ---------------------------------------------------------------------------------------------
# The world: terrain and weather scenarios


@dataclass
class World:
    """What every sequence of a data set shares: the static raster and the weather scenarios."""

    settings: Settings
    raster: np.ndarray  # float32 [6, n, n], bands as in the GeoTIFF
    weathers: list[dict[str, np.ndarray]]  # columns Hour, WS, WD, Temp; row t = frame t


def world(settings: Settings) -> World:
    """The terrain and the weather scenarios of the data set with these settings."""
    ent = settings.entropy
    raster = _make_landscape(np.random.default_rng([ent, 0]), settings.raster_size)
    n_weather = min(settings.num_sequences, MAX_WEATHER_FILES)
    weathers = [_make_weather(np.random.default_rng([ent, 1, j]), settings.max_frames) for j in range(n_weather)]
    return World(settings, raster, weathers)


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
    """The shared static raster [6, n, n], float32 (band meanings in :mod:`~.synthetic`)."""
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


# ---------------------------------------------------------------------------------------------
# The simulator: environment, model, ignition rule


def directional_slope(elev: np.ndarray) -> np.ndarray:
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


def environment(crop: np.ndarray, ignition: np.ndarray) -> dict:
    """The simulator's environment for a cropped raster window (any height and width) and an
    ignition mask."""
    size = crop.shape[-2:]
    burnable = crop[4] > 0.5
    veg = np.select([crop[2] < 1.5, crop[2] < 2.5], [VEG_CLASS_P[1], VEG_CLASS_P[2]], VEG_CLASS_P[3])
    p_veg = np.where(burnable, veg, -1.0)  # (1 + p_veg) = 0: nothing ignites there
    p_den = DEN_P_RANGE[0] + (DEN_P_RANGE[1] - DEN_P_RANGE[0]) * crop[3]
    return {
        "p_veg": torch.from_numpy(p_veg.astype(np.float32)),
        "p_den": torch.from_numpy(p_den.astype(np.float32)),
        "wind_velocity": torch.zeros(*size),
        "wind_towards_direction": torch.zeros(*size),
        "slope": torch.from_numpy(directional_slope(crop[0])),
        "initial_ignition": torch.from_numpy(ignition),
    }


def ignition_probability(p: torch.Tensor, burning: torch.Tensor) -> torch.Tensor:
    """The simulator's ignition rule: p_ignite [..., H, W] = 1 - prod over burning neighbours of
    (1 - p_propagate), for spread probabilities p [H, W, 3, 3] and burning [..., H, W] (float).

    Leading dimensions of ``burning`` are runs of an ensemble: each gets exactly (bit for bit) what
    a single simulation with that state gets, since the same operations run in the same order.
    """
    keep = torch.ones_like(burning)
    keep[..., :-1, :-1] *= 1 - p[:-1, :-1, 0, 0] * burning[..., 1:, 1:]
    keep[..., :-1, :] *= 1 - p[:-1, :, 0, 1] * burning[..., 1:, :]
    keep[..., :-1, 1:] *= 1 - p[:-1, 1:, 0, 2] * burning[..., 1:, :-1]
    keep[..., :, :-1] *= 1 - p[:, :-1, 1, 0] * burning[..., :, 1:]
    keep[..., :, 1:] *= 1 - p[:, 1:, 1, 2] * burning[..., :, :-1]
    keep[..., 1:, :-1] *= 1 - p[1:, :-1, 2, 0] * burning[..., :-1, 1:]
    keep[..., 1:, :] *= 1 - p[1:, :, 2, 1] * burning[..., :-1, :]
    keep[..., 1:, 1:] *= 1 - p[1:, 1:, 2, 2] * burning[..., :-1, :-1]
    return 1 - keep


@functools.cache
def _model_class() -> type:
    """PyTorchFire's model with the same p_ignite, computed about 3x faster (built on first use:
    the class derives from PyTorchFire's, which this module does not import at load time).

    The stock p_ignite rebuilds the burning-independent propagation probabilities [H, W, 3, 3]
    (slope, wind, vegetation terms) every step; they only change with the weather, so they are
    cached until ``set_weather``, and the neighbour product is :func:`ignition_probability`'s
    in-place slice products instead of a [H, W, 3, 3] scatter. compute(), the state update and the
    RNG draws are the package's own.
    """
    from pytorchfire import WildfireModel

    class CachedWildfireModel(WildfireModel):
        _p_propagate: torch.Tensor | None = None

        def set_weather(self, wind_speed: float, wind_towards_ccw_east: float) -> None:
            self.wind_velocity.fill_(wind_speed)
            self.wind_towards_direction.fill_(wind_towards_ccw_east)
            self._p_propagate = None

        def propagation(self) -> torch.Tensor:
            """The spread probabilities [H, W, 3, 3] under the current weather (cached)."""
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
            return self._p_propagate

        def p_ignite(self) -> torch.Tensor:
            p = self.propagation()
            return ignition_probability(p, self.state[0].to(p.dtype))

    return CachedWildfireModel


def fire_model(env: dict) -> WildfireModel:
    """The simulator on ``env`` with :data:`SIM_PARAMS`, in eval mode (no autograd accumulator).

    A PyTorchFire ``WildfireModel`` with two additions: ``set_weather(wind_speed,
    wind_towards_ccw_east)`` and ``propagation()`` (the spread probabilities under that weather).
    """
    params = {name: torch.tensor(float(v)) for name, v in SIM_PARAMS.items()}
    model = _model_class()(env_data=env, params=params)
    model.eval()
    return model


def propagation(env: dict, ws: float, wd: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The simulator's spread probabilities [H, W, 3, 3] on ``env`` under one weather row (wind
    speed ``ws``, meteorological direction ``wd``), and its p_continue."""
    model = fire_model(env)
    model.set_weather(float(ws), float(wd_to_towards_ccw_east(wd)))
    return model.propagation(), model.p_continue.detach()


@contextmanager
def isolated_torch() -> Iterator[None]:
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


def run_fire(env: dict, weather: dict, n_frames: int, steps_per_frame: int, torch_seed: int,
             states: list[np.ndarray] | None = None,
             on_step: Callable[[int, torch.Tensor], None] | None = None) -> list[np.ndarray] | None:
    """Cumulative masks for frames 0..n_frames-1, stopping early once nothing burns.

    None when the fire is out before frame 0. Must run inside :func:`isolated_torch` (the model
    seeds and draws from the global torch RNG). ``states``, when given, receives the full state
    [2, H, W] (burning, burned) at every frame; ``on_step(t, state)``, when given, sees the state
    after every step between frame t - 1 and frame t (the WSTS writer's "burning during the day").
    """
    model = fire_model(env)
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
            if on_step is not None:
                on_step(t + 1, model.state)
        frames.append(model.state.any(dim=0).numpy().copy())
        if states is not None:
            states.append(model.state.numpy().copy())
        if not model.state[0].any():
            break
    return frames


# ---------------------------------------------------------------------------------------------
# Sequences


@dataclass
class Sequence:
    """One simulated sequence of a data set."""

    window: tuple[int, int, int, int]  # y0, y1, x0, x1 (y1, x1 exclusive)
    weather: int  # 0-based index of the weather scenario
    frames: list[np.ndarray]  # cumulative fire masks, bool [size, size]
    env: dict | None = None  # the simulator's environment (recorded runs only)
    states: list[np.ndarray] | None = None  # simulator state [2, size, size] per frame (recorded runs)


def _frame_count(rng: np.random.Generator, max_frames: int) -> int:
    """Between 3 and max_frames, skewed toward long sequences (density grows linearly)."""
    lo = min(3, max_frames)
    return min(max_frames, lo + int((max_frames - lo + 1) * math.sqrt(rng.random())))


def simulate_sequence(w: World, k: int, record: bool = False) -> Sequence:
    """Simulate sequence k (1-based); redraw (deterministically) while the fire dies before it
    ever grows. Must run inside :func:`isolated_torch`.

    ``record``: also keep the simulator's environment and full state (burning, burned) at every
    frame (see :func:`replay`); the frames are the same either way.
    """
    for attempt in range(MAX_ATTEMPTS):
        seq = _try_sequence(np.random.default_rng([w.settings.entropy, 2, k, attempt]), w, record)
        if seq is not None and len(seq.frames) >= 2 and seq.frames[-1].sum() > seq.frames[0].sum():
            return seq
    if seq is None:  # pathological terrain: no burnable cell in any drawn window
        size = w.settings.size
        empty = np.zeros((size, size), dtype=bool)
        states = [np.zeros((2, size, size), dtype=bool)] * 2 if record else None
        return Sequence((0, size, 0, size), 0, [empty, empty], None, states)
    while len(seq.frames) < 2:
        seq.frames.append(seq.frames[-1].copy())
        if seq.states is not None:
            seq.states.append(seq.states[-1].copy())
    return seq


def _try_sequence(rng: np.random.Generator, w: World, record: bool = False) -> Sequence | None:
    size, n = w.settings.size, w.raster.shape[1]
    y0, x0 = (int(v) for v in rng.integers(0, n - size + 1, size=2))
    crop = w.raster[:, y0 : y0 + size, x0 : x0 + size]
    weather_idx = int(rng.integers(len(w.weathers)))
    weather = w.weathers[weather_idx]
    n_frames = _frame_count(rng, w.settings.max_frames)

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

    env = environment(crop, ignition)
    states: list[np.ndarray] | None = [] if record else None
    frames = run_fire(env, weather, n_frames, w.settings.steps_per_frame, torch_seed, states)
    if frames is None:
        return None
    return Sequence((y0, y0 + size, x0, x0 + size), weather_idx, frames,
                    env if record else None, states)


# ---------------------------------------------------------------------------------------------
# Replay


@dataclass
class Replay:
    """One generated sequence re-simulated with everything the simulator had (see :func:`replay`)."""

    seq_id: int
    env: dict  # p_veg, p_den, slope, ... as given to the simulator (torch tensors)
    weather: dict  # the scenario's columns (WS, WD, ...), row t = frame t
    states: np.ndarray  # bool [frames, 2, H, W]: burning, burned at each frame
    steps_per_frame: int


def replay(seq_ids: Iterable[int], *, num_sequences: int, size: int, max_frames: int,
           steps_per_frame: int, seed: int) -> dict[int, Replay]:
    """Re-simulate sequences ``seq_ids`` (1-based, as in the layout) of the built-in data set with
    these settings; return the simulator's full state at every frame.

    Generation is a pure function of the settings, so this reproduces exactly the frames that
    :func:`emberformer.data.synthetic.generate` wrote (``states.any(1)`` equals them) and also
    recovers what the masks do not show: which cells still burn and which have burned out.
    """
    s = Settings.checked(num_sequences, size, max_frames, steps_per_frame, seed)
    w = world(s)
    out: dict[int, Replay] = {}
    with isolated_torch():
        for k in seq_ids:
            if not 1 <= int(k) <= s.num_sequences:
                raise ValueError(f"sequence {k}: the data set has sequences 1..{s.num_sequences}")
            seq = simulate_sequence(w, int(k), record=True)
            env = seq.env if seq.env is not None else environment(  # nothing burnable
                np.zeros((6, s.size, s.size), dtype=np.float32), np.zeros((s.size, s.size), dtype=bool))
            assert seq.states is not None
            out[int(k)] = Replay(int(k), env, w.weathers[seq.weather], np.stack(seq.states), s.steps_per_frame)
    return out
