"""What the one-worker loader benches (``bench=wsts_loader``, ``bench=ndws_loader``) share: the
data module they measure, the timing of each path and the report (a table of samples/s and the
project loader's speedup, printed and written as ``bench_<kind>.md`` and ``.json``)."""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import Dataset

from emberformer.bench.data_loader import batches_and_size, loader_rate
from emberformer.cli.run_folder import run_folder

WORKERS = 1


@dataclass
class LoaderBench:
    """A loader bench's run folder, loader settings, batch count and size, and its set-up data module."""

    run_dir: Path
    loader_kw: dict
    batches: int
    batch_size: int
    repeats: int
    data: Any

    @property
    def timing(self) -> str:
        """How each path is timed, for the header."""
        return (f"{WORKERS} worker, 1 warm-up + {self.batches} measured batches, the median of {self.repeats} "
                f"round(s) (every path once a round, in turn)")


def set_up(cfg: DictConfig, kind: str, data_name: str, marker: str) -> LoaderBench:
    """Build and set up ``cfg.data``; a data module without the attribute ``marker`` is not
    ``data=<data_name>``, which ``bench=<kind>`` measures (ValueError naming both)."""
    run_dir = run_folder()
    hw = instantiate(cfg.hardware)
    loader_kw = hw.loader_settings()
    batches, bs = batches_and_size(cfg.bench, loader_kw["batch_size"])
    data = instantiate(cfg.data, **loader_kw)
    if not hasattr(data, marker):
        raise ValueError(f"bench={kind} measures data={data_name} (it sets it): drop the data= override")
    data.setup()
    repeats = int(cfg.bench.repeats)
    if repeats < 1:
        raise ValueError(f"bench.repeats must be at least 1, got {repeats}")
    return LoaderBench(run_dir, loader_kw, batches, bs, repeats, data)


def measure(bench: LoaderBench, paths: Sequence[tuple[str, Dataset, Callable]], order: list[int],
            received: Callable[[dict], dict] | None = None) -> list[dict]:
    """Samples/s of each (name, data set, collate) path over ``order`` with one worker: every path
    once a round, ``bench.repeats`` rounds, so a burst of load on the machine falls on all of them;
    each path's median round, with every round's samples/s (``runs``). ``received``: what the
    trainer's process does with each of the first path's batches besides the device-side work
    (handing a reusable buffer back to the worker), timed with it."""
    runs: dict[str, list[dict]] = {name: [] for name, _, _ in paths}
    for _ in range(bench.repeats):
        for j, (name, ds, collate_fn) in enumerate(paths):
            r = loader_rate(ds, order, bench.batch_size, WORKERS, bool(bench.loader_kw["pin_memory"]), collate_fn,
                            finish=received if j == 0 else None, count_key="fire_id")
            runs[name].append(r)
            print(f"  {name}: {r['samples_per_s']:.1f} samples/s", file=sys.stderr, flush=True)
    results = []
    for name, rs in runs.items():
        median = sorted(rs, key=lambda r: r["samples_per_s"])[(len(rs) - 1) // 2]
        results.append({"dataset": name, "workers": WORKERS, **median, "runs": [r["samples_per_s"] for r in rs]})
    return results


def speedups(results: list[dict]) -> dict[str, float]:
    """The first (the project's) path's speedup over each path, by name."""
    ours = results[0]["samples_per_s"]
    return {r["dataset"]: ours / r["samples_per_s"] for r in results}


def report(bench: LoaderBench, kind: str, label: str, header: str, results: list[dict], summary: str,
           speedup: dict[str, float]) -> None:
    """Print the table (``label``: "WSTS") and ``summary``; write ``bench_<kind>.md`` and ``.json``."""
    by_name = speedups(results)
    table = [f"| {label} dataset | Workers | Samples/s | Time/batch | Project loader's speedup |",
             f"|{'-' * (len(label) + 10)}|---------|-----------|------------|--------------------------|"]
    table += [f"| {r['dataset']} | {WORKERS} | {r['samples_per_s']:.1f} | {1000 * r['batch_s']:.1f} ms | "
              f"{by_name[r['dataset']]:.1f}x |" for r in results]
    rounds = "samples/s per round: " + "; ".join(
        f"{r['dataset']} " + ", ".join(f"{v:.1f}" for v in r["runs"]) for r in results)
    lines = ["", *table, "", *([rounds] if bench.repeats > 1 else []), summary]
    print("\n".join(lines), flush=True)
    (bench.run_dir / f"bench_{kind}.md").write_text(
        "\n".join([f"# {label} data loader benchmark", "", header, *lines, ""]))
    (bench.run_dir / f"bench_{kind}.json").write_text(json.dumps(
        {"header": header, "batch_size": bench.batch_size, "batches": bench.batches, "repeats": bench.repeats,
         "results": results,
         "speedup": speedup}, indent=1))
