"""``bench=ndws_loader``: samples/s of the project's Next Day Wildfire Spread loader (slices of the
decoded cache's memory maps) against parsing the sample's TFRecord on every access (seek, read,
CRC check, protobuf parse: what a loader without a decoded copy does). One loader worker each,
the same training samples, augmentation and order."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from emberformer.bench import loader_bench
from emberformer.bench.data_loader import sample_order
from emberformer.data.ndws import records
from emberformer.data.ndws.samples import NDWSSamples, collate


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
    bench = loader_bench.set_up(cfg, "ndws_loader", "ndws", "flip_rotate")
    data, bs = bench.data, bench.batch_size
    cached = data.datasets["train"]
    paths = (("project loader (decoded cache, memory maps)", cached, collate),
             ("TFRecord parse per access (tfrecord)", TFRecordPerAccess(cached), collate))
    order = sample_order(len(cached), (bench.batches + 1) * bs, int(cfg.seed))
    first, other = cached[order[0]], paths[1][1][order[0]]
    if not all(torch.equal(first[k], other[k]) for k in ("x", "target", "valid", "target_valid")):
        raise RuntimeError("the per-access reader gives another sample than the project's loader")
    for name, _ in cached.index.files["train"]:
        (cached.index.root / name).read_bytes()  # both paths read from the page cache
    header = (f"Data: {len(cached)} train records in {len(cached.index.files['train'])} files ({data.root}), "
              f"augmentation crop {data.crop_size}, flip_rotate {data.flip_rotate} | batch {bs}, {bench.timing}, "
              "same samples in the same order, files in the page cache")
    print(header, flush=True)
    results = loader_bench.measure(bench, paths, order)
    speedup = loader_bench.speedups(results)[paths[1][0]]
    loader_bench.report(bench, "ndws_loader", "NDWS", header, results,
                        f"speedup: {speedup:.1f}x over parsing the TFRecords per access",
                        {"tfrecord_per_access": speedup})
    return speedup
