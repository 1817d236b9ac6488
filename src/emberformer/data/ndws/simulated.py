"""The built-in Next Day Wildfire Spread-form data set: simulator fires written as the published TFRecords.

``data=ndws`` with ``data.root: null`` trains on this set, read by the same reader
(:mod:`~emberformer.data.ndws.records`) that serves the real files, so a fresh machine runs the
benchmark's pipeline with no download. Each of the 19 published file names
(``next_day_wildfire_spread_{train_00..14, eval_00, 01, test_00, 01}.tfrecord``) holds
``fires_per_file`` fires of ``days`` days on 64 x 64 px, one fire's samples in one file (so no fire
is in two splits). A fire is a PyTorchFire run of the built-in WildfireSpreadTS set
(:mod:`emberformer.data.wsts.simulated`: its terrain, weather and bands); consecutive days t, t+1
give one record: ``PrevFireMask`` = fire burning during day t, ``FireMask`` = during day t + 1,
the covariates day t's bands in the published units (population, which the simulator has none
of, drawn). Up to ``clouds`` cloud blobs a record set ``FireMask`` (and rarely ``PrevFireMask``)
to -1, as the published files mark uncertain pixels. Records are written with the ``tfrecord``
package's own writer. Everything is a pure function of the settings and seed; the set is written
once into the cache folder (built aside, published whole) and reused while they are unchanged.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from tfrecord.writer import TFRecordWriter
from tqdm.auto import tqdm

from emberformer.data import builtin_set, integer_setting, simulator
from emberformer.data.ndws import records
from emberformer.data.synthetic import GENERATOR_VERSION as SIMULATOR_VERSION
from emberformer.data.wsts import simulated as wsts_simulated

GENERATOR_VERSION = 1  # bump when what this module writes changes
PREFIX = "ndws-simulated-"
SETTINGS_FILE = builtin_set.SETTINGS_FILE
TEMP_NAMES = r"\.ndws-simulated-[0-9a-f]+\.(?P<pid>\d+)-[0-9a-f]+\.tmp|\.ndws-simulated-[0-9a-f]+\.old(?P<pid2>\d+)-[0-9a-f]+"
#: the published covariates <- bands of the built-in WSTS set (wsts/simulated.py's UNITS)
BANDS = {"elevation": 14, "th": 7, "vs": 6, "tmmn": 8, "tmmx": 9, "sph": 11, "pr": 5, "pdsi": 15,
         "NDVI": 3, "erc": 10}
FIRST_YEAR = 2012  # the published fires are of 2012-2020
FILES = tuple(part for parts in records.SPLIT_FILES.values() for part in parts)


@dataclass(frozen=True)
class SimulatedSettings:
    """The settings the built-in set is a pure function of (the ``data.simulated.*`` keys)."""

    fires_per_file: int
    days: int
    steps_per_day: int
    clouds: int
    seed: int

    @classmethod
    def checked(cls, values: Mapping[str, Any]) -> "SimulatedSettings":
        """Every key present and an integer in range, none unknown (one line naming the key)."""
        names = list(cls.__dataclass_fields__)
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ValueError(f"data.simulated.{unknown[0]} is not a setting of the built-in NDWS set; "
                             f"its settings: {', '.join(names)}")
        minimum = {"fires_per_file": 1, "days": 2, "steps_per_day": 1, "clouds": 0, "seed": None}
        out = {}
        for name in names:
            if name not in values:
                raise ValueError(f"data.simulated.{name} is missing (conf/data/ndws.yaml sets every key: "
                                 f"{', '.join(names)})")
            out[name] = integer_setting.checked(f"data.simulated.{name}", values[name], minimum[name])
        return cls(**out)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @property
    def key(self) -> str:
        record = {"ndws_simulated_version": GENERATOR_VERSION, "wsts_simulated_version": wsts_simulated.GENERATOR_VERSION,
                  "simulator_version": SIMULATOR_VERSION, **self.as_dict()}
        return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:12]

    def fire_settings(self) -> wsts_simulated.SimulatedSettings:
        """The built-in WSTS set's settings that draw this set's fires (64 px, ``days`` days)."""
        return wsts_simulated.SimulatedSettings(self.fires_per_file, records.SIZE, records.SIZE, self.days,
                                                self.days, self.steps_per_day, self.seed)


def clouds(rng: np.random.Generator, n: int) -> np.ndarray:
    """bool [64, 64]: up to ``n`` elliptic blobs of 3-12 px radius (the pixels made uncertain)."""
    yy, xx = np.mgrid[:records.SIZE, :records.SIZE]
    out = np.zeros((records.SIZE, records.SIZE), bool)
    for _ in range(int(rng.integers(0, n + 1))):
        cy, cx = rng.uniform(0, records.SIZE, 2)
        ry, rx = rng.uniform(3, 12, 2)
        out |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    return out


def fire_records(s: SimulatedSettings, world: simulator.World, year: int, k: int) -> list[dict[str, np.ndarray]]:
    """Fire k of the file whose world is ``year``'s as its ``days - 1`` records {feature: float32 [64, 64]}."""
    fs = s.fire_settings()
    fire = wsts_simulated.simulate_fire(fs, world, year, k)
    bands = wsts_simulated.fire_bands(fs, world, fire)
    rng = np.random.default_rng([s.seed % 2**64, year, k, 7_000_001])
    population = rng.lognormal(1.0, 1.5) * np.exp(rng.normal(0, 1.0, (records.SIZE, records.SIZE)))
    out = []
    for t in range(fire.days - 1):
        rec = {name: bands[t, b] for name, b in BANDS.items()}
        rec["population"] = population
        prev = fire.active[t].astype(np.float32)
        target = fire.active[t + 1].astype(np.float32)
        target[clouds(rng, s.clouds)] = -1.0
        if rng.random() < 0.2:
            prev[clouds(rng, 1)] = -1.0
        rec["PrevFireMask"], rec["FireMask"] = prev, target
        out.append({n: np.asarray(rec[n], np.float32) for n in records.FEATURES})
    return out


