"""Segmentation losses over valid pixels: BCE, soft Dice, Focal, Tversky and weighted sums.

Every loss takes logits [B,1,H,W], a float target in {0,1} and a bool ``mask`` of valid pixels,
and returns a dict with the total under ``"loss"`` and each weighted term's raw value under its
own name (``"bce"``, ``"dice"``, …), which the logger turns into ``train/<name>_step``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_EPS = 1.0  # smoothing of the overlap losses: an empty target and empty prediction score 0 loss


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum().clamp(min=1.0)


def bce(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
        pos_weight: float | str | None = None) -> torch.Tensor:
    """Binary cross-entropy; pos_weight "auto" = negatives/positives of this batch (max 100)."""
    pw = None
    if pos_weight == "auto":
        m = mask.to(target.dtype)
        pos = (target * m).sum()
        pw = ((m.sum() - pos) / pos.clamp(min=1.0)).clamp(1.0, 100.0)
    elif pos_weight is not None:
        pw = torch.tensor(float(pos_weight), device=logits.device)
    per_px = F.binary_cross_entropy_with_logits(logits.float(), target, pos_weight=pw, reduction="none")
    return _masked_mean(per_px, mask)


def soft_dice(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 - soft Dice over all valid pixels of the batch (global, so empty samples do not explode)."""
    p = torch.sigmoid(logits.float()) * mask
    t = target * mask
    inter = (p * t).sum()
    return 1 - (2 * inter + _EPS) / (p.sum() + t.sum() + _EPS)


def focal(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
          alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Focal loss (Lin et al. 2017) with alpha weighting the positive class."""
    logits = logits.float()
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p = torch.sigmoid(logits)
    p_t = p * target + (1 - p) * (1 - target)
    a_t = alpha * target + (1 - alpha) * (1 - target)
    return _masked_mean(a_t * (1 - p_t) ** gamma * ce, mask)


def tversky(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
            alpha: float = 0.7, beta: float = 0.3) -> torch.Tensor:
    """1 - Tversky index; alpha weights false positives, beta false negatives."""
    p = torch.sigmoid(logits.float()) * mask
    t = target * mask
    tp = (p * t).sum()
    fp = (p * (1 - t)).sum()
    fn = ((1 - p) * t).sum()
    return 1 - (tp + _EPS) / (tp + alpha * fp + beta * fn + _EPS)


class WeightedLoss(nn.Module):
    """Sum of named terms with weights; knows how to describe itself for the console."""

    display: str = ""
    terms: dict[str, float]

    def components(self, logits, target, mask) -> dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def forward(self, logits: torch.Tensor, target: torch.Tensor,
                mask: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = self.components(logits, target, mask)
        parts["loss"] = sum(self.terms[k] * parts[k] for k in self.terms)
        return parts

    def describe(self) -> str:
        """e.g. ``BCE (0.5) + Dice (0.5)`` for the start banner."""
        names = self.display.split("+")
        return " + ".join(f"{n} ({w:g})" for n, w in zip(names, self.terms.values()))

    @staticmethod
    def _check(**weights: float) -> None:
        for k, w in weights.items():
            if w < 0:
                raise ValueError(f"loss.{k} must be >= 0, got {w}")
        if sum(weights.values()) <= 0:
            raise ValueError(f"loss weights {', '.join('loss.' + k for k in weights)} are all zero; "
                             "at least one must be > 0")


class BCEDiceLoss(WeightedLoss):
    """bce_weight * BCE + dice_weight * soft Dice (the reference guide's loss)."""

    display = "BCE+Dice"

    def __init__(self, bce_weight: float = 0.5, dice_weight: float = 0.5,
                 pos_weight: float | str | None = None):
        super().__init__()
        self._check(bce_weight=bce_weight, dice_weight=dice_weight)
        self.terms = {"bce": float(bce_weight), "dice": float(dice_weight)}
        self.pos_weight = _check_pos_weight(pos_weight)

    def components(self, logits, target, mask):
        return {"bce": bce(logits, target, mask, self.pos_weight), "dice": soft_dice(logits, target, mask)}


class BCELoss(WeightedLoss):
    """BCE alone, optionally with a positive-class weight (a number or "auto")."""

    display = "BCE"

    def __init__(self, pos_weight: float | str | None = None):
        super().__init__()
        self.terms = {"bce": 1.0}
        self.pos_weight = _check_pos_weight(pos_weight)

    def components(self, logits, target, mask):
        return {"bce": bce(logits, target, mask, self.pos_weight)}


class DiceLoss(WeightedLoss):
    """Soft Dice alone."""

    display = "Dice"

    def __init__(self):
        super().__init__()
        self.terms = {"dice": 1.0}

    def components(self, logits, target, mask):
        return {"dice": soft_dice(logits, target, mask)}


class FocalTverskyLoss(WeightedLoss):
    """focal_weight * Focal + tversky_weight * Tversky."""

    display = "Focal+Tversky"

    def __init__(self, focal_weight: float = 0.7, tversky_weight: float = 0.3,
                 focal_alpha: float = 0.25, focal_gamma: float = 2.0,
                 tversky_alpha: float = 0.7, tversky_beta: float = 0.3):
        super().__init__()
        self._check(focal_weight=focal_weight, tversky_weight=tversky_weight)
        self.terms = {"focal": float(focal_weight), "tversky": float(tversky_weight)}
        self.focal_args = (focal_alpha, focal_gamma)
        self.tversky_args = (tversky_alpha, tversky_beta)

    def components(self, logits, target, mask):
        return {"focal": focal(logits, target, mask, *self.focal_args),
                "tversky": tversky(logits, target, mask, *self.tversky_args)}


def _check_pos_weight(pos_weight: float | str | None) -> float | str | None:
    if pos_weight is None or pos_weight == "auto":
        return pos_weight
    try:
        value = float(pos_weight)
    except (TypeError, ValueError):
        value = -1.0
    if value <= 0:
        raise ValueError(f"loss.pos_weight must be null, \"auto\" or a number > 0, got {pos_weight!r}")
    return value
