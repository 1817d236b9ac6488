"""`python -m emberformer.bench` (table, data_loader) and scripts/gpu_check.sh, on CPU with tiny settings."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import one_line_error, run_app, run_module
from emberformer.bench.batch_table import MemoryMeter, format_table, largest_fitting, measure_batch_sizes

REPO = Path(__file__).resolve().parents[1]
BENCH_BASE = ["debug=fast", "data.progress=false"]
TABLE = [*BENCH_BASE, "bench.batch_sizes=[2,4]", "bench.steps=2", "bench.warmup=1"]


@pytest.fixture(scope="module")
def env(run_env) -> dict[str, str]:
    # one intra-op thread: on a small shared CPU, torch's thread pool fighting other jobs makes
    # tiny steps 10x slower; the tests check what is printed, not how fast it is
    return dict(run_env, OMP_NUM_THREADS="1")


def run_bench(args: list[str], env: dict, cwd: Path, timeout: int = 180) -> subprocess.CompletedProcess:
    """The benchmark in a real process: its timings are its own (one thread, no test process around)."""
    return run_module("bench", args, env, cwd, timeout=timeout)


def table_rows(text: str) -> list[list[str]]:
    """Cells of the table's body rows, bold markers removed."""
    rows = []
    for line in text.splitlines():
        if re.match(r"^\| \**\d+\** \|", line):
            rows.append([c.strip().replace("**", "") for c in line.strip().strip("|").split("|")])
    return rows


@pytest.fixture(scope="module")
def table_run(tmp_path_factory, env):
    cwd = tmp_path_factory.mktemp("bench")
    proc = run_bench(TABLE, env, cwd)
    dirs = [p for p in (cwd / "outputs" / "bench").glob("*/*") if p.is_dir()]
    return proc, dirs


@pytest.mark.slow
def test_table_rows_one_per_batch_size(table_run):
    proc, _ = table_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    head = out.splitlines()[0]
    assert head.startswith("Device: cpu (CPU), fp32 | Model: EmberFormer") and "parameters" in head
    assert "Data: 40 x 40" in head
    assert "| Batch Size | Memory | Time/Step | Samples/s | Data wait | Time/Epoch |" in out
    rows = table_rows(out)
    assert [int(r[0]) for r in rows] == [2, 4]
    for bs, mem, step, sps, wait, epoch in rows:
        assert re.fullmatch(r"\d+(\.\d+)?(GB|MB)", mem), mem
        assert re.fullmatch(r"\d+\.\d+ s", step) and float(step.split()[0]) > 0, step
        assert float(sps) > 0
        assert re.fullmatch(r"\d+%", wait) and 0 <= int(wait[:-1]) <= 100, wait
        assert re.match(r"\d+(\.\d+)? (s|min|h)", epoch), epoch
    assert "✓ largest that fits" in rows[1][5] and "✓" not in rows[0][5]
    assert re.search(r"^\| \*\*4\*\* \|", out, re.M)  # the marked row is bold, as in the reference guide
    assert "Largest batch size that fits: 4" in out


@pytest.mark.slow
def test_table_written_to_the_run_folder(table_run):
    proc, dirs = table_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(dirs) == 1, dirs
    md = (dirs[0] / "bench_table.md").read_text()
    assert [int(r[0]) for r in table_rows(md)] == [2, 4]
    assert "✓ largest that fits" in md and "Device: cpu" in md
    data = json.loads((dirs[0] / "bench_table.json").read_text())
    assert data["largest_fitting"] == 4 and [r["status"] for r in data["rows"]] == ["ok", "ok"]
    assert all(0 <= r["data_wait"] <= 1 for r in data["rows"])


def fake_prepare(oom_at: set[int], calls: list[int], error: type[BaseException] = torch.OutOfMemoryError,
                 message: str = "CUDA out of memory. Tried to allocate 2.00 GiB"):
    """A real (tiny) training step that raises an out-of-memory error at some batch sizes."""
    def prepare(bs: int):
        model = torch.nn.Linear(4, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)

        def step(batch: torch.Tensor) -> int:
            calls.append(bs)
            loss = model(batch).pow(2).mean()
            if bs in oom_at:
                raise error(message)
            opt.zero_grad()
            loss.backward()
            opt.step()
            return batch.shape[0]

        def batches():
            while True:
                yield torch.randn(bs, 4)
        return step, batches()
    return prepare


