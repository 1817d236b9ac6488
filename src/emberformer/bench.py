"""``python -m emberformer.bench``: how big a batch fits and how fast it trains, and how fast data loads.

``bench=table`` (default) runs real training steps (forward under the hardware's autocast, loss,
backward through its grad scaler, optimizer step) on real batches of the train loader for every
batch size in ``bench.batch_sizes`` and prints the seed guide's "Batch Size Impact" table: peak
memory, time per step, samples/s, the share of the step spent waiting for data and the estimated
epoch time, with the largest batch size that fits marked. An out-of-memory error is a row, not a
crash. ``bench=data_loader`` compares the decoded-frame cache with decoding the PNGs per sample.

Both compose the same config groups as ``emberformer.train`` (conf/bench.yaml) and write their
tables into the run folder ``outputs/bench/DATE/TIME/``.
"""
from __future__ import annotations

import gc
import json
import resource
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import hydra
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset

from emberformer import runtime
from emberformer.data import layout
from emberformer.data.cache import wind_range
from emberformer.data.dataset import FireSamples, collate, to_device
from emberformer.data.frames import decode_mask
from emberformer.sampler import EpochSampler
from emberformer.trainer import count_parameters

CONF = str(Path(__file__).resolve().parents[2] / "conf")
GB = 1024 ** 3
OOM_ERRORS: tuple[type[BaseException], ...] = (getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError),)


OOM_MESSAGES = ("out of memory", "cublas_status_alloc_failed", "cudnn_status_alloc_failed")


def is_oom(e: BaseException) -> bool:
    """torch's OOM error, or a RuntimeError saying "out of memory" (or cuBLAS/cuDNN's alloc failure)."""
    if isinstance(e, OOM_ERRORS):
        return True
    msg = str(e).lower()
    return isinstance(e, RuntimeError) and any(m in msg for m in OOM_MESSAGES)


# ---------------------------------------------------------------------------------------------
# Memory and clocks


