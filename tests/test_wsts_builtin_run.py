"""experiment=wsts out of the box (issue 19): on the built-in simulated set (no data.root) the run
ends with the simulator ceiling on the test split beside best.pt and copy-last, and the share of
the copy-last -> ceiling gap closed in test AP, the benchmark's metric; on a real root, with the
same ceiling.samples, one line says there is no simulator and no ceiling or gap line follows."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from conftest import run_module
from emberformer.scoring.ceiling import NO_SIMULATOR
from test_wsts_training import TINY_MODEL, write_root

# a smaller built-in set than the default (2 fires a year, 32-40 px, 4-5 days): seconds, not minutes
TINY_SET = ["data.simulated.fires_per_year=2", "data.simulated.min_size=32", "data.simulated.max_size=40",
            "data.simulated.min_days=4", "data.simulated.max_days=5"]
COMMON = ["experiment=wsts", "logger=none", "hardware=cpu", "hardware.batch_size=4", "data.crop_size=32",
          "trainer.epochs=1", "trainer.progress=false", "data.progress=false", "trainer.preview_samples=0",
          "ceiling.samples=4", *TINY_MODEL]


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    out = dict(os.environ)
    out.update({"EMBERFORMER_CACHE": str(tmp_path_factory.mktemp("wsts_builtin_cache")), "WANDB_MODE": "offline",
                "WANDB_SILENT": "true", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"})
    return out


def row(out: str, label: str) -> dict[str, float]:
    """The closing block's row ``label`` as {metric: value}."""
    m = re.search(rf"^  {re.escape(label)}\s+(.*)$", out, re.M)
    assert m, f"no row {label!r} in:\n{out}"
    return {k: float(v) for k, v in re.findall(r"(\w+)=([-\d.]+)", m.group(1))}


def test_the_builtin_run_ends_with_the_ceiling_and_the_ap_gap(env, tmp_path):
    run_dir = tmp_path / "run"
    proc = run_module("train", [*COMMON, *TINY_SET, f"hydra.run.dir={run_dir}"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert NO_SIMULATOR not in out
    model, copy, ceil = row(out, "test (best.pt)"), row(out, "copy-last test"), row(out, "ceiling test")
    assert list(ceil)[0] == "ap"  # AP leads every row on WSTS
    assert ceil["ap"] > copy["ap"] and ceil["f1"] > copy["f1"]
    m = re.search(r"^  gap closed: (-?[\d.]+)% of copy-last -> ceiling test AP", out, re.M)
    assert m, out
    gap = 100 * (model["ap"] - copy["ap"]) / (ceil["ap"] - copy["ap"])
    assert float(m.group(1)) == pytest.approx(gap, abs=0.1 + 100 * 1e-4 / (ceil["ap"] - copy["ap"]))


def test_a_real_root_has_no_ceiling_line(env, tmp_path):
    root = write_root(tmp_path / "wsts")
    proc = run_module("train", [*COMMON, f"data.root={root}", f"hydra.run.dir={tmp_path / 'run'}"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert out.count(NO_SIMULATOR) == 1
    assert "Traceback" not in proc.stderr
    assert row(out, "test (best.pt)") and row(out, "copy-last test")
    assert "ceiling test" not in out and "gap closed" not in out
