"""The plain-PyTorch training loop: epochs, validation, early stopping, checkpoints, logging.

Per-step values stay on the device and are flushed to the logger every ``FLUSH_EVERY`` steps
(one host sync), so the GPU is never stalled by ``.item()`` on every step.
"""
from __future__ import annotations

import gc
import math
import signal
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from emberformer import console, distributed
from emberformer.checkpoint import save_atomic
from emberformer.data.datamodule import FireDataModule
from emberformer.data.dataset import to_device
from emberformer.early_stopping import EarlyStopping
from emberformer.hardware import Hardware
from emberformer.losses import WeightedLoss
from emberformer.metrics import PixelMetrics
from emberformer.previews import write_previews
from emberformer.tracking import RunLogger

FLUSH_EVERY = 10


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; the run stops, best.pt is kept."""


class Interrupted(RuntimeError):
    """SIGINT/SIGTERM: the current step finished, last.pt written, logger closed."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.exit_code = 128 + signum


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class Trainer:
    """Runs one training job; ``fit`` returns the best monitored value (the sweep objective)."""

    def __init__(self, epochs: int = 50, log_metrics_every: int = 50, seed: int = 0,
                 pred_thresh: float = 0.5, limit_batches: int | None = None, progress: bool = True,
                 evaluate_test: bool = True):
        if int(epochs) < 1:
            raise ValueError(f"trainer.epochs must be >= 1, got {epochs}")
        if int(log_metrics_every) < 1:
            raise ValueError(f"trainer.log_metrics_every must be >= 1, got {log_metrics_every}")
        if not 0 < float(pred_thresh) < 1:
            raise ValueError(f"metrics.pred_thresh must be in (0, 1), got {pred_thresh}")
        self.epochs = int(epochs)
        self.log_every = int(log_metrics_every)
        self.seed = int(seed)
        self.thresh = float(pred_thresh)
        self.limit_batches = limit_batches
        self.progress = progress
        self.evaluate_test = evaluate_test
        self._signal: int | None = None

    # ------------------------------------------------------------------ setup
    def fit(self, *, model: nn.Module, data: FireDataModule, loss_fn: WeightedLoss,
            optimizer_factory: Callable[..., torch.optim.Optimizer], early_stopping: EarlyStopping,
            hardware: Hardware, logger: RunLogger, run_dir: Path, run_info: dict[str, Any],
            resume: dict[str, Any] | None = None) -> float:
        rank, world_size, local_rank = distributed.world()
        self.main = rank == 0
        self.device = hardware.setup(local_rank)
        distributed.init(self.device)
        self.hw, self.data, self.loss_fn, self.early = hardware, data, loss_fn, early_stopping
        self.logger = logger if self.main else RunLogger(None)
        self.run_dir = Path(run_dir)
        self._config = run_info["config"]
        self.model = model.to(self.device)
        self.static = data.static_raster().to(self.device)  # cropped per sample on the device
        if hardware.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        groups = model.param_groups()  # type: ignore[operator]
        self.n_params = count_parameters(model)
        self.trainable = any(p.requires_grad for ps in groups.values() for p in ps)
        self.optimizer = optimizer_factory(groups) if self.trainable else None
        self.scaler = hardware.grad_scaler()
        self.net: nn.Module = self.model
        if world_size > 1 and self.trainable:
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if hardware.compile:
            self.net = torch.compile(self.net)  # type: ignore[assignment]
        epochs = self.epochs if self.trainable else 1
        self.loaders = {k: data.loader(k, self.seed, rank, world_size) for k in ("train", "val", "test")}

        self.start_epoch, self.global_step, skip = 1, 0, 0
        self.partial: dict[str, Any] | None = None
        if resume is not None:
            skip = self._restore(resume)

        if self.main:  # other ranks log nothing and write no files
            self.logger.start(self.run_dir, run_info["name"], run_info.get("group"), run_info["tags"],
                              run_info["config"], resume_id=resume.get("wandb_id") if resume else None)
            self._print_banner(epochs, run_info)
            if not self.trainable:
                print("Model has no trainable parameters: one evaluation pass, no optimizer steps.")
        self.copy_last_val: dict[str, float] | None = None
        self.best_metrics: dict[str, float] = (resume or {}).get("best_metrics") or {}
        old_handlers = self._install_signal_handlers()
        t0 = time.time()
        try:
            for epoch in range(self.start_epoch, epochs + 1):
                train_m = self._train_epoch(epoch, epochs, skip)
                skip = 0
                val_m, first_batch, first_prob = self._validate(epoch, epochs)
                metrics = {**{f"train/{k}": v for k, v in train_m.items()},
                           **{f"val/{k}": v for k, v in val_m.items()}}
                is_best = self.early.step(epoch, metrics)
                if is_best:
                    self.best_metrics = metrics
                self._end_epoch(epoch, epochs, metrics, is_best, first_batch, first_prob)
                if self.early.should_stop:
                    if self.main:
                        print(console.early_stop_block(self.early.stop_reason or "", self.early.monitor,
                                                       self.early.best_value, self.early.best_epoch,
                                                       self.early.counter))
                    break
        except BaseException:
            self.logger.finish(exit_code=1)  # a failed job must not leave its W&B run open
            self._teardown(wait=False)
            raise
        finally:
            self._restore_signal_handlers(old_handlers)
        try:
            return self._finish(time.time() - t0)
        finally:
            self.logger.finish(exit_code=0)
            self._teardown()

    def _teardown(self, wait: bool = True) -> None:
        """Release the DDP wrapper before its process group: a DDP reducer destroyed after the
        group (and after the other rank left) can hang forever in gloo's destructor."""
        self.net = self.model
        gc.collect()
        distributed.cleanup(wait)

    def _print_banner(self, epochs: int, run_info: dict[str, Any]) -> None:
        lrs = {g.get("name"): g["lr"] for g in self.optimizer.param_groups} if self.optimizer else {}
        d = self.data.describe()
        lines = [
            f"Model: {getattr(self.model, 'name', type(self.model).__name__)}",
            f"Parameters used: {self.n_params:,}",
            f"Device: {self.hw.describe()}",
            f"Train samples: {d['data/train_samples']}",
            f"Val samples: {d['data/val_samples']}",
            f"Sequences: train {d['data/train_sequences']}, val {d['data/val_sequences']}, "
            f"test {d['data/test_sequences']} (test samples: {d['data/test_samples']})",
            f"Batch size: {self.data.batch_size}",
        ]
        if lrs:
            lines.append(f"LR temporal: {lrs.get('temporal', 0):.2e}, LR spatial: {lrs.get('spatial', 0):.2e}")
        lines += [f"Loss: {self.loss_fn.describe()}", f"Early stopping: {self.early.describe()}",
                  *self.logger.banner(), f"Run dir: {self.run_dir}"]
        if self.start_epoch > 1 or self.global_step:
            lines.append(f"Resumed at epoch {self.start_epoch} (step {self.global_step})")
        print(console.banner(lines, f"Starting Training: {epochs} epochs"), flush=True)

    # ------------------------------------------------------------------ loops
    def _bar(self, loader, desc: str):
        total = len(loader) if self.limit_batches is None else min(len(loader), self.limit_batches)
        return tqdm(loader, desc=desc, total=total, disable=not (self.progress and self.main),
                    dynamic_ncols=True, mininterval=0.5, leave=True)

    def _train_epoch(self, epoch: int, epochs: int, skip: int) -> dict[str, float]:
        world_size = distributed.world()[1]
        self.net.train(self.trainable)
        loader = self.loaders["train"]
        loader.sampler.set_epoch(epoch, skip)  # type: ignore[union-attr]
        metrics = PixelMetrics(self.thresh, self.device)
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)  # loss*n, n, T*n
        host = [0.0, 0.0]  # n and T*n are known on the host: no device traffic for them
        if self.partial is not None:  # resumed mid-epoch: carry the epoch's counts so far
            metrics.counts += self.partial["counts"].to(self.device)
            sums += self.partial["sums"].to(self.device)
            self.partial = None
        buffer: list[tuple[int, torch.Tensor, float]] = []
        comp_names = list(self.loss_fn.terms)
        bar = self._bar(loader, f"Epoch {epoch}/{epochs} [Train]")
        seen = skip
        for i, batch in enumerate(bar):
            if self.limit_batches is not None and i >= self.limit_batches:
                break
            T_avg = float(batch["valid_t"].sum(1).float().mean())
            b = to_device(batch, self.device, self.static)
            with torch.set_grad_enabled(self.trainable):
                with self.hw.autocast():
                    logits = self.net(b["fire"], b["valid_t"], b["wind"], b["static"])
                parts = self.loss_fn(logits.float(), b["target"], b["mask"])
                if self.optimizer is not None:
                    self.optimizer.zero_grad(set_to_none=True)
                    self.scaler.scale(parts["loss"]).backward()
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
            n = b["fire"].shape[0]
            seen += n * world_size
            self.global_step += 1
            with torch.no_grad():
                prob = torch.sigmoid(logits.detach().float())
                metrics.update(prob, b["target"], b["mask"], b["fire"][:, -1:] > 0.5)
                vals = torch.stack([parts["loss"].detach()] + [parts[c].detach() for c in comp_names])
                sums[0] += vals[0].double() * n
                host[0] += n
                host[1] += T_avg * n
            buffer.append((self.global_step, vals, T_avg))
            if len(buffer) >= FLUSH_EVERY:
                self._flush(buffer, comp_names, epoch, bar)
            if self.global_step % self.log_every == 0:
                self._flush(buffer, comp_names, epoch, bar)
                running = metrics.compute()
                self.logger.log({f"train/{k}_step": running[k] for k in ("prec", "rec", "f1", "iou", "acc")},
                                step=self.global_step)
            # single process: look at the flag every step; DDP: agree on it every FLUSH_EVERY steps
            if (world_size == 1 or self.global_step % FLUSH_EVERY == 0) and \
                    distributed.broadcast_flag(self._signal is not None, self.device):
                self._flush(buffer, comp_names, epoch, bar)
                sums[1] += host[0]
                sums[2] += host[1]
                self._interrupt(epoch, seen, metrics, sums)
        self._flush(buffer, comp_names, epoch, bar)
        bar.close()
        sums[1] += host[0]
        sums[2] += host[1]
        distributed.all_reduce_(metrics.counts)
        distributed.all_reduce_(sums)
        out = metrics.compute()
        out["loss"] = float(sums[0] / sums[1].clamp(min=1))
        self._T_avg_epoch = float(sums[2] / sums[1].clamp(min=1))
        return out

    def _flush(self, buffer: list, comp_names: list[str], epoch: int, bar) -> None:
        """Log buffered per-step values (one host sync); stop on the first non-finite loss."""
        if not buffer:
            return
        values = torch.stack([v for _, v, _ in buffer]).tolist()
        for (step, _, T_avg), row in zip(buffer, values):
            if not all(math.isfinite(x) for x in row):
                buffer.clear()
                raise NonFiniteLoss(f"non-finite loss ({row[0]}) at epoch {epoch}, step {step}; "
                                    f"best.pt (epoch {self.early.best_epoch}) is kept")
            rec = {"train/loss_step": row[0], **{f"train/{c}_step": x for c, x in zip(comp_names, row[1:])},
                   "train/batch_T_avg": T_avg}
            self.logger.log(rec, step=step)
        bar.set_postfix(loss=f"{values[-1][0]:.4f}")
        buffer.clear()

    @torch.no_grad()
    def _run_eval(self, split: str, desc: str | None, model: nn.Module | None = None,
                  with_copy_last: bool = False):
        """Loss + metrics of ``model`` (default: the one being trained) on a split."""
        net = model if model is not None else self.net
        net.eval()
        loader = self.loaders[split]
        loader.sampler.set_epoch(0)  # type: ignore[union-attr]
        metrics = PixelMetrics(self.thresh, self.device)
        copy_m = PixelMetrics(self.thresh, self.device) if with_copy_last else None
        sums = torch.zeros(2, dtype=torch.float64, device=self.device)  # loss*n, n
        seen = 0  # known on the host: no device traffic for it
        first = None
        bar = self._bar(loader, desc) if desc else loader
        for i, batch in enumerate(bar):
            if self.limit_batches is not None and i >= self.limit_batches:
                break
            b = to_device(batch, self.device, self.static)
            with self.hw.autocast():
                logits = net(b["fire"], b["valid_t"], b["wind"], b["static"])
            parts = self.loss_fn(logits.float(), b["target"], b["mask"])
            prob = torch.sigmoid(logits.float())
            last = b["fire"][:, -1:] > 0.5
            metrics.update(prob, b["target"], b["mask"], last)
            if copy_m is not None:
                copy_m.update(last.float(), b["target"], b["mask"], last)
            n = b["fire"].shape[0]
            sums[0] += parts["loss"].double() * n
            seen += n
            if first is None:
                k = self.logger.preview_samples
                first = ({"fire": b["fire"][:k].cpu(), "target": b["target"][:k].cpu(),
                          "pixel_mask": b["mask"][:k].cpu(), "seq_id": b["seq_id"][:k], "t": b["t"][:k]},
                         prob[:k].cpu())
            if desc and i % FLUSH_EVERY == 0:
                bar.set_postfix(loss=f"{float(sums[0]) / seen:.4f}")
        sums[1] += seen
        if desc:
            bar.set_postfix(loss=f"{float(sums[0] / sums[1].clamp(min=1)):.4f}")
            bar.close()
        distributed.all_reduce_(metrics.counts)
        distributed.all_reduce_(sums)
        out = metrics.compute()
        out["loss"] = float(sums[0] / sums[1].clamp(min=1))
        copy_out = None
        if copy_m is not None:
            distributed.all_reduce_(copy_m.counts)
            copy_out = copy_m.compute()
        return out, first, copy_out

    def _validate(self, epoch: int, epochs: int):
        out, first, copy_out = self._run_eval("val", f"Epoch {epoch}/{epochs} [Val]  ",
                                              with_copy_last=self.copy_last_val is None)
        if copy_out is not None:
            self.copy_last_val = copy_out
        batch, prob = first if first is not None else (None, None)
        return out, batch, prob

    # ------------------------------------------------------------------ epoch end
    def _end_epoch(self, epoch: int, epochs: int, metrics: dict[str, float], is_best: bool,
                   batch, prob) -> None:
        if not self.main:
            return
        print(console.epoch_line(epoch, epochs, self.loss_fn.display, metrics), flush=True)
        rec: dict[str, Any] = {"epoch": epoch}
        rec.update({f"{k}_epoch": v for k, v in metrics.items()})
        rec["train/T_avg_epoch"] = self._T_avg_epoch
        if self.optimizer is not None:
            for g in self.optimizer.param_groups:
                rec[f"train/lr_{g.get('name', 'group')}"] = g["lr"]
        rec.update({"early_stop/counter": self.early.counter, "early_stop/best_value": self.early.best_value,
                    "early_stop/best_epoch": self.early.best_epoch})
        self.logger.log(rec, step=self.global_step)
        if batch is not None and self.logger.preview_samples > 0:
            paths, caps = write_previews(self.run_dir, epoch, batch, prob, self.thresh,
                                         self.logger.preview_samples)
            self.logger.images("val/preview", paths, caps, self.global_step, epoch)
        state = self._state(epoch, metrics, complete=True)
        if is_best:
            save_atomic(state, self.run_dir / "checkpoints" / "best.pt")
        save_atomic(state, self.run_dir / "checkpoints" / "last.pt")

    def _state(self, epoch: int, metrics: dict[str, float], complete: bool,
               partial: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer else None,
            "scaler": self.scaler.state_dict(),
            "epoch": epoch, "epoch_complete": complete, "global_step": self.global_step,
            "early_stopping": self.early.state_dict(),
            "config": self._config, "metrics": metrics, "partial": partial,
            "best_metrics": self.best_metrics,
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
            "wandb_id": self.logger.run_id,
        }

    # ------------------------------------------------------------------ resume / signals
    def _restore(self, ckpt: dict[str, Any]) -> int:
        """Load a checkpoint's state; return how many samples of the current epoch to skip."""
        self.model.load_state_dict(ckpt["model"])
        if self.optimizer is not None and ckpt.get("optimizer"):
            self.optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.early.load_state_dict(ckpt["early_stopping"])
        self.early.stop_reason = None  # resuming a stopped run with more epochs: judge it afresh
        self.global_step = int(ckpt["global_step"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        if ckpt["rng"].get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
        if ckpt["epoch_complete"]:
            self.start_epoch = int(ckpt["epoch"]) + 1
            return 0
        self.start_epoch = int(ckpt["epoch"])
        self.partial = ckpt["partial"]
        return int(self.partial["seen"])

    def _install_signal_handlers(self):
        def handler(signum, _frame):
            if self._signal is not None:  # second signal: stop now
                raise KeyboardInterrupt
            self._signal = signum
            if self.main:
                print(f"\n{signal.Signals(signum).name} received: finishing the current step, "
                      "then saving last.pt", flush=True)
        old = {}
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                old[s] = signal.signal(s, handler)
            except ValueError:  # not the main thread (e.g. a joblib worker thread)
                pass
        return old

    @staticmethod
    def _restore_signal_handlers(old) -> None:
        for s, h in old.items():
            signal.signal(s, h)

    def _interrupt(self, epoch: int, seen: int, metrics: PixelMetrics, sums: torch.Tensor) -> None:
        signum = self._signal or signal.SIGTERM
        path = self.run_dir / "checkpoints" / "last.pt"
        if self.main:
            partial = {"seen": seen, "counts": metrics.counts.cpu(), "sums": sums.cpu()}
            save_atomic(self._state(epoch, {}, complete=False, partial=partial), path)
            self.logger.finish(exit_code=128 + signum)
        raise Interrupted(signum, f"Interrupted at epoch {epoch}, step {self.global_step}; "
                                  f"resume with: python -m emberformer.train ckpt_path={path}")

    # ------------------------------------------------------------------ the end
    def _finish(self, wall: float) -> float:
        distributed.barrier()  # rank 0 may still be writing best.pt
        summary: dict[str, Any] = {
            "best/" + self.early.monitor: self.early.best_value, "best/epoch": self.early.best_epoch,
            "params_used": self.n_params, "device": self.hw.describe(), "wall_time_s": round(wall, 1),
            **self.data.describe(),
            **{f"best/{k}": v for k, v in self.best_metrics.items()},
        }
        if self.copy_last_val is not None:
            summary.update({f"copy_last/val_{k}": v for k, v in self.copy_last_val.items()})
        best_path = self.run_dir / "checkpoints" / "best.pt"
        if self.evaluate_test and len(self.data.datasets["test"]) and best_path.is_file():
            state = torch.load(best_path, map_location=self.device, weights_only=False)
            self.model.load_state_dict(state["model"])
            test, _, copy_test = self._run_eval("test", None, model=self.model, with_copy_last=True)
            summary.update({f"test/{k}": v for k, v in test.items()})
            summary.update({f"copy_last/test_{k}": v for k, v in (copy_test or {}).items()})
        if self.main:
            self.logger.summary(summary)
            self._print_results(summary)
            print(console.complete(), flush=True)
        best = self.early.best_value
        if not math.isfinite(best):
            raise NonFiniteLoss(f"no finite {self.early.monitor} in any epoch")
        return float(best)

    def _print_results(self, s: dict[str, Any]) -> None:
        rows = [("val (best epoch)", "best/val/"), ("copy-last val", "copy_last/val_"),
                ("test (best.pt)", "test/"), ("copy-last test", "copy_last/test_")]
        print(f"\nBest {self.early.monitor}: {self.early.best_value:.4f} at epoch {self.early.best_epoch}")
        for label, prefix in rows:
            if f"{prefix}f1" not in s:
                continue
            print(f"  {label:<17} f1={s[prefix + 'f1']:.4f} iou={s[prefix + 'iou']:.4f} "
                  f"prec={s[prefix + 'prec']:.4f} rec={s[prefix + 'rec']:.4f} "
                  f"growth_f1={s[prefix + 'growth_f1']:.4f} ap={s[prefix + 'ap']:.4f}")
        print(f"  wall time: {s['wall_time_s']:.1f} s")