class MemoryMeter:
    """Peak memory of one measurement: CUDA's allocator peak, or the process's peak RSS on CPU."""

    def __init__(self, device: torch.device):
        self.device = device
        self.cuda = device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def free(self) -> None:
        gc.collect()
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()

    def reset(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_gb(self) -> float:
        if self.cuda:
            return torch.cuda.max_memory_allocated(self.device) / GB
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux, bytes on macOS
        return rss * (1 if sys.platform == "darwin" else 1024) / GB

    def total_gb(self) -> float | None:
        if self.cuda:
            return torch.cuda.get_device_properties(self.device).total_memory / GB
        return None

    def describe(self) -> str:
        if self.cuda:
            return ("Memory: peak torch.cuda.max_memory_allocated per batch size (model, optimizer "
                    "state, activations; the allocator reserves somewhat more, see bench_table.json)")
        return ("Memory: peak RSS of this process (ru_maxrss): a high-water mark since the process "
                "started, so it never goes down and a row may show an earlier, larger peak; loader "
                "worker processes are not included")


# ---------------------------------------------------------------------------------------------
# The batch-size table


@dataclass
class Row:
    """One batch size: measured values, or why it does not fit."""

    batch_size: int
    status: str = "ok"                  # ok | oom | over_limit
    memory_gb: float | None = None
    reserved_gb: float | None = None    # CUDA only
    step_s: float | None = None
    samples_per_s: float | None = None
    data_wait: float | None = None      # fraction of the step time spent in next(loader)
    epoch_s: float | None = None
    samples_per_step: float | None = None
    note: str = ""

    @property
    def fits(self) -> bool:
        return self.status == "ok"


Prepare = Callable[[int], tuple[Callable[[Any], int], Iterator[Any]]]


def timed_steps(step: Callable[[Any], int], batches: Iterator[Any], warmup: int, steps: int,
                sync: Callable[[], None]) -> dict[str, float]:
    """``warmup`` steps, then ``steps`` timed ones; the clock is read after a device sync."""
    for _ in range(warmup):
        step(next(batches))
    sync()
    wait = total = 0.0
    samples = 0
    for _ in range(steps):
        t0 = time.perf_counter()
        batch = next(batches)
        t1 = time.perf_counter()
        samples += step(batch)
        del batch
        sync()
        t2 = time.perf_counter()
        wait += t1 - t0
        total += t2 - t0
    return {"wait": wait, "total": total, "samples": samples, "steps": steps}


def _measure_one(bs: int, prepare: Prepare, warmup: int, steps: int, meter: MemoryMeter) -> dict[str, float]:
    step, batches = prepare(bs)
    try:
        return timed_steps(step, batches, warmup, steps, meter.sync)
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()


def measure_batch_sizes(batch_sizes: list[int], prepare: Prepare, *, warmup: int, steps: int,
                        meter: MemoryMeter, train_samples: int, max_memory_gb: float | None = None,
                        progress: Callable[[str], None] | None = None) -> list[Row]:
    """One row per batch size; ``prepare(bs)`` builds a fresh model/optimizer and returns
    ``(step, batches)`` where ``step(batch)`` trains on one batch and returns its sample count.

    An out-of-memory error while preparing or stepping becomes an ``oom`` row; memory is freed and
    the next batch size runs. A peak above ``max_memory_gb`` becomes an ``over_limit`` row.
    """
    rows = []
    for bs in batch_sizes:
        meter.free()
        meter.reset()
        row = Row(int(bs))
        res = None
        try:
            res = _measure_one(int(bs), prepare, warmup, steps, meter)
        except Exception as e:  # noqa: BLE001 - only OOM is turned into a row
            if not is_oom(e):
                raise
            row.status = "oom"
            row.note = f"{type(e).__name__}"
        # the exception (and its traceback, which holds the model and the batch) is gone here
        meter.free()
        if res is not None:
            row.memory_gb = meter.peak_gb()
            if meter.cuda:
                row.reserved_gb = torch.cuda.max_memory_reserved(meter.device) / GB
            total = max(res["total"], 1e-12)
            row.step_s = total / res["steps"]
            row.samples_per_s = res["samples"] / total
            row.data_wait = res["wait"] / total
            row.epoch_s = train_samples / row.samples_per_s
            row.samples_per_step = res["samples"] / res["steps"]
            if row.samples_per_step < bs:
                row.note = f"batches of {row.samples_per_step:.1f} samples on average"
            if max_memory_gb is not None and row.memory_gb > max_memory_gb:
                row.status = "over_limit"
        if progress is not None:
            progress(f"batch size {bs}: " + (format_row(row, False) if row.fits else row.status))
        rows.append(row)
        meter.free()
    return rows


def largest_fitting(rows: list[Row]) -> Row | None:
    fitting = [r for r in rows if r.fits]
    return max(fitting, key=lambda r: r.batch_size) if fitting else None


def fmt_mem(gb: float | None) -> str:
    if gb is None:
        return "-"
    return f"{gb:.1f}GB" if gb >= 1 else f"{gb * 1024:.0f}MB"


def fmt_step(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s:.3f} s" if s < 1 else f"{s:.2f} s" if s < 100 else f"{s:.0f} s"


def fmt_duration(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 120:
        return f"{s:.1f} s" if s < 10 else f"{s:.0f} s"
    if s < 2 * 3600:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


TABLE_HEAD = ["| Batch Size | Memory | Time/Step | Samples/s | Data wait | Time/Epoch |",
              "|------------|--------|-----------|-----------|-----------|------------|"]


def format_row(row: Row, best: bool, limit_gb: float | None = None, total_gb: float | None = None) -> str:
    if row.status == "oom":
        mem = f">{total_gb:.0f}GB" if total_gb else "-"
        return f"| {row.batch_size} | {mem} | - | - | - | OOM ❌ |"
    if row.status == "over_limit":
        return (f"| {row.batch_size} | {fmt_mem(row.memory_gb)} | - | - | - | "
                f"OOM ❌ (over bench.max_memory_gb={limit_gb:g}GB) |")
    cells = [str(row.batch_size), fmt_mem(row.memory_gb), fmt_step(row.step_s),
             f"{row.samples_per_s:.1f}", f"{100 * row.data_wait:.0f}%", fmt_duration(row.epoch_s)]
    if best:
        cells = [f"**{c}**" for c in cells]
    last = cells[-1] + (" ✓ largest that fits" if best else "")
    if row.note:
        last += f" ({row.note})"
    return "| " + " | ".join(cells[:-1] + [last]) + " |"


def format_table(rows: list[Row], limit_gb: float | None = None, total_gb: float | None = None) -> list[str]:
    best = largest_fitting(rows)
    return TABLE_HEAD + [format_row(r, r is best, limit_gb, total_gb) for r in rows]


def cycle(loader: DataLoader) -> Iterator[dict]:
    """The train loader's batches, epoch after epoch (each epoch its own shuffle)."""
    epoch = 0
    while True:
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)  # type: ignore[union-attr]
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("the train loader yields no batches")
        epoch += 1


def frame_size(data: Any) -> str:
    """``H x W`` of the cached sequences (``up to H x W`` when they differ)."""
    ds = data.datasets["train"]
    meta = json.loads((ds.cache / "index.json").read_text())
    shapes = {(s["height"], s["width"]) for s in meta["sequences"]}
    h, w = max(s[0] for s in shapes), max(s[1] for s in shapes)
    return f"{h} x {w}" if len(shapes) == 1 else f"up to {h} x {w}"


def _check_table(b: DictConfig) -> tuple[list[int], int, int, float | None]:
    sizes = list(b.get("batch_sizes") or [])
    if not sizes or not all(isinstance(s, int) and s >= 1 for s in sizes):
        raise ValueError(f"bench.batch_sizes must be a non-empty list of integers >= 1, got {sizes}")
    warmup, steps = b.get("warmup", 2), b.get("steps", 5)
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"bench.warmup must be an integer >= 0, got {warmup}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"bench.steps must be an integer >= 1, got {steps}")
    limit = b.get("max_memory_gb")
    if limit is not None and not (isinstance(limit, (int, float)) and limit > 0):
        raise ValueError(f"bench.max_memory_gb must be null or > 0, got {limit}")
    return [int(s) for s in sizes], warmup, steps, None if limit is None else float(limit)


def bench_table(cfg: DictConfig) -> list[Row]:
    sizes, warmup, steps, limit = _check_table(cfg.bench)
    run_dir = runtime.run_dir()
    hw = instantiate(cfg.hardware)
    device = hw.setup()
    loss_fn = instantiate(cfg.loss)
    optim_factory = instantiate(cfg.optim)
    loader_kw = hw.loader_settings()
    data = instantiate(cfg.data, **loader_kw)
    data.setup()
    n_train = len(data.datasets["train"])

    def build_model() -> torch.nn.Module:
        torch.manual_seed(cfg.seed)
        model = instantiate(cfg.model, static_channels=data.static_channels)
        return model

    probe = build_model()
    n_params = count_parameters(probe)
    model_name = getattr(probe, "name", type(probe).__name__)
    if not any(p.requires_grad for ps in probe.param_groups().values() for p in ps):
        raise ValueError(f"bench=table trains the model, but {model_name} has no trainable parameters")
    del probe
    meter = MemoryMeter(device)
    static = data.static_raster().to(device)

    def prepare(bs: int):
        model = build_model().to(device)
        if hw.channels_last:
            model = model.to(memory_format=torch.channels_last)
        optimizer = optim_factory(model.param_groups())
        scaler = hw.grad_scaler()
        net = torch.compile(model) if hw.compile else model
        net.train()

        def step(batch: dict) -> int:
            b = to_device(batch, device, static)
            with hw.autocast():
                logits = net(b["fire"], b["valid_t"], b["wind"], b["static"])
            parts = loss_fn(logits.float(), b["target"], b["mask"])
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(parts["loss"]).backward()
            scaler.step(optimizer)
            scaler.update()
            return int(b["fire"].shape[0])

        data.batch_size = bs
        return step, cycle(data.loader("train", int(cfg.seed)))

    header = (f"Device: {hw.describe()} | Model: {model_name}, {n_params:,} parameters | "
              f"Data: {frame_size(data)}, {n_train} train samples | Loader: {loader_kw['num_workers']} "
              f"workers, pin_memory {str(loader_kw['pin_memory']).lower()} | "
              f"{warmup} warm-up + {steps} measured steps per batch size")
    print(header, flush=True)
    rows = measure_batch_sizes(sizes, prepare, warmup=warmup, steps=steps, meter=meter,
                               train_samples=n_train, max_memory_gb=limit,
                               progress=lambda s: print(f"  {s}", file=sys.stderr, flush=True))
    table = format_table(rows, limit, meter.total_gb())
    best = largest_fitting(rows)
    notes = [meter.describe(),
             "Data wait: time blocked in next(train loader) / step time. Time/Epoch: train samples / "
             "samples/s (training steps only: no validation, no metric accumulation)."]
    verdict = (f"Largest batch size that fits: {best.batch_size}" if best
               else "No batch size fits: try smaller ones (bench.batch_sizes=[1,2,4])")
    print("\n".join(["", *table, "", *notes, verdict]), flush=True)
    md = "\n".join(["# Batch size benchmark", "", header, "", *table, "", *[f"- {n}" for n in notes],
                    f"- {verdict}", ""])
    (run_dir / "bench_table.md").write_text(md)
    (run_dir / "bench_table.json").write_text(json.dumps(
        {"header": header, "device": str(device), "precision": hw.precision, "parameters": n_params,
         "frame_size": frame_size(data), "train_samples": n_train, "warmup": warmup, "steps": steps,
         "max_memory_gb": limit, "rows": [asdict(r) | {"fits": r.fits} for r in rows],
         "largest_fitting": best.batch_size if best else None}, indent=1))
    print(f"Wrote {run_dir / 'bench_table.md'}", flush=True)
    return rows


# ---------------------------------------------------------------------------------------------
# The data-loader comparison


class PngSamples(Dataset):
    """The original approach: every sample decodes its PNG frames again.

    Sample (seq, t) opens fire frames 0..t and isochrone t+1 with ``decode_mask``, crops the static
    bands from the normalised raster (read once here) and reads the sequence's weather file. The
    samples and their contents are those of :class:`FireSamples` over the same root.
    """

    def __init__(self, root: str | Path, seq_ids: list[int], max_history: int | None = None):
        root = Path(root)
        seqs = {s.seq_id: s for s in layout.list_sequences(root)}
        self.seqs = {i: seqs[i] for i in seq_ids}
        self.max_history = max_history
        self.raster = layout.read_landscape(root)
        self.lo, hi = wind_range(root)
        self.span = np.where(hi > self.lo, hi - self.lo, 1.0)
        self.samples = [(sid, t) for sid in seq_ids for t in range(len(self.seqs[sid].fire_frames) - 1)]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        sid, t = self.samples[i]
        s = self.seqs[sid]
        start = 0 if self.max_history is None else max(0, t + 1 - self.max_history)
        fire = np.stack([decode_mask(p) for p in s.fire_frames[start:t + 1]]).astype(np.uint8)
        target = decode_mask(s.iso_frames[t + 1]).astype(np.uint8)[None]
        static = np.array(layout.crop_static(self.raster, s.window, sid, fire.shape[1:]), dtype=np.float32)
        wind = ((layout.read_weather(s.weather_file)[start:t + 1] - self.lo) / self.span).astype(np.float32)
        return {"fire": torch.from_numpy(fire), "wind": torch.from_numpy(wind),
                "static": torch.from_numpy(static), "target": torch.from_numpy(target),
                "seq_id": sid, "t": t}


def dense_collate(items: list[dict]) -> dict:
    """The original approach's batches: unpacked uint8 frames and float32 static per sample."""
    B = len(items)
    T = max(it["fire"].shape[0] for it in items)
    H = max(it["fire"].shape[1] for it in items)
    W = max(it["fire"].shape[2] for it in items)
    fire = torch.zeros(B, T, H, W, dtype=torch.uint8)
    static = torch.zeros(B, items[0]["static"].shape[0], H, W)
    target = torch.zeros(B, 1, H, W, dtype=torch.uint8)
    wind = torch.zeros(B, T, 2)
    valid_t = torch.zeros(B, T, dtype=torch.bool)
    for b, it in enumerate(items):
        t, h, w = it["fire"].shape
        fire[b, T - t:, :h, :w] = it["fire"]
        static[b, :, :h, :w] = it["static"]
        target[b, :, :h, :w] = it["target"]
        wind[b, T - t:] = it["wind"]
        valid_t[b, T - t:] = True
    return {"fire": fire, "static": static, "target": target, "wind": wind, "valid_t": valid_t}


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
                collate_fn, finish=None) -> dict[str, float]:
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
        samples += int(batch["fire"].shape[0])
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


