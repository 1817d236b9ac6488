"""The plain-PyTorch training loop: epochs, validation, early stopping, the test pass.

Checkpoints, resume and signals live in ``run_state``; what is printed lives in ``console``; the
model is called only through ``model_step``. Per-step values stay on the device and are flushed
to the logger every ``FLUSH_EVERY`` steps (one host sync), so a GPU is never stalled by
``.item()`` on every step.
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

from emberformer.training import console
from emberformer.training import distributed
from emberformer.training.checkpoint import load as load_checkpoint
from emberformer.data.datamodule import FireDataModule
from emberformer.data.dataset import to_device
from emberformer.training.early_stopping import EarlyStopping
from emberformer.training.hardware import Hardware
from emberformer.training.losses import WeightedLoss
from emberformer.scoring.metrics import PixelMetrics, check_threshold
from emberformer.training.step import Prediction, model_step
from emberformer.models.copy_last import CopyLast
from emberformer.training.previews import write_previews
from emberformer.training.run_state import Checkpointer, Interrupted, RunState, SignalGuard
from emberformer.sweeps.pruning import TrialPruning, mark_run_pruned
from emberformer.tracking import RunLogger

FLUSH_EVERY = 10

__all__ = ["Trainer", "NonFiniteLoss", "Interrupted", "count_parameters"]


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; the run stops, best.pt is kept."""


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def prefixed(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}{k}": v for k, v in metrics.items()}


