"""Local run records: metrics.jsonl (one JSON object per log call) and curves.png."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


class JsonlWriter:
    """Appends every log call to ``<run dir>/metrics.jsonl``; flushed each call, so a crash loses nothing."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / "metrics.jsonl"
        self._f = open(self.path, "a", buffering=1)

    def write(self, record: Mapping[str, Any]) -> None:
        self._f.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")

    def close(self) -> None:
        self._f.close()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def plot_curves(metrics_path: Path, out_path: Path) -> Path | None:
    """loss, F1, IoU, precision, recall by epoch, train vs val."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r for r in read_jsonl(metrics_path) if "epoch" in r and "val/f1_epoch" in r]
    if not epochs:
        return None
    names = [("loss", "Loss"), ("f1", "F1"), ("iou", "IoU"), ("prec", "Precision"), ("rec", "Recall")]
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.2))
    x = [r["epoch"] for r in epochs]
    for ax, (key, title) in zip(axes, names):
        for split in ("train", "val"):
            y = [r.get(f"{split}/{key}_epoch") for r in epochs]
            if all(isinstance(v, (int, float)) for v in y):
                ax.plot(x, y, marker="o", ms=3, label=split)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(out_path, dpi=90)
    plt.close(fig)
    return out_path
