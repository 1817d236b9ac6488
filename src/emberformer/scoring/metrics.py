"""Pixel-level metrics accumulated over a whole epoch, on the device, without per-step syncs.

Counts (tp, fp, fn, tn) are summed over every valid pixel of the epoch, so an epoch's F1 is the
F1 of all its pixels, not a mean of per-batch F1s. The same counts on *growth* pixels (not on fire
in the last input frame) show whether a model predicts spread at all: copy-last scores perfectly
on old fire and zero on growth. Average precision comes from fixed-bin histograms of the
probabilities of positive and negative pixels, so it costs constant memory. The Brier score
(``brier``: the mean squared difference of the probability and the 0/1 target over the valid
pixels) is the proper score of a probability forecast, which fits a stochastic target.
"""
from __future__ import annotations

import torch

from emberformer.training import distributed

AP_BINS = 1000


def ratios(tp: float, fp: float, fn: float, tn: float) -> dict[str, float]:
    """precision, recall, f1, iou, acc from counts.

    A ratio with a zero denominator is 1.0 when there was nothing to get wrong (no fire to find
    and none predicted) and 0.0 otherwise.
    """
    def div(a: float, b: float) -> float:
        return a / b if b > 0 else (1.0 if fp + fn == 0 else 0.0)

    return {
        "prec": div(tp, tp + fp),
        "rec": div(tp, tp + fn),
        "f1": div(2 * tp, 2 * tp + fp + fn),
        "iou": div(tp, tp + fp + fn),
        "acc": div(tp + tn, tp + fp + fn + tn),
    }


def average_precision(pos_hist: torch.Tensor, neg_hist: torch.Tensor) -> float:
    """AP (area under the step precision-recall curve) from per-bin counts, thresholds high->low."""
    tp = pos_hist.flip(0).cumsum(0).double()
    fp = neg_hist.flip(0).cumsum(0).double()
    total_pos = tp[-1]
    if total_pos <= 0:
        return 0.0
    precision = tp / (tp + fp).clamp(min=1)
    recall_gain = torch.diff(tp, prepend=tp.new_zeros(1)) / total_pos
    return float((precision * recall_gain).sum())


def check_threshold(value: object) -> float:
    """``metrics.pred_thresh`` as a float in (0, 1), or a one-line ValueError naming the key: the
    one check every scorer's threshold goes through."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ValueError(f"metrics.pred_thresh must be in (0, 1), got {value}")
    return float(value)


class PixelMetrics:
    """Epoch accumulator of confusion counts (all and growth pixels) and AP histograms."""

    def __init__(self, threshold: float = 0.5, device: torch.device | str = "cpu"):
        self.threshold = threshold
        self.device = torch.device(device)
        self.reset()

    def reset(self) -> None:
        # [tp, fp, fn, tn] for all valid pixels, then the same for growth pixels
        self.counts = torch.zeros(8, dtype=torch.float64, device=self.device)
        self.pos_hist = torch.zeros(AP_BINS, dtype=torch.float64, device=self.device)
        self.neg_hist = torch.zeros(AP_BINS, dtype=torch.float64, device=self.device)
        self.brier_sums = torch.zeros(2, dtype=torch.float64, device=self.device)  # sum (p - y)^2, pixels

    @torch.no_grad()
    def update(self, prob: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
               last: torch.Tensor) -> None:
        """prob, target [B,1,H,W] float; mask, last [B,1,H,W] bool (valid pixels, last input fire)."""
        prob = torch.nan_to_num(prob.float(), nan=0.0)  # a NaN step is reported by the trainer, not here
        pred = prob > self.threshold
        tgt = target > 0.5
        growth = mask & ~last
        rows = []
        for m in (mask, growth):
            rows += [(pred & tgt & m).sum(), (pred & ~tgt & m).sum(),
                     (~pred & tgt & m).sum(), (~pred & ~tgt & m).sum()]
        self.counts += torch.stack(rows).to(torch.float64)
        # scatter_add into fixed-size histograms: no data-dependent shapes, so no host sync on GPU
        bins = (prob.clamp(0, 1) * (AP_BINS - 1)).round().long().flatten()
        valid = mask.flatten()
        self.pos_hist.scatter_add_(0, bins, (tgt.flatten() & valid).to(torch.float64))
        self.neg_hist.scatter_add_(0, bins, (~tgt.flatten() & valid).to(torch.float64))
        err = (prob.clamp(0, 1).double() - tgt.double()).square()
        self.brier_sums += torch.stack([(err * mask).sum(), mask.sum().double()])

    def all_reduce(self) -> None:
        """Sum the counts and the AP histograms over DDP ranks (a no-op in one process)."""
        for t in (self.counts, self.pos_hist, self.neg_hist, self.brier_sums):
            distributed.all_reduce_(t)

    def compute(self) -> dict[str, float]:
        """One host sync: loss-free metric dict with growth_* and ap."""
        c = self.counts.tolist()
        out = ratios(*c[:4])
        out.update({f"growth_{k}": v for k, v in ratios(*c[4:]).items()})
        out["ap"] = average_precision(self.pos_hist.cpu(), self.neg_hist.cpu())
        err, n = self.brier_sums.tolist()
        out["brier"] = err / n if n > 0 else 0.0
        return out


class Calibration:
    """Expected calibration error in constant memory: per-bin count, sum of prob, sum of target."""

    def __init__(self, device: torch.device | str = "cpu", bins: int = 15):
        self.bins = bins
        self.stats = torch.zeros(3, bins, dtype=torch.float64, device=torch.device(device))

    @torch.no_grad()
    def update(self, prob: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
        p = prob[mask].double().clamp(0, 1)
        idx = (p * self.bins).long().clamp(max=self.bins - 1)
        self.stats[0] += torch.bincount(idx, minlength=self.bins).double()
        self.stats[1] += torch.bincount(idx, weights=p, minlength=self.bins)
        self.stats[2] += torch.bincount(idx, weights=(target[mask] > 0.5).double(), minlength=self.bins)

    def compute(self) -> float:
        """sum_b n_b/N * |mean prob_b - mean target_b| = sum_b |sum prob_b - sum target_b| / N."""
        n, sp, st = self.stats.cpu()
        return float((sp - st).abs().sum() / n.sum()) if n.sum() > 0 else 0.0

    def table(self) -> dict[str, list[float | None]]:
        """The reliability diagram's numbers per bin: pixels, mean probability, observed frequency
        (None in an empty bin: JSON null, and a cached table reads back equal)."""
        n, sp, st = self.stats.cpu().tolist()
        mean = lambda s, k: s / k if k > 0 else None  # noqa: E731
        return {"count": n, "prob": [mean(a, k) for a, k in zip(sp, n)],
                "freq": [mean(b, k) for b, k in zip(st, n)]}
