"""``bench=table``: the batch-size table (memory, time per step, samples/s, data wait, epoch time)
measured on real training steps; an out-of-memory batch size is a row, not a crash."""
from __future__ import annotations

import gc
import json
import resource
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from emberformer.cli.run_folder import run_folder
from emberformer.cli.run_config import channel_settings
from emberformer.data.dataset import to_device
from emberformer.training.run_setup import build_learner, count_parameters
from emberformer.training.step import train_step

GB = 1024 ** 3

OOM_ERRORS: tuple[type[BaseException], ...] = (getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError),)


OOM_MESSAGES = ("out of memory", "cublas_status_alloc_failed", "cudnn_status_alloc_failed")


def is_oom(e: BaseException) -> bool:
    """torch's OOM error, or a RuntimeError saying "out of memory" (or cuBLAS/cuDNN's alloc failure)."""
    if isinstance(e, OOM_ERRORS):
        return True
    msg = str(e).lower()
    return isinstance(e, RuntimeError) and any(m in msg for m in OOM_MESSAGES)


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
    shapes = {(s.height, s.width) for s in ds.index.sequences.values()}
    h, w = max(s[0] for s in shapes), max(s[1] for s in shapes)
    return f"{h} x {w}" if len(shapes) == 1 else f"up to {h} x {w}"


def _check_table(b: DictConfig) -> tuple[list[int], int, int, float | None]:
    sizes = list(b.batch_sizes or [])
    if not sizes or not all(isinstance(s, int) and s >= 1 for s in sizes):
        raise ValueError(f"bench.batch_sizes must be a non-empty list of integers >= 1, got {sizes}")
    warmup, steps = b.warmup, b.steps
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"bench.warmup must be an integer >= 0, got {warmup}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"bench.steps must be an integer >= 1, got {steps}")
    limit = b.max_memory_gb
    if limit is not None and not (isinstance(limit, (int, float)) and limit > 0):
        raise ValueError(f"bench.max_memory_gb must be null or > 0, got {limit}")
    return [int(s) for s in sizes], warmup, steps, None if limit is None else float(limit)


def bench_table(cfg: DictConfig) -> list[Row]:
    sizes, warmup, steps, limit = _check_table(cfg.bench)
    run_dir = run_folder()
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
        model = instantiate(cfg.model, **channel_settings(data.static_channels, data.day_channels))
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
        learner = build_learner(build_model(), optim_factory, hw, device)  # what a training run builds
        learner.net.train()

        def step(batch: dict) -> int:
            pred, _ = train_step(learner, to_device(batch, device, static), loss_fn, hw.autocast)
            return pred.size

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
