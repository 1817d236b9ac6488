"""The evaluation accumulator: the model's and copy-last's pixel metrics over one group of samples
(a split, a history length, a lead time), with the loss and calibration when asked.

Training's validation and test passes, ``evaluate`` and the rollouts all score through this one
class, so a metric has one name everywhere: the W&B keys' (``prec``, ``rec``, ``acc``, ...).
"""
from __future__ import annotations

import torch

from emberformer.scoring.metrics import Calibration, PixelMetrics
from emberformer.training import distributed

# metrics.json / report.md rows, in order; the names of PixelMetrics and the W&B keys
KEYS = ("f1", "iou", "prec", "rec", "acc", "ap", "brier", "growth_f1", "growth_prec", "growth_rec", "growth_iou",
        "ece", "samples")


def leading(keys: tuple[str, ...], first: str) -> tuple[str, ...]:
    """``keys`` with ``first`` (the data's headline metric, e.g. WildfireSpreadTS's ``ap``) moved
    to the front; the others keep their order. Unchanged when ``first`` is already first or absent."""
    return (first, *(k for k in keys if k != first)) if first in keys else keys


class Scores:
    """Model and (``copy_last``) copy-last accumulators over one group of samples; ``calibration``
    adds the expected calibration error; ``loss`` the mean loss (summed by :meth:`add_loss`)."""

    def __init__(self, threshold: float, device: torch.device, *, copy_last: bool = True,
                 calibration: bool = True, loss: bool = False):
        names = ("model", "copy_last") if copy_last else ("model",)
        self.pixels = {name: PixelMetrics(threshold, device) for name in names}
        self.calib = {name: Calibration(device) for name in names} if calibration else {}
        self.loss_sums = torch.zeros(2, dtype=torch.float64, device=device)  # loss*n, n
        self.with_loss = loss
        self.samples = 0  # known on the host: no device traffic for it

    @property
    def copy_last(self) -> bool:
        return "copy_last" in self.pixels

    def update(self, prob: torch.Tensor, copy_prob: torch.Tensor | None, last: torch.Tensor,
               target: torch.Tensor, mask: torch.Tensor) -> None:
        for name, p in (("model", prob), ("copy_last", copy_prob)):
            if name in self.pixels:
                self.pixels[name].update(p, target, mask, last)
                if name in self.calib:
                    self.calib[name].update(p, target, mask)
        self.samples += prob.shape[0]

    def add_loss(self, loss: torch.Tensor, n: int) -> None:
        self.loss_sums[0] += loss.double() * n

    def running_loss(self) -> float:
        """The mean loss so far on this rank (one host sync: for a progress bar)."""
        return float(self.loss_sums[0]) / self.samples

    def all_reduce(self) -> None:
        """Sum counts, AP histograms, calibration bins and loss over DDP ranks (a no-op in one
        process), so every metric equals a single process on the same samples; call once, at the end."""
        self.loss_sums[1] += self.samples
        for m in self.pixels.values():
            m.all_reduce()
        for c in self.calib.values():
            distributed.all_reduce_(c.stats)
        distributed.all_reduce_(self.loss_sums)

    def metrics(self, name: str = "model") -> dict[str, float]:
        """Every PixelMetrics value of ``name`` (with ``loss`` for the model when one was added)."""
        out = self.pixels[name].compute()
        if name == "model" and self.with_loss:
            out["loss"] = float(self.loss_sums[0] / self.loss_sums[1].clamp(min=1))
        return out

    def result(self) -> dict[str, dict[str, float]]:
        """metrics.json's blocks: ``{"model": {KEYS...}, "copy_last": {...}}``."""
        out = {}
        for name, m in self.pixels.items():
            r = m.compute()
            r["ece"] = self.calib[name].compute() if name in self.calib else float("nan")
            r["samples"] = self.samples
            out[name] = {k: r[k] for k in KEYS}
        return out
