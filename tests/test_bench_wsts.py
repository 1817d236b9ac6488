"""`python -m emberformer.bench bench=wsts_loader` (issue 19, deliverable 5) on a tiny built-in
simulated set: the row of each loader (the project's, GeoTIFF decode per access, HDF5 read per
access) with samples/s, and the speedup line last; what it prints is also written to the run folder."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import loader_bench_rates

TINY = ["bench=wsts_loader", "bench.batches=2", "bench.batch_size=2", "hardware=cpu", "data.progress=false",
        "data.crop_size=32", "data.simulated.fires_per_year=2", "data.simulated.min_size=32",
        "data.simulated.max_size=40", "data.simulated.min_days=4", "data.simulated.max_days=5"]
ROWS = ("project loader (decoded cache, memory maps)", "GeoTIFF decode per access (tifffile)",
        "HDF5 read per access (h5py)")


def test_the_wsts_loader_bench_prints_its_rows_and_the_speedup(tmp_path):
    env = dict(os.environ, EMBERFORMER_CACHE=str(tmp_path / "cache"), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "emberformer.bench", *TINY], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    loader_bench_rates(proc.stdout, ROWS, r"speedup: ([\d.]+)x over GeoTIFF decode per access, "
                       r"([\d.]+)x over HDF5 read per access")
    run_dir = next((tmp_path / "outputs" / "bench").glob("*/*"))
    assert "speedup:" in (run_dir / "bench_wsts_loader.md").read_text()
    data = json.loads((run_dir / "bench_wsts_loader.json").read_text())
    assert [r["dataset"] for r in data["results"]] == list(ROWS)
    for r in data["results"]:      # three rounds (bench.repeats), the table gives each path's median
        assert len(r["runs"]) == 3 and r["samples_per_s"] == sorted(r["runs"])[1]
        assert f"{r['dataset']} " + ", ".join(f"{v:.1f}" for v in r["runs"]) in proc.stdout
    assert not list(run_dir.glob("hdf5-*"))  # the HDF5 copy is the bench's temporary data


def test_the_wsts_loader_bench_refuses_an_hdf5_root_in_one_line(tmp_path):
    import h5py
    import numpy as np

    for y in (2018, 2019, 2020, 2021):
        (tmp_path / "root" / str(y)).mkdir(parents=True)
        with h5py.File(tmp_path / "root" / str(y) / f"fire_{y}.hdf5", "w") as f:
            f.create_dataset("data", data=np.zeros((3, 23, 8, 8), np.float32))
    env = dict(os.environ, EMBERFORMER_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "emberformer.bench", *TINY, f"data.root={tmp_path / 'root'}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("Error: bench=wsts_loader needs the GeoTIFF layout")
