"""``python -m emberformer.bench bench=ndws_loader`` (issue 20, deliverable 6) on TFRecords written
with the tfrecord package: the row of each loader (the project's, parsing the TFRecords per
access) with samples/s, the speedup line last, both written to the run folder."""
from __future__ import annotations

import json

import pytest

from conftest import loader_bench_rates, run_app
from test_ndws_records import write_root

ROWS = ("project loader (decoded cache, memory maps)", "TFRecord parse per access (tfrecord)")


@pytest.mark.slow
def test_the_ndws_loader_bench_prints_its_rows_and_the_speedup(tmp_path):
    root = tmp_path / "files"
    write_root(root, {"train_00": 6, "train_01": 6, "eval_00": 1})
    proc = run_app("bench", ["bench=ndws_loader", "bench.batches=2", "bench.batch_size=2", "hardware=cpu",
                             "data.progress=false", f"data.root={root}", f"data.cache_dir={tmp_path / 'c'}",
                             "data.augment.flip_rotate=true"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    loader_bench_rates(proc.stdout, ROWS, r"speedup: ([\d.]+)x over parsing the TFRecords per access")
    run_dir = next((tmp_path / "outputs" / "bench").glob("*/*"))
    assert "speedup:" in (run_dir / "bench_ndws_loader.md").read_text()
    assert [r["dataset"] for r in json.loads((run_dir / "bench_ndws_loader.json").read_text())["results"]] == list(ROWS)
