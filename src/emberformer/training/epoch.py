"""One epoch of a run: the training pass (logged every ``FLUSH_EVERY`` steps, stoppable by a
signal after any step), the validation pass and what the end of an epoch writes.

Per-step values stay on the device and are flushed to the logger every ``FLUSH_EVERY`` steps (one
host sync), so a GPU is never stalled by ``.item()`` on every step.
"""
from __future__ import annotations

import math
import signal
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from emberformer.data.dataset import to_device
from emberformer.scoring.metrics import PixelMetrics
from emberformer.scoring.scores import Scores
from emberformer.training import console, distributed
from emberformer.training.previews import write_previews
from emberformer.training.run_setup import RunSetup
from emberformer.training.run_state import Interrupted, NonFiniteLoss, RunState
from emberformer.training.step import Prediction, evaluate, train_step

FLUSH_EVERY = 10

Preview = tuple[dict[str, Any], torch.Tensor]


def progress_bar(run: RunSetup, loader: DataLoader, desc: str) -> tqdm:
    limit = run.settings.limit_batches
    total = len(loader) if limit is None else min(len(loader), limit)
    return tqdm(loader, desc=desc, total=total, disable=not (run.settings.progress and run.main),
                dynamic_ncols=True, mininterval=0.5, leave=True)


def train_epoch(run: RunSetup, state: RunState, epoch: int) -> tuple[dict[str, float], float]:
    """One pass over the train split; returns its metrics and the mean history length."""
    s, learner = run.settings, run.learner
    learner.net.train(learner.trainable)
    loader = run.loaders["train"]
    metrics = PixelMetrics(s.thresh, run.device)
    sums = torch.zeros(3, dtype=torch.float64, device=run.device)  # loss*n, n, T*n
    host = [0.0, 0.0]  # n and T*n are known on the host: no device traffic for them
    seen = 0
    partial = state.take_partial()
    if partial is not None:  # resumed mid-epoch: carry the epoch's counts so far
        for name in ("counts", "pos_hist", "neg_hist", "brier_sums"):
            if name in partial:  # checkpoints before the AP histograms were saved lack them
                getattr(metrics, name).add_(partial[name].to(run.device))
        sums += partial["sums"].to(run.device)
        seen = int(partial["seen"])
    loader.sampler.set_epoch(epoch, seen)  # type: ignore[union-attr]
    buffer: list[tuple[int, torch.Tensor, float]] = []
    comp_names = list(run.loss_fn.terms)
    bar = progress_bar(run, loader, f"Epoch {epoch}/{run.epochs} [Train]")
    for i, batch in enumerate(bar):
        if s.limit_batches is not None and i >= s.limit_batches:
            break
        T_avg = float(torch.as_tensor(batch["valid_t"]).sum(1).float().mean())
        pred, parts = train_step(learner, to_device(batch, run.device, run.static), run.loss_fn,
                                 run.hardware.autocast, (state.global_step, run.steps_per_epoch, s.epochs))
        n = pred.size
        seen += n * run.world_size
        state.global_step += 1
        with torch.no_grad():
            metrics.update(pred.prob, pred.target, pred.mask, pred.last)
            vals = torch.stack([parts["loss"].detach()] + [parts[c].detach() for c in comp_names])
            sums[0] += vals[0].double() * n
            host[0] += n
            host[1] += T_avg * n
        buffer.append((state.global_step, vals, T_avg))
        if len(buffer) >= FLUSH_EVERY:
            flush(run, buffer, comp_names, epoch, bar)
        if state.global_step % s.log_every == 0:
            flush(run, buffer, comp_names, epoch, bar)
            running = metrics.compute()
            run.logger.log({f"train/{k}_step": running[k] for k in ("prec", "rec", "f1", "iou", "acc")},
                           step=state.global_step)
        # single process: look at the flag every step; DDP: agree on it every FLUSH_EVERY steps
        if (run.world_size == 1 or state.global_step % FLUSH_EVERY == 0) and \
                distributed.broadcast_flag(run.signals.received is not None, run.device):
            flush(run, buffer, comp_names, epoch, bar)
            sums[1] += host[0]
            sums[2] += host[1]
            interrupt(run, state, epoch, seen, metrics, sums)
    flush(run, buffer, comp_names, epoch, bar)
    bar.close()
    sums[1] += host[0]
    sums[2] += host[1]
    metrics.all_reduce()
    distributed.all_reduce_(sums)
    out = metrics.compute()
    out["loss"] = float(sums[0] / sums[1].clamp(min=1))
    return out, float(sums[2] / sums[1].clamp(min=1))


