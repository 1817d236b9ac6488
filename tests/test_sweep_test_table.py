"""The test-score table that ends a multirun (issue 19): one row per job in job order, the
monitored metric first, mean +- sample std over the jobs, failed jobs and jobs without a test
pass left out, the same numbers in test_scores.csv. Written from result.json files on disk."""
from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

from emberformer.sweeps.summary import TEST_METRICS, write_test_table


def job(sweep: Path, n: int, status: str = "ok", test: bool = True) -> dict:
    scores = {"model": {k: 0.1 + 0.01 * n + 0.001 * i for i, k in enumerate(TEST_METRICS)},
              "copy_last": {k: 0.05 + 0.002 * n for k in TEST_METRICS}}
    rec = {"status": status, "overrides": f"experiment=wsts data.root=/d data.fold={n}",
           "run_dir": str(sweep / str(n))}
    if test:
        rec["test"] = scores
    (sweep / str(n)).mkdir(parents=True)
    (sweep / str(n) / "result.json").write_text(json.dumps(rec))
    return scores


def test_twelve_folds_in_order_with_mean_and_std(tmp_path):
    scores = {n: job(tmp_path, n) for n in range(12)}
    job(tmp_path, 12, status="failed")
    job(tmp_path, 13, test=False)  # evaluate_test=false: no test pass
    text = write_test_table(tmp_path, "val/ap")
    lines = text.splitlines()
    assert lines[0].startswith("Test scores of 12 job(s)")
    assert lines[1].split() == ["job", "test", "ap", "copy-last", "ap", "test", "f1", "copy-last", "f1",
                                "test", "iou", "copy-last", "iou", "test", "prec", "copy-last", "prec",
                                "test", "rec", "copy-last", "rec"]
    rows = lines[2:14]
    assert [r.split()[0] for r in rows] == [f"data.fold={n}" for n in range(12)]  # 2 before 10
    assert rows[10].split()[1:3] == [f"{scores[10]['model']['ap']:.4f}", f"{scores[10]['copy_last']['ap']:.4f}"]
    aps = [scores[n]["model"]["ap"] for n in range(12)]
    mean = lines[14].split()
    assert mean[:6] == ["mean", "+-", "std", f"{statistics.mean(aps):.4f}", "+-", f"{statistics.stdev(aps):.4f}"]
    with open(tmp_path / "test_scores.csv") as f:
        table = list(csv.reader(f))
    assert table[0][:3] == ["job", "test_ap", "copy_last_ap"] and len(table) == 1 + 12 + 2
    assert table[-1][0] == "std" and abs(float(table[-1][1]) - statistics.stdev(aps)) < 1e-12


def test_the_monitored_metric_leads_and_one_job_has_no_std(tmp_path):
    job(tmp_path, 0)
    text = write_test_table(tmp_path, "val/f1")
    lines = text.splitlines()
    assert lines[1].split()[1:5] == ["test", "f1", "copy-last", "f1"]
    assert lines[-1].split()[3:5] == ["0.1010", "0.0500"]  # a mean, no std of one value
    empty = tmp_path / "none"
    empty.mkdir()
    assert write_test_table(empty) is None
