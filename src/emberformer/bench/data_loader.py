"""``bench=data_loader``: samples/s of the decoded-frame cache against decoding the PNGs per
sample (the original approach), on the same training samples in the same order."""
from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset

from emberformer.cli.run_folder import run_folder
from emberformer.bench.batch_table import frame_size
from emberformer.bench.png_samples import PngSamples, dense_collate
from emberformer.data.dataset import FireSamples, collate, to_device
from emberformer.data.sampler import EpochSampler


def sample_order(n: int, count: int, seed: int) -> list[int]:
    """``count`` indices: the train sampler's shuffled epochs, one after another."""
    sampler = EpochSampler(n, seed, shuffle=True)
    order: list[int] = []
    epoch = 0
    while len(order) < count:
        sampler.set_epoch(epoch)
        order += list(sampler)
        epoch += 1
    return order[:count]


def loader_rate(ds: Dataset, order: list[int], batch_size: int, workers: int, pin: bool,
                collate_fn, finish=None, count_key: str = "fire") -> dict[str, float]:
    """Samples/s over all batches of ``order`` after the first (worker start-up, warm-up).

    ``finish`` is the main-process work that turns a batch into model inputs (for the cached
    path: unpacking bits and cropping static, which the trainer does on the device); it is timed.
    """
    loader = DataLoader(ds, batch_size=batch_size, sampler=order, num_workers=workers,
                        collate_fn=collate_fn, pin_memory=pin,
                        prefetch_factor=4 if workers > 0 else None)
    it = iter(loader)
    next(it)
    t0 = time.perf_counter()
    samples = batches = 0
    for batch in it:
        if finish is not None:
            batch = finish(batch)
        samples += int(batch[count_key].shape[0])
        batches += 1
    dt = time.perf_counter() - t0
    del it, loader
    return {"samples_per_s": samples / dt, "batch_s": dt / max(batches, 1), "samples": samples,
            "batches": batches, "seconds": dt}


def warm(cached: FireSamples, png: PngSamples, order: list[int]) -> None:
    """The steady state of training (persistent workers, from the second epoch on): for every
    sequence the benchmark reads, the cache's memory maps are open (workers fork with them) and
    the files of both paths are in the OS page cache."""
    last: dict[int, int] = {}
    for sid, t in (cached.samples[i] for i in order):
        last[sid] = max(t, last.get(sid, -1))
    first = {}
    for i, (sid, t) in enumerate(cached.samples):
        if last.get(sid) == t:
            first[sid] = i
    for i in first.values():
        cached[i]
        png[i]
    for sid in last:
        for f in (*png.seqs[sid].fire_frames, *png.seqs[sid].iso_frames):
            f.read_bytes()


