"""What a training run prints, in the reference guide's format: banner, epoch lines,
early-stopping block, and the closing results beside copy-last."""
from __future__ import annotations

from typing import Any, Mapping

from emberformer.scoring.scores import leading

RULE = "=" * 60
RESULT_ROWS = (("val (best epoch)", "best/val/"), ("copy-last val", "copy_last/val_"),
               ("test (best.pt)", "test/"), ("copy-last test", "copy_last/test_"),
               ("ceiling test", "ceiling/test_"))


def banner(lines: list[str], title: str) -> str:
    return "\n".join([RULE, title, *[f"  {ln}" for ln in lines], RULE])


def training_banner(*, epochs: int, model_name: str, n_params: int, device: str,
                    data: Mapping[str, int], batch_size: int, lrs: Mapping[str, float],
                    loss: str, early_stopping: str, logger_lines: list[str], run_dir: Any,
                    resumed_at: tuple[int, int] | None, started_from: str | None = None) -> str:
    """The banner printed before the first epoch."""
    # what a data set counts its samples in: sequences, fires (WildfireSpreadTS), files (NDWS)
    unit = next((u for u in ("sequences", "fires", "files") if f"data/train_{u}" in data), "fires")
    lines = [
        f"Model: {model_name}",
        f"Parameters used: {n_params:,}",
        f"Device: {device}",
        f"Train samples: {data['data/train_samples']}",
        f"Val samples: {data['data/val_samples']}",
        f"{unit.capitalize()}: train {data[f'data/train_{unit}']}, val {data[f'data/val_{unit}']}, "
        f"test {data[f'data/test_{unit}']} (test samples: {data['data/test_samples']})",
        f"Batch size: {batch_size}",
    ]
    if "data/fold" in data:  # WildfireSpreadTS: which of the 12 year splits
        lines.insert(3, f"Fold: {data['data/fold']}")
    if lrs:
        lines.append(f"LR temporal: {lrs.get('temporal', 0):.2e}, LR spatial: {lrs.get('spatial', 0):.2e}")
    lines += [f"Loss: {loss}", f"Early stopping: {early_stopping}", *logger_lines, f"Run dir: {run_dir}"]
    if started_from:
        lines.append(f"New run started from: {started_from}")
    if resumed_at is not None:
        lines.append(f"Resumed at epoch {resumed_at[0]} (step {resumed_at[1]})")
    return banner(lines, f"Starting Training: {epochs} epochs")


def epoch_line(epoch: int, epochs: int, loss_name: str, m: Mapping[str, float]) -> str:
    """``[Epoch  1/50] BCE+Dice | train: loss=… f1=… prec=… | val: loss=… f1=… prec=… iou=…``"""
    w = len(str(epochs))
    return (f"[Epoch {epoch:>{w}}/{epochs}] {loss_name} | "
            f"train: loss={m['train/loss']:.4f} f1={m['train/f1']:.3f} prec={m['train/prec']:.3f} | "
            f"val: loss={m['val/loss']:.4f} f1={m['val/f1']:.3f} prec={m['val/prec']:.3f} "
            f"iou={m['val/iou']:.3f}")


def early_stop_block(reason: str, monitor: str, best: float, best_epoch: int, counter: int) -> str:
    if reason == "targets":
        return (f"\n🎯 Target metrics achieved!\n"
                f"   Best {monitor}: {best:.4f} at epoch {best_epoch}\n")
    return (f"\n🛑 Early stopping triggered!\n"
            f"   Best {monitor}: {best:.4f} at epoch {best_epoch}\n"
            f"   No improvement for {counter} epochs\n")


def results(summary: Mapping[str, Any], monitor: str, best: float, best_epoch: int, first: str = "f1") -> str:
    """The closing block: best epoch, then each split beside copy-last (``first``, the data's
    headline metric, leading each row), then the wall time."""
    out = [f"\nBest {monitor}: {best:.4f} at epoch {best_epoch}"]
    keys = leading(("f1", "iou", "prec", "rec", "growth_f1", "ap", "brier"), first)
    for label, prefix in RESULT_ROWS:
        if f"{prefix}f1" not in summary:
            continue
        out.append(f"  {label:<17} " + " ".join(f"{k}={summary[prefix + k]:.4f}" for k in keys))
    if f"gap_closed/test_{first}" in summary:
        line = (f"  gap closed: {100 * summary[f'gap_closed/test_{first}']:.1f}% of copy-last -> ceiling "
                f"test {first.upper()}")
        if "ceiling_share/test_growth_f1" in summary:
            line += f"; growth F1 at {100 * summary['ceiling_share/test_growth_f1']:.1f}% of the ceiling's"
        out.append(line)
    out.append(f"  wall time: {summary['wall_time_s']:.1f} s")
    return "\n".join(out)


def complete() -> str:
    return f"{RULE}\nTraining complete!\n{RULE}"
