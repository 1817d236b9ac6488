"""The console output of the seed guide: banner, epoch lines, early-stopping block."""
from __future__ import annotations

from typing import Mapping

RULE = "=" * 60


def banner(lines: list[str], title: str) -> str:
    return "\n".join([RULE, title, *[f"  {ln}" for ln in lines], RULE])


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


def complete() -> str:
    return f"{RULE}\nTraining complete!\n{RULE}"