def stage_times(ds: Dataset, order: list[int], batch_size: int, batches: int,
                collate_fn) -> dict[str, float]:
    """Milliseconds per batch of the three things a loader worker does, in this process on one
    thread (as DataLoader workers run): ``__getitem__`` of its samples, ``collate``, and moving
    the batch into shared memory (what sending it to the main process costs)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    t_get = t_col = t_shm = 0.0
    try:
        for k in range(batches):
            idx = order[k * batch_size:(k + 1) * batch_size]
            t0 = time.perf_counter()
            items = [ds[i] for i in idx]
            t1 = time.perf_counter()
            batch = collate_fn(items)
            t2 = time.perf_counter()
            for v in batch.values():
                v.share_memory_()
            t3 = time.perf_counter()
            t_get, t_col, t_shm = t_get + t1 - t0, t_col + t2 - t1, t_shm + t3 - t2
            del items, batch
    finally:
        torch.set_num_threads(threads)
    return {"getitem_ms": 1000 * t_get / batches, "collate_ms": 1000 * t_col / batches,
            "shared_memory_ms": 1000 * t_shm / batches}


def batches_and_size(b: DictConfig, hw_batch: int) -> tuple[int, int]:
    """``bench.batches`` and the batch size (``bench.batch_size``, else the hardware preset's),
    checked: ValueError names the key."""
    batches = b.batches
    if not isinstance(batches, int) or batches < 1:
        raise ValueError(f"bench.batches must be an integer >= 1, got {batches}")
    bs = b.batch_size or hw_batch
    if not isinstance(bs, int) or bs < 1:
        raise ValueError(f"bench.batch_size must be null or an integer >= 1, got {bs}")
    return batches, bs


def _check_loader(b: DictConfig, hw_workers: int, hw_batch: int) -> tuple[int, int, int]:
    batches, bs = batches_and_size(b, hw_batch)
    workers = b.num_workers
    if workers is None:
        workers = hw_workers if hw_workers > 0 else 2
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"bench.num_workers must be null or an integer >= 1, got {workers}")
    return batches, bs, workers


def bench_data_loader(cfg: DictConfig) -> float:
    run_dir = run_folder()
    hw = instantiate(cfg.hardware)
    loader_kw = hw.loader_settings()
    batches, bs, workers = _check_loader(cfg.bench, loader_kw["num_workers"], loader_kw["batch_size"])
    data = instantiate(cfg.data, **loader_kw)
    data.setup()
    cached = data.datasets["train"]
    root = cached.index.root
    png = PngSamples(root, cached.seq_ids, data.max_history)
    if png.samples != cached.samples:
        raise RuntimeError("the PNG and cached data sets list different samples")
    order = sample_order(len(cached), (batches + 1) * bs, int(cfg.seed))
    warm(cached, png, order)
    t_avg = float(np.mean([len(range(0 if data.max_history is None else max(0, t + 1 - data.max_history), t + 1))
                           for _, t in (cached.samples[i] for i in order)]))
    header = (f"Data: {frame_size(data)}, {len(cached)} train samples of {len(cached.seq_ids)} sequences, "
              f"mean history {t_avg:.1f} frames | batch {bs}, 1 warm-up + {batches} measured batches, "
              f"same samples in the same order for both, warm (maps open, files in the page cache) | pin_memory {str(loader_kw['pin_memory']).lower()}")
    print(header, flush=True)
    counts = [1] if workers == 1 else [1, workers]
    results = []
    cpu = torch.device("cpu")
    static = data.static_raster()
    # what each loader delivers to the main process; the cached path's bit unpacking and static
    # cropping run on the device in to_device (timed separately below, here on the CPU)
    paths = (("cached (FireSamples, memory maps)", cached, collate),
             ("PNG decode per sample", png, dense_collate))
    for w in counts:
        for name, ds, coll in paths:
            r = loader_rate(ds, order, bs, w, bool(loader_kw["pin_memory"]), coll)
            results.append({"dataset": name, "workers": w, **r})
            print(f"  {name}, {w} worker(s): {r['samples_per_s']:.1f} samples/s", file=sys.stderr, flush=True)
    table = ["| Dataset | Workers | Samples/s | Time/batch | Speedup |",
             "|---------|---------|-----------|------------|---------|"]
    speedups = {}
    for w in counts:
        c, p = [r for r in results if r["workers"] == w]
        speedups[w] = c["samples_per_s"] / p["samples_per_s"]
        for r, sp in ((c, speedups[w]), (p, 1.0)):
            table.append(f"| {r['dataset']} | {w} | {r['samples_per_s']:.1f} | "
                         f"{1000 * r['batch_s']:.1f} ms | {sp:.1f}x |")
    n_stage = min(batches, 5)
    stages = {name: stage_times(ds, order, bs, n_stage, coll) for name, ds, coll in paths}
    batch = collate([cached[i] for i in order[:bs]])
    t0 = time.perf_counter()
    for _ in range(n_stage):
        to_device(batch, cpu, static)
    device_ms = 1000 * (time.perf_counter() - t0) / n_stage
    table += ["", f"Where a batch's time goes (ms per batch of {bs}, {n_stage} batches in this process on "
                  "one thread, as a worker runs):", "",
              "| Dataset | __getitem__ | collate | to shared memory |",
              "|---------|-------------|---------|------------------|"]
    table += [f"| {name} | {st['getitem_ms']:.1f} | {st['collate_ms']:.1f} | {st['shared_memory_ms']:.1f} |"
              for name, st in stages.items()]
    table += ["", f"Device-side work of the cached path (to_device: unpack bits, crop static), run here on "
                  f"the CPU: {device_ms:.1f} ms per batch; on a GPU it runs on the device, beside the model."]
    lines = ["", *table, ""]
    if workers != 1:
        lines.append(f"speedup with {workers} workers: {speedups[workers]:.1f}x")
    lines.append(f"speedup: {speedups[1]:.1f}x")
    print("\n".join(lines), flush=True)
    (run_dir / "bench_data_loader.md").write_text("\n".join(["# Data loader benchmark", "", header, *lines, ""]))
    (run_dir / "bench_data_loader.json").write_text(json.dumps(
        {"header": header, "batch_size": bs, "batches": batches, "results": results, "stages": stages,
         "speedup": {str(k): v for k, v in speedups.items()}}, indent=1))
    return speedups[1]
