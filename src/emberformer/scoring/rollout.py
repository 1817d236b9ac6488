"""Autoregressive rollouts: forecast K frames ahead with a next-step model, scored by lead time.

For a sample (sequence s, observed frames 0..t) the forecast at lead 1 is the model's ordinary
next-step prediction. Its frame (``prob > metrics.pred_thresh``, united with the previous footprint,
because the masks are cumulative) is appended to the history with the weather row of its time step,
and the model is run again, up to lead K. The inputs are built by the data pipeline itself: the
batch for lead k is the data set's own sample (s, t + k - 1) (true weather rows 0..t + k - 1,
target frame t + k, ``data.max_history`` applied as in training) with its last k - 1 frames
replaced by the forecast ones. The model is called only through :func:`model_step`.

Scored at every lead, on the same samples (those with K real frames after t):

- model: its forecast probability at that lead (AP and ECE from it, F1 etc. at the threshold);
- copy-last: the last observed frame, for every lead (the suite's :class:`CopyLast` on the
  observed history);
- ceiling (built-in data): :func:`emberformer.scoring.ceiling.by_lead`.

Growth pixels are those not on fire in the last *observed* frame, for all three.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager

import torch
from torch import nn

from emberformer.data.dataset import FireSamples, collate, to_device
from emberformer.training.step import model_step
from emberformer.models.copy_last import CopyLast

CURVES = (("model", "model", "o-"), ("copy_last", "copy-last", "s--"), ("ceiling", "ceiling", "^:"))


@dataclass
class Lead:
    """One lead's forecasts for a batch of samples (all [B, 1, H, W] on the device)."""

    lead: int
    prob: torch.Tensor  # the model's forecast probability
    frame: torch.Tensor  # bool: the forecast footprint fed back (prob > threshold, or already on fire)
    copy_prob: torch.Tensor  # copy-last: the last observed frame
    observed: torch.Tensor  # bool: the last observed frame (growth is counted against it)
    target: torch.Tensor  # the true frame t + lead
    mask: torch.Tensor  # bool: pixels inside each frame


def frames_ahead(ds: FireSamples, index: int) -> int:
    """How many real frames follow sample ``index``'s last observed frame."""
    sid, t = ds.samples[index]
    return ds.meta[sid].frames - 1 - t


def max_horizon(ds: FireSamples) -> int:
    """The largest horizon any sample of ``ds`` allows (0 for an empty data set)."""
    return max((ds.meta[sid].frames - 1 for sid in ds.seq_ids), default=0)


def eligible(ds: FireSamples, horizon: int) -> list[int]:
    """Indices of the samples with ``horizon`` real frames ahead: every lead is scored on these."""
    return [i for i in range(len(ds)) if frames_ahead(ds, i) >= horizon]


def check_horizon(horizon: Any, ds: FireSamples | None = None, where: str = "") -> int:
    """``horizon`` as an int >= 1 that some sample of ``ds`` allows, else a one-line ValueError."""
    if isinstance(horizon, bool) or not isinstance(horizon, int):
        raise ValueError(f"horizon must be an integer >= 1 (frames ahead to forecast), got {horizon!r}")
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1 (frames ahead to forecast), got {horizon}")
    if ds is not None and horizon > max_horizon(ds):
        longest = max_horizon(ds)
        raise ValueError(f"horizon={horizon} is larger than any sequence {where}allows: the longest has "
                         f"{longest + 1} frames, so horizon=1..{longest}")
    return horizon


