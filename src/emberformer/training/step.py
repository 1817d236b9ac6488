"""One model step for every caller, the one training step and the one evaluation pass.

Training, validation, test, ``evaluate``, ``predict`` and ``bench`` all call the model through
:func:`model_step`, so a new model input is added in one place (here and in ``to_device``). The
trainer and the bench train through :func:`train_step`; the trainer's validation and test passes
and ``evaluate`` score through :func:`evaluate`, so all three measure the same thing.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Iterable

import torch
from torch import nn
from torch.utils.data import DataLoader

from emberformer.data.dataset import to_device
from emberformer.models.base import last_frame
from emberformer.models.copy_last import CopyLast
from emberformer.scoring.scores import Scores

if TYPE_CHECKING:
    from emberformer.training.run_setup import Learner
    from emberformer.training.losses import WeightedLoss

Autocast = Callable[[], ContextManager]


@dataclass
class Prediction:
    """What one step produced, with the batch's target and valid-pixel mask beside it.

    logits [B,1,H,W] float32 (carries the graph in training); prob is sigmoid(logits) without
    the graph; last [B,1,H,W] bool is the last input frame; mask marks pixels inside each frame.
    """

    logits: torch.Tensor
    last: torch.Tensor
    target: torch.Tensor
    mask: torch.Tensor
    _prob: torch.Tensor | None = field(default=None, repr=False)

    @property
    def prob(self) -> torch.Tensor:
        if self._prob is None:
            self._prob = torch.sigmoid(self.logits.detach())
        return self._prob

    @property
    def size(self) -> int:
        return int(self.logits.shape[0])


def model_step(model: nn.Module, batch: dict[str, Any], autocast: Autocast = contextlib.nullcontext) -> Prediction:
    """Run ``model`` on a batch from ``to_device`` (under ``autocast``); logits come back float32."""
    with autocast():
        # per-step spatial inputs (WildfireSpreadTS) only where the data has them: a model written
        # for the built-in data's four inputs keeps working there
        extra = {} if batch.get("dynamic") is None else {"dynamic": batch["dynamic"]}
        logits = model(fire=batch["fire"], valid_t=batch["valid_t"], wind=batch["wind"],
                       static=batch["static"], **extra)
    return Prediction(logits.float(), last_frame(batch["fire"]), batch["target"], batch["mask"])


def train_step(learner: "Learner", batch: dict[str, Any], loss_fn: "WeightedLoss", autocast: Autocast,
               schedule: tuple[int, int, int] | None = None) -> tuple[Prediction, dict[str, torch.Tensor]]:
    """Forward, loss and (when there is anything to train) one optimizer step. ``schedule``
    (optimizer step, steps per epoch, epochs) sets a scheduled optimizer's rate first."""
    optimizer = learner.optimizer
    with torch.set_grad_enabled(learner.trainable):
        pred = model_step(learner.net, batch, autocast)
        parts = loss_fn(pred.logits, pred.target, pred.mask)
        if optimizer is not None:
            if schedule is not None and hasattr(optimizer, "set_step"):  # the rate follows the step
                optimizer.set_step(*schedule)
            optimizer.zero_grad(set_to_none=True)
            learner.scaler.scale(parts["loss"]).backward()
            learner.scaler.step(optimizer)
            learner.scaler.update()
    return pred, parts


EachBatch = Callable[[int, dict[str, Any], Prediction, "Prediction | None"], None]


@torch.no_grad()
def evaluate(net: nn.Module, loader: DataLoader, scores: Scores, *, device: torch.device,
             static: torch.Tensor, autocast: Autocast, loss_fn: "WeightedLoss | None" = None,
             limit_batches: int | None = None, batches: Iterable | None = None,
             each: EachBatch | None = None) -> Scores:
    """One pass of ``net`` over ``loader`` in its fixed order into ``scores``: copy-last on the
    same batches when ``scores`` has it, the loss when ``loss_fn`` is given. ``batches`` is the
    loader wrapped in a progress bar; ``each(i, batch, prediction, copy_last_prediction)`` sees
    every device batch (previews, examples, groups)."""
    net.eval()
    loader.sampler.set_epoch(0)  # type: ignore[union-attr]
    copy_last = CopyLast() if scores.copy_last else None
    for i, batch in enumerate(batches if batches is not None else loader):
        if limit_batches is not None and i >= limit_batches:
            break
        b = to_device(batch, device, static)
        pred = model_step(net, b, autocast)
        base = model_step(copy_last, b) if copy_last is not None else None
        scores.update(pred.prob, None if base is None else base.prob, pred.last, pred.target, pred.mask)
        if loss_fn is not None:
            scores.add_loss(loss_fn(pred.logits, pred.target, pred.mask)["loss"], pred.size)
        if each is not None:
            each(i, b, pred, base)
    return scores