def _check_loader(b: DictConfig, hw_workers: int, hw_batch: int) -> tuple[int, int, int]:
    batches = b.get("batches", 20)
    if not isinstance(batches, int) or batches < 1:
        raise ValueError(f"bench.batches must be an integer >= 1, got {batches}")
    bs = b.get("batch_size") or hw_batch
    if not isinstance(bs, int) or bs < 1:
        raise ValueError(f"bench.batch_size must be null or an integer >= 1, got {bs}")
    workers = b.get("num_workers")
    if workers is None:
        workers = hw_workers if hw_workers > 0 else 2
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"bench.num_workers must be null or an integer >= 1, got {workers}")
    return batches, bs, workers


def bench_data_loader(cfg: DictConfig) -> float:
    run_dir = runtime.run_dir()
    hw = instantiate(cfg.hardware)
    loader_kw = hw.loader_settings()
    batches, bs, workers = _check_loader(cfg.bench, loader_kw["num_workers"], loader_kw["batch_size"])
    data = instantiate(cfg.data, **loader_kw)
    data.setup()
    cached = data.datasets["train"]
    root = Path(json.loads((cached.cache / "index.json").read_text())["root"])
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


# ---------------------------------------------------------------------------------------------
# The app

KINDS = {"table": bench_table, "data_loader": bench_data_loader}


def bench(cfg: DictConfig) -> Any:
    if "bench" not in cfg or not isinstance(cfg.bench, DictConfig):
        raise ValueError("no bench config: use bench=table or bench=data_loader")
    kind = cfg.bench.get("kind")
    if kind not in KINDS:
        raise ValueError(f"bench.kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return KINDS[kind](cfg)


@hydra.main(config_path=CONF, config_name="bench", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with runtime.user_errors():
        bench(cfg)


if __name__ == "__main__":
    main()