class Trainer:
    """Runs one training job; ``fit`` returns the best monitored value (the sweep objective)."""

    def __init__(self, *, epochs: int, log_metrics_every: int, seed: int, pred_thresh: float,
                 limit_batches: int | None, progress: bool, evaluate_test: bool, ceiling_samples: int,
                 preview_samples: int):  # the values: conf/train.yaml's trainer node
        for key, value in (("trainer.epochs", epochs), ("trainer.log_metrics_every", log_metrics_every)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{key} must be an integer >= 1, got {value!r}")
            if value < 1:
                raise ValueError(f"{key} must be >= 1, got {value}")
        if limit_batches is not None and (isinstance(limit_batches, bool) or not isinstance(limit_batches, int)
                                          or limit_batches < 1):
            raise ValueError(f"trainer.limit_batches must be null or an integer >= 1, got {limit_batches!r}")
        self.epochs = int(epochs)
        self.log_every = int(log_metrics_every)
        self.seed = int(seed)
        self.thresh = check_threshold(pred_thresh)
        self.limit_batches = limit_batches
        self.progress = progress
        self.evaluate_test = evaluate_test
        if isinstance(ceiling_samples, bool) or int(ceiling_samples) < 0:
            raise ValueError(f"ceiling.samples must be an integer >= 0 (0: no ceiling), got {ceiling_samples}")
        self.ceiling_samples = int(ceiling_samples)
        if isinstance(preview_samples, bool) or not isinstance(preview_samples, int) or preview_samples < 0:
            raise ValueError(f"trainer.preview_samples must be an integer >= 0, got {preview_samples!r}")
        self.preview_samples = preview_samples
        self.copy_last = CopyLast()

    # ------------------------------------------------------------------ the story
    def fit(self, *, model: nn.Module, data: FireDataModule, loss_fn: WeightedLoss,
            optimizer_factory: Callable[..., torch.optim.Optimizer], early_stopping: EarlyStopping,
            hardware: Hardware, logger: RunLogger, run_dir: Path, run_info: dict[str, Any],
            resume: dict[str, Any] | None = None, pruning: TrialPruning | None = None) -> float:
        self.pruning = pruning if pruning is not None else TrialPruning()
        self._setup(model, data, loss_fn, optimizer_factory, early_stopping, hardware, logger,
                    run_dir, run_info["config"])
        self.state = self.checkpoints.restore(resume) if resume is not None else RunState()
        epochs = self.epochs if self.trainable else 1
        if self.main:  # other ranks log nothing and write no files
            self.logger.start(self.run_dir, run_info["name"], run_info.get("group"), run_info["tags"],
                              run_info["config"], resume_id=self.state.wandb_id)
            self._print_banner(epochs)
        self.copy_last_val: dict[str, float] | None = None
        t0 = time.time()
        with SignalGuard(announce=self.main) as self.signals:
            try:
                for epoch in range(self.state.epoch, epochs + 1):
                    train_m, t_avg = self._train_epoch(epoch, epochs)
                    val_m, preview, copy_val = self._evaluate("val", f"Epoch {epoch}/{epochs} [Val]  ",
                                                              with_copy_last=self.copy_last_val is None)
                    self.copy_last_val = self.copy_last_val or copy_val
                    metrics = {**prefixed("train/", train_m), **prefixed("val/", val_m)}
                    is_best = self.early.step(epoch, metrics)
                    if is_best:
                        self.state.best_metrics = metrics
                    self._end_epoch(epoch, epochs, metrics, t_avg, is_best, preview)
                    if self.early.should_stop:
                        if self.main:
                            print(console.early_stop_block(self.early.stop_reason or "", self.early.monitor,
                                                           self.early.best_value, self.early.best_epoch,
                                                           self.early.counter))
                        break
                    if self._pruned(epoch, metrics):
                        break
            except BaseException:
                self.logger.finish(exit_code=1)  # a failed job must not leave its W&B run open
                self._teardown(wait=False)
                raise
        try:
            return self._finish(time.time() - t0)
        finally:
            self.logger.finish(exit_code=0)
            self._teardown()

    # ------------------------------------------------------------------ setup / teardown
    def _setup(self, model: nn.Module, data: FireDataModule, loss_fn: WeightedLoss,
               optimizer_factory: Callable[..., torch.optim.Optimizer], early: EarlyStopping,
               hardware: Hardware, logger: RunLogger, run_dir: Path, config: dict[str, Any]) -> None:
        """Device, model wrappers, optimizer, loaders and the checkpointer of this run."""
        rank, world_size, local_rank = distributed.world()
        self.main = rank == 0
        self.device = hardware.setup(local_rank)
        distributed.init(self.device)
        self.hw, self.data, self.loss_fn, self.early = hardware, data, loss_fn, early
        self.logger = logger if self.main else RunLogger(None)
        self.run_dir = Path(run_dir)
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
        self.loaders = {k: data.loader(k, self.seed, rank, world_size) for k in ("train", "val", "test")}
        n_train = len(self.loaders["train"])
        self.steps_per_epoch = n_train if self.limit_batches is None else min(n_train, self.limit_batches)
        self.checkpoints = Checkpointer(self.run_dir, self.model, self.optimizer, self.scaler, early, config)

    def _teardown(self, wait: bool = True) -> None:
        """Release the DDP wrapper before its process group: a DDP reducer destroyed after the
        group (and after the other rank left) can hang forever in gloo's destructor."""
        self.net = self.model
        gc.collect()
        distributed.cleanup(wait)

    def _print_banner(self, epochs: int) -> None:
        lrs = {g.get("name"): g["lr"] for g in self.optimizer.param_groups} if self.optimizer else {}
        print(console.training_banner(
            epochs=epochs, model_name=getattr(self.model, "name", type(self.model).__name__),
            n_params=self.n_params, device=self.hw.describe(), data=self.data.describe(),
            batch_size=self.data.batch_size, lrs=lrs, loss=self.loss_fn.describe(),
            early_stopping=self.early.describe(), logger_lines=self.logger.banner(), run_dir=self.run_dir,
            resumed_at=(self.state.epoch, self.state.global_step) if self.state.resumed else None,
            started_from=self.state.started_from), flush=True)
        if not self.trainable:
            print("Model has no trainable parameters: one evaluation pass, no optimizer steps.")

    # ------------------------------------------------------------------ loops
    def _bar(self, loader, desc: str):
        total = len(loader) if self.limit_batches is None else min(len(loader), self.limit_batches)
        return tqdm(loader, desc=desc, total=total, disable=not (self.progress and self.main),
                    dynamic_ncols=True, mininterval=0.5, leave=True)

    def _train_step(self, b: dict[str, Any]) -> tuple[Prediction, dict[str, torch.Tensor]]:
        """Forward, loss and (when there is anything to train) one optimizer step."""
        with torch.set_grad_enabled(self.trainable):
            pred = model_step(self.net, b, self.hw.autocast)
            parts = self.loss_fn(pred.logits, pred.target, pred.mask)
            if self.optimizer is not None:
                if hasattr(self.optimizer, "set_step"):  # a schedule: the rate follows the step
                    self.optimizer.set_step(self.state.global_step, self.steps_per_epoch, self.epochs)
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(parts["loss"]).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
        return pred, parts

    def _train_epoch(self, epoch: int, epochs: int) -> tuple[dict[str, float], float]:
        """One pass over the train split; returns its metrics and the mean history length."""
        world_size = distributed.world()[1]
        self.net.train(self.trainable)
        loader = self.loaders["train"]
        metrics = PixelMetrics(self.thresh, self.device)
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)  # loss*n, n, T*n
        host = [0.0, 0.0]  # n and T*n are known on the host: no device traffic for them
        seen = 0
        partial = self.state.take_partial()
        if partial is not None:  # resumed mid-epoch: carry the epoch's counts so far
            for name in ("counts", "pos_hist", "neg_hist"):
                if name in partial:  # checkpoints before the AP histograms were saved lack them
                    getattr(metrics, name).add_(partial[name].to(self.device))
            sums += partial["sums"].to(self.device)
            seen = int(partial["seen"])
        loader.sampler.set_epoch(epoch, seen)  # type: ignore[union-attr]
        buffer: list[tuple[int, torch.Tensor, float]] = []
        comp_names = list(self.loss_fn.terms)
        bar = self._bar(loader, f"Epoch {epoch}/{epochs} [Train]")
        for i, batch in enumerate(bar):
            if self.limit_batches is not None and i >= self.limit_batches:
                break
            T_avg = float(batch["valid_t"].sum(1).float().mean())
            pred, parts = self._train_step(to_device(batch, self.device, self.static))
            n = pred.size
            seen += n * world_size
            self.state.global_step += 1
            with torch.no_grad():
                metrics.update(pred.prob, pred.target, pred.mask, pred.last)
                vals = torch.stack([parts["loss"].detach()] + [parts[c].detach() for c in comp_names])
                sums[0] += vals[0].double() * n
                host[0] += n
                host[1] += T_avg * n
            buffer.append((self.state.global_step, vals, T_avg))
            if len(buffer) >= FLUSH_EVERY:
                self._flush(buffer, comp_names, epoch, bar)
            if self.state.global_step % self.log_every == 0:
                self._flush(buffer, comp_names, epoch, bar)
                running = metrics.compute()
                self.logger.log({f"train/{k}_step": running[k] for k in ("prec", "rec", "f1", "iou", "acc")},
                                step=self.state.global_step)
            # single process: look at the flag every step; DDP: agree on it every FLUSH_EVERY steps
            if (world_size == 1 or self.state.global_step % FLUSH_EVERY == 0) and \
                    distributed.broadcast_flag(self.signals.received is not None, self.device):
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
        return out, float(sums[2] / sums[1].clamp(min=1))

    def _flush(self, buffer: list, comp_names: list[str], epoch: int, bar) -> None:
        """Log buffered per-step values (one host sync); stop on the first non-finite loss."""
        if not buffer:
            return
        values = torch.stack([v for _, v, _ in buffer]).tolist()
        for (step, _, T_avg), row in zip(buffer, values):
            if not all(math.isfinite(x) for x in row):
                buffer.clear()
                best = self.checkpoints.path("best")
                kept = (f"best.pt (epoch {self.early.best_epoch}) is kept" if best.is_file() and self.early.best_epoch
                        else "no checkpoint was written (no epoch had finished)")
                raise NonFiniteLoss(f"non-finite loss ({row[0]}) at epoch {epoch}, step {step}; {kept}")
            rec = {"train/loss_step": row[0], **{f"train/{c}_step": x for c, x in zip(comp_names, row[1:])},
                   "train/batch_T_avg": T_avg}
            self.logger.log(rec, step=step)
        bar.set_postfix(loss=f"{values[-1][0]:.4f}")
        buffer.clear()

    @torch.no_grad()
    def _evaluate(self, split: str, desc: str | None, model: nn.Module | None = None,
                  with_copy_last: bool = False):
        """Loss and metrics of ``model`` (default: the one being trained) on a split, the first
        batch's preview samples, and copy-last's metrics on the same batches when asked."""
        net = model if model is not None else self.net
        net.eval()
        loader = self.loaders[split]
        loader.sampler.set_epoch(0)  # type: ignore[union-attr]
        metrics = PixelMetrics(self.thresh, self.device)
        copy_m = PixelMetrics(self.thresh, self.device) if with_copy_last else None
        sums = torch.zeros(2, dtype=torch.float64, device=self.device)  # loss*n, n
        seen = 0  # known on the host: no device traffic for it
        preview = None
        bar = self._bar(loader, desc) if desc else loader
        for i, batch in enumerate(bar):
            if self.limit_batches is not None and i >= self.limit_batches:
                break
            b = to_device(batch, self.device, self.static)
            pred = model_step(net, b, self.hw.autocast)
            parts = self.loss_fn(pred.logits, pred.target, pred.mask)
            metrics.update(pred.prob, pred.target, pred.mask, pred.last)
            if copy_m is not None:
                base = model_step(self.copy_last, b)
                copy_m.update(base.prob, base.target, base.mask, base.last)
            sums[0] += parts["loss"].double() * pred.size
            seen += pred.size
            if preview is None:
                k = self.preview_samples
                preview = ({"fire": b["fire"][:k].cpu(), "target": b["target"][:k].cpu(),
                            "pixel_mask": b["mask"][:k].cpu(), "seq_id": b["seq_id"][:k], "t": b["t"][:k]},
                           pred.prob[:k].cpu())
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
        return out, preview, copy_out

    # ------------------------------------------------------------------ epoch end and stops
    def _end_epoch(self, epoch: int, epochs: int, metrics: dict[str, float], t_avg: float,
                   is_best: bool, preview) -> None:
        """Epoch line, epoch-level log record, previews, then last.pt (and best.pt)."""
        if not self.main:
            return
        print(console.epoch_line(epoch, epochs, self.loss_fn.display, metrics), flush=True)
        rec: dict[str, Any] = {"epoch": epoch}
        rec.update({f"{k}_epoch": v for k, v in metrics.items()})
        rec["train/T_avg_epoch"] = t_avg
        if self.optimizer is not None:
            for g in self.optimizer.param_groups:
                rec[f"train/lr_{g.get('name', 'group')}"] = g["lr"]
        rec.update({"early_stop/counter": self.early.counter, "early_stop/best_value": self.early.best_value,
                    "early_stop/best_epoch": self.early.best_epoch})
        step = self.state.global_step
        self.logger.log(rec, step=step)
        if preview is not None and self.preview_samples > 0:
            batch, prob = preview
            paths, caps = write_previews(self.run_dir, epoch, batch, prob, self.thresh,
                                         self.preview_samples)
            self.logger.images("val/preview", paths, caps, step, epoch)
        self.checkpoints.save_epoch(self.state, epoch, metrics, is_best, self.logger.run_id)

    def _pruned(self, epoch: int, metrics: dict[str, float]) -> bool:
        """In an Optuna study: report the run's objective so far (the best monitored value, what
        the trial would return if it ended now) to its trial; True when the pruner says stop (the
        run then ends like an early stop; the sweeper records PRUNED). A best-so-far curve does not
        let one noisy epoch prune a trial whose best.pt is already ahead."""
        if not self.pruning.active:
            return False
        value = self.early.best_value if math.isfinite(self.early.best_value) else metrics[self.early.monitor]
        stop = distributed.broadcast_flag(self.main and self.pruning.report(epoch, value), self.device)
        if stop and self.main:
            print(self.pruning.message(self.early.monitor, value), flush=True)
            mark_run_pruned(self.logger, epoch)
        return stop

    def _interrupt(self, epoch: int, seen: int, metrics: PixelMetrics, sums: torch.Tensor) -> None:
        """A signal arrived: save the position inside the epoch to last.pt and stop."""
        signum = self.signals.received or signal.SIGTERM
        path = self.checkpoints.path("last")
        if self.main:
            partial = {"seen": seen, "counts": metrics.counts.cpu(), "pos_hist": metrics.pos_hist.cpu(),
                       "neg_hist": metrics.neg_hist.cpu(), "sums": sums.cpu()}
            self.checkpoints.save_partial(self.state, epoch, partial, self.logger.run_id)
            self.logger.finish(exit_code=128 + signum)
        raise Interrupted(signum, f"Interrupted at epoch {epoch}, step {self.state.global_step}; "
                                  f"resume with: python -m emberformer.train ckpt_path={path}")

    # ------------------------------------------------------------------ the end
    def _ceiling(self, summary: dict[str, Any]) -> dict[str, Any]:
        """``ceiling/test_*`` (the simulator's own ensemble on the test split, data=synthetic only)
        and the share of the copy-last -> ceiling F1 gap that best.pt closes."""
        from emberformer.scoring import ceiling  # imports the simulator (pytorchfire): only when used

        ceil = ceiling.ceiling_scores(self.data, "test", self.ceiling_samples, progress=self.progress)
        if ceil is None:  # no simulator behind the data: one line was printed
            return {}
        out: dict[str, Any] = prefixed("ceiling/test_", {k: v for k, v in ceil.items()
                                                          if k not in ("ece", "samples")})
        gap = ceiling.gap_closed(summary["test/f1"], summary["copy_last/test_f1"], ceil["f1"])
        if gap is not None:
            out["gap_closed/test_f1"] = gap
        if ceil["growth_f1"] > 0:
            out["ceiling_share/test_growth_f1"] = summary["test/growth_f1"] / ceil["growth_f1"]
        return out

    def _finish(self, wall: float) -> float:
        """Summary of the run: best epoch, copy-last, and best.pt on the test split."""
        distributed.barrier()  # rank 0 may still be writing best.pt
        summary: dict[str, Any] = {
            "best/" + self.early.monitor: self.early.best_value, "best/epoch": self.early.best_epoch,
            "params_used": self.n_params, "device": self.hw.describe(), "wall_time_s": round(wall, 1),
            **self.data.describe(),
            **prefixed("best/", self.state.best_metrics),
        }
        if self.state.started_from:
            summary["started_from"] = self.state.started_from
        if self.copy_last_val is not None:
            summary.update(prefixed("copy_last/val_", self.copy_last_val))
        best_path = self.checkpoints.path("best")
        if self.evaluate_test and not self.pruning.pruned and len(self.data.datasets["test"]) \
                and best_path.is_file():  # a pruned trial is not worth a test pass
            self.model.load_state_dict(load_checkpoint(best_path, map_location=self.device)["model"])
            test, _, copy_test = self._evaluate("test", None, model=self.model, with_copy_last=True)
            summary.update(prefixed("test/", test))
            summary.update(prefixed("copy_last/test_", copy_test or {}))
            if self.main and self.ceiling_samples:
                summary.update(self._ceiling(summary))
        if self.main:
            self.logger.summary(summary)
            print(console.results(summary, self.early.monitor, self.early.best_value, self.early.best_epoch))
            print(console.complete(), flush=True)
        best = self.early.best_value
        if not math.isfinite(best):
            raise NonFiniteLoss(f"no finite {self.early.monitor} in any epoch")
        return float(best)
