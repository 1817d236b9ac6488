"""Resuming a run that has nothing left to do.

``train ckpt_path=RUN/checkpoints/last.pt`` of a run that ran all its epochs, or stopped early,
and finished (``result.json`` says ``ok``) would otherwise print ``Resumed at epoch 11``, train no
epoch, score the test split again, open a second W&B run and rewrite the run's summary. It is
instead one line saying the run is complete and where its result is; nothing is written.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from emberformer.cli.run_config import overrides

# overrides that give a finished run something to do: more epochs, or another stopping rule
REOPENS = ("trainer.epochs", "early_stopping")
# overrides the resume path must check (and refuses when the weights do not fit): not "complete"
CHECKED = ("model",)


def complete_message(cfg: DictConfig, ckpt: dict[str, Any] | None, run_dir: Path) -> str | None:
    """The one line for a resume of a finished run in its own folder ``run_dir``; None when the
    run has epochs left, was stopped before it finished, or this command reopens it."""
    if ckpt is None or not cfg.ckpt_path:
        return None
    path = Path(str(cfg.ckpt_path)).expanduser().resolve()
    own = path.name == "last.pt" and path.parent.name == "checkpoints" and path.parents[1] == Path(run_dir).resolve()
    if not own or not ckpt.get("epoch_complete"):
        return None
    try:
        status = json.loads((Path(run_dir) / "result.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None
    if status != "ok":  # stopped or failed in the test pass: the resume finishes it
        return None
    if any(key == c or key.startswith(c + ".") for key, _ in overrides() for c in CHECKED):
        return None
    epoch, epochs = int(ckpt["epoch"]), int(cfg.trainer.epochs)
    early = ckpt.get("early_stopping") or {}
    reopened = any(key == r or key.startswith(r + ".") for key, _ in overrides() for r in REOPENS)
    if epoch >= epochs:
        how = f"all {epochs} epochs done"
    elif early.get("stop_reason") and not reopened:
        why = "its targets were reached" if early["stop_reason"] == "targets" else "patience ran out"
        how = f"stopped early at epoch {epoch} of {epochs} ({why})"
    else:
        return None
    best = early.get("best_value")
    best_text = f"; best {cfg.early_stopping.monitor} {best:.4f} at epoch {early.get('best_epoch')}" \
        if isinstance(best, (int, float)) else ""
    return (f"Run complete: {how}{best_text}; nothing to resume, nothing written. Its result: "
            f"{Path(run_dir) / 'result.json'} (best.pt: {Path(run_dir) / 'checkpoints' / 'best.pt'}); "
            f"to train on, raise trainer.epochs")
