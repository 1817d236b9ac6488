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
    data: Any


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
    return LoaderBench(run_dir, loader_kw, batches, bs, data)


def measure(bench: LoaderBench, paths: Sequence[tuple[str, Dataset, Callable]], order: list[int]) -> list[dict]:
    """Samples/s of each (name, data set, collate) path over ``order`` with one worker, in turn."""
    results = []
    for name, ds, collate_fn in paths:
        r = loader_rate(ds, order, bench.batch_size, WORKERS, bool(bench.loader_kw["pin_memory"]), collate_fn,
                        count_key="fire_id")
        results.append({"dataset": name, "workers": WORKERS, **r})
        print(f"  {name}: {r['samples_per_s']:.1f} samples/s", file=sys.stderr, flush=True)
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
    lines = ["", *table, "", summary]
    print("\n".join(lines), flush=True)
    (bench.run_dir / f"bench_{kind}.md").write_text(
        "\n".join([f"# {label} data loader benchmark", "", header, *lines, ""]))
    (bench.run_dir / f"bench_{kind}.json").write_text(json.dumps(
        {"header": header, "batch_size": bench.batch_size, "batches": bench.batches, "results": results,
         "speedup": speedup}, indent=1))