def test_out_of_memory_becomes_a_row_and_later_sizes_still_run():
    calls: list[int] = []
    rows = measure_batch_sizes([2, 4, 8], fake_prepare({4}, calls), warmup=1, steps=2,
                               meter=MemoryMeter(torch.device("cpu")), train_samples=100)
    assert [r.status for r in rows] == ["ok", "oom", "ok"]
    assert calls.count(4) == 1 and calls.count(8) == 3  # 8 ran its warm-up and both steps
    assert rows[2].samples_per_s > 0 and rows[2].step_s > 0
    assert largest_fitting(rows).batch_size == 8
    table = format_table(rows)
    assert "| 4 | - | - | - | - | OOM ❌ |" in table
    assert table[-1].startswith("| **8** |") and "✓ largest that fits" in table[-1]


def test_runtime_error_out_of_memory_is_oom_and_other_errors_propagate():
    rows = measure_batch_sizes([2, 4], fake_prepare({2}, [], RuntimeError, "CUDA error: out of memory"),
                               warmup=0, steps=1, meter=MemoryMeter(torch.device("cpu")), train_samples=10)
    assert [r.status for r in rows] == ["oom", "ok"]
    with pytest.raises(RuntimeError, match="shape mismatch"):
        measure_batch_sizes([2], fake_prepare({2}, [], RuntimeError, "shape mismatch"),
                            warmup=0, steps=1, meter=MemoryMeter(torch.device("cpu")), train_samples=10)


def test_peak_over_max_memory_gb_does_not_fit():
    rows = measure_batch_sizes([2, 4], fake_prepare(set(), []), warmup=0, steps=1,
                               meter=MemoryMeter(torch.device("cpu")), train_samples=10, max_memory_gb=1e-6)
    assert [r.status for r in rows] == ["over_limit", "over_limit"] and largest_fitting(rows) is None
    table = format_table(rows, limit_gb=1e-6)
    assert all("OOM ❌" in line for line in table[2:]) and not any("✓" in line for line in table)


def test_bad_bench_value_is_one_line_exit_2(tmp_path):
    proc = run_app("bench", [*BENCH_BASE, "bench.steps=0"], tmp_path)
    assert one_line_error(proc) == "Error: bench.steps must be an integer >= 1, got 0"


@pytest.mark.slow
def test_data_loader_bench_prints_speedup_last(tmp_path, env):
    proc = run_bench([*BENCH_BASE, "bench=data_loader", "bench.batches=30", "bench.batch_size=4"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.rstrip().splitlines()
    assert re.fullmatch(r"speedup: \d+\.\dx", lines[-1]), lines[-1]
    # the printed ratio is the table's (cached / PNG samples/s, 1 worker); its size is timing,
    # which is the benchmark's to report, not a test's to assert
    cached = float(re.search(r"^\| cached \(FireSamples, memory maps\) \| 1 \| ([\d.]+) \|", proc.stdout, re.M)[1])
    png = float(re.search(r"^\| PNG decode per sample \| 1 \| ([\d.]+) \|", proc.stdout, re.M)[1])
    assert float(lines[-1].split()[1][:-1]) == pytest.approx(cached / png, abs=0.06)
    assert re.search(r"^\| PNG decode per sample \| 2 \| [\d.]+ \|", proc.stdout, re.M)  # 2 workers: CPU default
    assert "speedup with 2 workers: " in proc.stdout
    md = next((tmp_path / "outputs" / "bench").glob("*/*/bench_data_loader.md")).read_text()
    assert md.rstrip().splitlines()[-1] == lines[-1]


@pytest.mark.slow
def test_gpu_check_script_on_cpu(tmp_path, env):
    results = tmp_path / "results"
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_check.sh"), str(results), "cpu", "trainer.limit_batches=2"],
        cwd=tmp_path, env={**env, "BENCH_OVERRIDES": "bench.steps=1 bench.warmup=0"},
        capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name in ("bench_table.md", "bench_console.log", "train_console.log", "nvidia-smi.txt", "env.txt",
                 "timings.txt", "train_metrics.jsonl"):
        assert (results / name).is_file(), name
    assert [int(r[0]) for r in table_rows((results / "bench_table.md").read_text())] == [2, 4]
    log = (results / "train_console.log").read_text()
    assert "Starting Training: 1 epochs" in log and "Training complete!" in log
    assert "bench.steps=1" in (results / "bench_console.log").read_text().splitlines()[0]
    assert (results / "nvidia-smi.txt").read_text().strip()
    timings = (results / "timings.txt").read_text()
    assert "bench: 0 exit status" in timings and "train: 0 exit status" in timings
    assert not (results / "train_run" / "checkpoints").exists()
