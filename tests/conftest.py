"""Shared test settings and helpers: a private data cache, offline and silent W&B, configs
composed in-process, and the apps run as a user runs them (a subprocess).

Tests marked ``slow`` run a training job, a sweep or an app end to end; ``python -m pytest -m
"not slow"`` is the quick loop, ``python -m pytest`` runs everything.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"


def compose_config(*overrides: str, config_name: str = "train") -> DictConfig:
    """The config ``python -m emberformer.<app> OVERRIDES`` would run with (no Hydra run folder)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The single ``Error: …`` line of a run that stopped on a user mistake (exit code 2)."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One synthetic-data cache for the whole session, so tiny data sets are generated once."""
    return tmp_path_factory.mktemp("efcache")


@pytest.fixture
def tiny_cfg(cache_dir) -> Callable[..., DictConfig]:
    """``tiny_cfg(*overrides)``: the ``debug=fast`` config on the session cache, without W&B."""
    def make(*overrides: str) -> DictConfig:
        return compose_config("debug=fast", "logger=none", f"data.cache_dir={cache_dir}", *overrides)
    return make


@pytest.fixture
def run_env(cache_dir, tmp_path) -> dict[str, str]:
    """Environment for a subprocess run: private cache, offline W&B, no network."""
    env = dict(os.environ)
    env.update({"EMBERFORMER_CACHE": str(cache_dir), "WANDB_MODE": "offline", "WANDB_SILENT": "true",
                "WANDB_DIR": str(tmp_path), "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache"),
                "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"), "HF_HUB_OFFLINE": "1",
                "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"})
    return env


def run_module(module: str, args: list[str], env: dict, cwd: Path,
               timeout: int = 240) -> subprocess.CompletedProcess:
    """``python -m emberformer.<module> ARGS`` in ``cwd``, output captured."""
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run([sys.executable, "-m", f"emberformer.{module}", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that runs an app in a subprocess (it uses ``run_env`` or a module's ``env``) is ``slow``."""
    for item in items:
        if {"run_env", "env"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