@torch.no_grad()
def rollout_batch(model: nn.Module, ds: FireSamples, indices: list[int], horizon: int,
                  static: torch.Tensor, device: torch.device, threshold: float,
                  autocast: Callable[[], ContextManager] = contextlib.nullcontext) -> list[Lead]:
    """Forecast leads 1..``horizon`` for the samples ``indices`` of ``ds`` (each must have
    ``horizon`` frames ahead); ``static`` is the raster on ``device``."""
    if any(frames_ahead(ds, i) < horizon for i in indices):
        raise ValueError(f"a sample has fewer than horizon={horizon} frames ahead")
    pairs = [ds.samples[i] for i in indices]
    position = {pair: i for i, pair in enumerate(ds.samples)}
    copy_last = CopyLast()
    leads: list[Lead] = []
    forecast: list[torch.Tensor] = []  # forecast frames [B, H, W] float 0/1, lead 1 first
    for k in range(1, horizon + 1):
        # the data set's sample (s, t + k - 1): true weather up to row t + k - 1, target frame t + k
        b = to_device(collate([ds[position[(sid, t + k - 1)]] for sid, t in pairs]), device, static)
        n = min(k - 1, b["fire"].shape[1])  # max_history may have dropped the oldest forecasts
        if n:
            b["fire"][:, -n:] = torch.stack(forecast[-n:], dim=1)
        pred = model_step(model, b, autocast)
        if k == 1:
            observed, copy_prob = pred.last, model_step(copy_last, b).prob
        frame = ((pred.prob > threshold) | pred.last) & b["mask"]
        forecast.append(frame[:, 0].float())
        leads.append(Lead(k, pred.prob, frame, copy_prob, observed, pred.target, pred.mask))
    return leads


@torch.no_grad()
def score_by_lead(model: nn.Module, ds: FireSamples, horizon: int, static: torch.Tensor,
                  device: torch.device, threshold: float, batch_size: int, new_scores: Callable[[], Any],
                  autocast: Callable[[], ContextManager] = contextlib.nullcontext) -> dict[int, Any]:
    """``{lead: scores}`` of model and copy-last over the samples with ``horizon`` frames ahead.

    ``new_scores()`` makes an accumulator with ``update(prob, copy_prob, last, target, mask)``
    (evaluate's ``Scores``), one per lead.
    """
    indices = eligible(ds, horizon)
    scores = {k: new_scores() for k in range(1, horizon + 1)}
    for start in range(0, len(indices), batch_size):
        for lead in rollout_batch(model, ds, indices[start:start + batch_size], horizon, static, device,
                                  threshold, autocast):
            scores[lead.lead].update(lead.prob, lead.copy_prob, lead.observed, lead.target, lead.mask)
    return scores


def lead_rows(by_lead: dict[str, dict[str, dict[str, float]]]) -> tuple[list[str], list[tuple]]:
    """Header and rows of the by-lead table (F1 and growth F1 of model, copy-last, ceiling)."""
    wide = any("ceiling" in v for v in by_lead.values())
    names = [n for n, _, _ in CURVES if n != "ceiling" or wide]
    label = dict((n, lab) for n, lab, _ in CURVES)
    header = ["lead", "samples", *[f"{label[n]} F1" for n in names]]
    header += ["gap closed"] if wide else []
    header += [f"{label[n]} growth F1" for n in names]
    rows = []
    for lead, entry in by_lead.items():
        row: list = [lead, int(entry["model"]["samples"]), *[f"{entry[n]['f1']:.4f}" for n in names]]
        if wide:
            m, c, top = (entry[n]["f1"] for n in ("model", "copy_last", "ceiling"))
            row.append(f"{100 * (m - c) / (top - c):.1f}%" if top - c > 1e-9 else "")
        row += [f"{entry[n]['growth_f1']:.4f}" for n in names]
        rows.append(tuple(row))
    return header, rows


def lead_time_figure(path: Path, by_lead: dict[str, dict[str, dict[str, float]]]) -> None:
    """lead_time.png: F1 and growth F1 against lead time for model, copy-last and ceiling."""
    from matplotlib.figure import Figure

    leads = [int(k) for k in by_lead]
    fig = Figure(figsize=(9, 4))
    axes = fig.subplots(1, 2)
    for ax, key, title in zip(axes, ("f1", "growth_f1"), ("F1", "Growth F1")):
        for name, label, style in CURVES:
            if all(name in v for v in by_lead.values()):
                ax.plot(leads, [v[name][key] for v in by_lead.values()], style, label=label)
        ax.set(xlabel="lead (frames ahead)", ylabel=title, title=f"{title} by lead time", ylim=(0, 1.02))
        ax.set_xticks(leads)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
