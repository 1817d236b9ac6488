"""``bench=ndws_loader``: samples/s of the project's Next Day Wildfire Spread loader (slices of the
decoded cache's memory maps) against parsing the sample's TFRecord on every access (seek, read,
CRC check, protobuf parse: what a loader without a decoded copy does). One loader worker each,
the same training samples, augmentation and order."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from emberformer.bench.data_loader import batches_and_size, loader_rate, sample_order
from emberformer.cli.run_folder import run_folder
from emberformer.data.ndws import records
from emberformer.data.ndws.samples import NDWSSamples, collate

WORKERS = 1


class TFRecordPerAccess(NDWSSamples):
    """Record i is read from its file and parsed on every access (offsets found once)."""

    def __init__(self, like: NDWSSamples):
        self.__dict__.update(like.__dict__)
        root = like.index.root
        self.where: list[tuple[Path, int, int]] = []
        for name, _ in like.index.files[like.split]:
            path = root / name
            self.where += [(path, off, k) for k, off in enumerate(records.record_offsets(path))]

    def record(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        path, offset, k = self.where[i]
        return records.read_at(path, offset, k)


def bench_ndws_loader(cfg: DictConfig) -> float:
    """Prints and writes (``bench_ndws_loader.md``, ``.json``) the table; returns the speedup of
    the project's loader over parsing the TFRecords per access."""
    run_dir = run_folder()
    hw = instantiate(cfg.hardware)
    loader_kw = hw.loader_settings()
    batches, bs = batches_and_size(cfg.bench, loader_kw["batch_size"])
    data = instantiate(cfg.data, **loader_kw)
    if not hasattr(data, "flip_rotate"):
        raise ValueError("bench=ndws_loader measures data=ndws (it sets it): drop the data= override")
    data.setup()
    cached = data.datasets["train"]
    paths = (("project loader (decoded cache, memory maps)", cached),
             ("TFRecord parse per access (tfrecord)", TFRecordPerAccess(cached)))
    order = sample_order(len(cached), (batches + 1) * bs, int(cfg.seed))
    first, other = cached[order[0]], paths[1][1][order[0]]
    if not all(torch.equal(first[k], other[k]) for k in ("x", "target", "valid", "target_valid")):
        raise RuntimeError("the per-access reader gives another sample than the project's loader")
    for name, _ in cached.index.files["train"]:
        (cached.index.root / name).read_bytes()  # both paths read from the page cache
    header = (f"Data: {len(cached)} train records in {len(cached.index.files['train'])} files ({data.root}), "
              f"augmentation crop {data.crop_size}, flip_rotate {data.flip_rotate} | batch {bs}, {WORKERS} "
              f"worker, 1 warm-up + {batches} measured batches, same samples in the same order, files in "
              "the page cache")
    print(header, flush=True)
    results = []
    for name, ds in paths:
        r = loader_rate(ds, order, bs, WORKERS, bool(loader_kw["pin_memory"]), collate, count_key="x")
        results.append({"dataset": name, "workers": WORKERS, **r})
        print(f"  {name}: {r['samples_per_s']:.1f} samples/s", file=sys.stderr, flush=True)
    ours = results[0]["samples_per_s"]
    speedup = ours / results[1]["samples_per_s"]
    table = ["| NDWS dataset | Workers | Samples/s | Time/batch | Project loader's speedup |",
             "|--------------|---------|-----------|------------|--------------------------|"]
    table += [f"| {r['dataset']} | {WORKERS} | {r['samples_per_s']:.1f} | {1000 * r['batch_s']:.1f} ms | "
              f"{ours / r['samples_per_s']:.1f}x |" for r in results]
    lines = ["", *table, "", f"speedup: {speedup:.1f}x over parsing the TFRecords per access"]
    print("\n".join(lines), flush=True)
    (run_dir / "bench_ndws_loader.md").write_text("\n".join(["# NDWS data loader benchmark", "", header, *lines, ""]))
    (run_dir / "bench_ndws_loader.json").write_text(json.dumps(
        {"header": header, "batch_size": bs, "batches": batches, "results": results,
         "speedup": {"tfrecord_per_access": speedup}}, indent=1))
    return speedup