def flush(run: RunSetup, buffer: list, comp_names: list[str], epoch: int, bar: tqdm) -> None:
    """Log buffered per-step values (one host sync); stop on the first non-finite loss."""
    if not buffer:
        return
    values = torch.stack([v for _, v, _ in buffer]).tolist()
    for (step, _, T_avg), row in zip(buffer, values):
        if not all(math.isfinite(x) for x in row):
            buffer.clear()
            best_epoch = run.early.best_epoch
            kept = (f"best.pt (epoch {best_epoch}) is kept" if run.checkpoints.path("best").is_file() and best_epoch
                    else "no checkpoint was written (no epoch had finished)")
            raise NonFiniteLoss(f"non-finite loss ({row[0]}) at epoch {epoch}, step {step}; {kept}")
        rec = {"train/loss_step": row[0], **{f"train/{c}_step": x for c, x in zip(comp_names, row[1:])},
               "train/batch_T_avg": T_avg}
        run.logger.log(rec, step=step)
    bar.set_postfix(loss=f"{values[-1][0]:.4f}")
    buffer.clear()


def interrupt(run: RunSetup, state: RunState, epoch: int, seen: int, metrics: PixelMetrics,
              sums: torch.Tensor) -> None:
    """A signal arrived: save the position inside the epoch to last.pt and stop."""
    signum = run.signals.received or signal.SIGTERM
    path = run.checkpoints.path("last")
    if run.main:
        partial = {"seen": seen, "counts": metrics.counts.cpu(), "pos_hist": metrics.pos_hist.cpu(),
                   "neg_hist": metrics.neg_hist.cpu(), "brier_sums": metrics.brier_sums.cpu(), "sums": sums.cpu()}
        run.checkpoints.save_partial(state, epoch, partial, run.logger.run_id)
        run.logger.finish(exit_code=128 + signum)
    raise Interrupted(signum, f"Interrupted at epoch {epoch}, step {state.global_step}; "
                              f"resume with: python -m emberformer.train ckpt_path={path}")


def score_split(run: RunSetup, split: str, desc: str | None, *, copy_last: bool,
                net: torch.nn.Module | None = None) -> tuple[dict[str, float], Preview | None, dict[str, float] | None]:
    """Loss and metrics of ``net`` (default: the one being trained) on a split, the first
    batch's preview samples, and copy-last's metrics on the same batches when asked."""
    loader = run.loaders[split]
    bar = progress_bar(run, loader, desc) if desc else None
    scores = Scores(run.settings.thresh, run.device, copy_last=copy_last, calibration=False, loss=True)
    previews: list[Preview] = []
    k = run.settings.preview_samples

    def each(i: int, b: dict[str, Any], pred: Prediction, _copy: Prediction | None) -> None:
        if not previews:
            previews.append(({"fire": b["fire"][:k].cpu(), "target": b["target"][:k].cpu(),
                              "pixel_mask": b["mask"][:k].cpu(), "unknown": b["unknown"][:k].cpu(),
                              "seq_id": b["seq_id"][:k], "t": b["t"][:k]},
                             pred.prob[:k].cpu()))
        if bar is not None and i % FLUSH_EVERY == 0:
            bar.set_postfix(loss=f"{scores.running_loss():.4f}")

    evaluate(net if net is not None else run.learner.net, loader, scores, device=run.device, static=run.static,
             autocast=run.hardware.autocast, loss_fn=run.loss_fn, limit_batches=run.settings.limit_batches,
             batches=bar, each=each)
    scores.all_reduce()
    out = scores.metrics()
    if bar is not None:
        bar.set_postfix(loss=f"{out['loss']:.4f}")
        bar.close()
    return out, previews[0] if previews else None, scores.metrics("copy_last") if copy_last else None


def end_epoch(run: RunSetup, state: RunState, epoch: int, metrics: dict[str, float], t_avg: float,
              is_best: bool, preview: Preview | None) -> None:
    """Epoch line, epoch-level log record, previews, then last.pt (and best.pt)."""
    if not run.main:
        return
    print(console.epoch_line(epoch, run.epochs, run.loss_fn.display, metrics), flush=True)
    rec: dict[str, Any] = {"epoch": epoch}
    rec.update({f"{k}_epoch": v for k, v in metrics.items()})
    rec["train/T_avg_epoch"] = t_avg
    optimizer = run.learner.optimizer
    if optimizer is not None:
        for g in optimizer.param_groups:
            rec[f"train/lr_{g.get('name', 'group')}"] = g["lr"]
    rec.update({"early_stop/counter": run.early.counter, "early_stop/best_value": run.early.best_value,
                "early_stop/best_epoch": run.early.best_epoch})
    step = state.global_step
    run.logger.log(rec, step=step)
    k = run.settings.preview_samples
    if preview is not None and k > 0:
        batch, prob = preview
        paths, caps = write_previews(run.run_dir, epoch, batch, prob, run.settings.thresh, k)
        run.logger.images("val/preview", paths, caps, step, epoch)
    run.checkpoints.save_epoch(state, epoch, metrics, is_best, run.logger.run_id)
