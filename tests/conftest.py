"""Shared test settings: a private data cache and offline, silent W&B for every test."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One synthetic-data cache for the whole session, so tiny data sets are generated once."""
    return tmp_path_factory.mktemp("efcache")


@pytest.fixture
def run_env(cache_dir, tmp_path) -> dict[str, str]:
    """Environment for a subprocess run: private cache, offline W&B, no network."""
    env = dict(os.environ)
    env.update({"EMBERFORMER_CACHE": str(cache_dir), "WANDB_MODE": "offline", "WANDB_SILENT": "true",
                "WANDB_DIR": str(tmp_path), "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache"),
                "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"), "HF_HUB_OFFLINE": "1",
                "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"})
    return env