def generate(root: str | Path, s: SimulatedSettings, progress: bool = True) -> Path:
    """Write the 19 files under ``root`` and return ``root``."""
    root = Path(root)
    with simulator.isolated_torch():
        for file_no, part in enumerate(tqdm(FILES, desc="Simulating the built-in NDWS set", disable=not progress,
                                            unit="file")):
            year = FIRST_YEAR + file_no  # each file: its own terrain and weather (a "year" of the WSTS set)
            world = wsts_simulated.year_world(s.fire_settings(), year)
            writer = TFRecordWriter(str(root / records.file_name(part)))
            try:
                for k in range(1, s.fires_per_file + 1):
                    for rec in fire_records(s, world, year, k):
                        writer.write({n: (v.ravel().tolist(), "float") for n, v in rec.items()})
            finally:
                writer.close()
    return root


def ensure_simulated(cache_dir: str | Path, settings: Mapping[str, Any], progress: bool = True) -> Path:
    """The folder of the built-in set with these settings under ``cache_dir``, written once
    (aside, renamed into place whole with ``settings.json`` listing every file, under a lock)."""
    s = SimulatedSettings.checked(settings)
    record = {"ndws_simulated_version": GENERATOR_VERSION, **s.as_dict(), "key": s.key}
    return builtin_set.write_once(Path(cache_dir).expanduser(), f"{PREFIX}{s.key}", "the built-in NDWS set", TEMP_NAMES,
                                  lambda tmp: generate(tmp, s, progress), record)


def describe(root: Path) -> str:
    """One line for the log: what the built-in set is and where it lies."""
    rec = json.loads((Path(root) / SETTINGS_FILE).read_text())
    per_file = rec["fires_per_file"] * (rec["days"] - 1)
    return (f"Data: the built-in simulated Next Day Wildfire Spread set (no download; not real fires): "
            f"{len(FILES)} files x {per_file} records of 64 x 64 px (15 train, 2 eval, 2 test files), at {root}")
