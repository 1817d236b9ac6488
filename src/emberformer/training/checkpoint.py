"""Checkpoint files: written atomically (a kill during saving never leaves a truncated file),
read with ``weights_only=True`` (opening one cannot run code), and checked, so a wrong path, a
damaged file or weights that do not fit the config are one line naming the file."""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from emberformer.files import atomic

REQUIRED = ("model", "config")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, a folder, unreadable, or not fitting the model."""


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save to a temporary sibling, fsync, then rename over the target."""
    with atomic.write(path) as f:
        torch.save(obj, f)


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint written by ``emberformer.train``, or a one-line CheckpointError saying why not."""
    path = Path(path).expanduser()
    if path.is_dir():
        found = sorted(str(p.relative_to(path)) for p in path.rglob("*.pt"))
        listing = f"its .pt files: {', '.join(found[:8])}" if found else "it holds no .pt files"
        raise CheckpointError(f"ckpt_path {path} is a folder, not a checkpoint file; {listing}")
    if not path.is_file():
        raise CheckpointError(f"ckpt_path {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"ckpt_path {path} is not a readable checkpoint (truncated, damaged or not "
                              f"written by emberformer.train): {reason}") from None
    if not isinstance(state, Mapping) or any(k not in state for k in REQUIRED):
        have = sorted(state)[:8] if isinstance(state, Mapping) else type(state).__name__
        raise CheckpointError(f"ckpt_path {path} is not a checkpoint of emberformer.train: it needs the keys "
                              f"{', '.join(REQUIRED)}, it has {have}")
    return dict(state)


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any], prefix: str) -> list[str]:
    """``key: checkpoint value -> current value`` for every leaf that differs."""
    out = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key, "<unset>"), current.get(key, "<unset>")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key} is {b} here but {a} in the checkpoint")
    return out


def load_weights(model: nn.Module, ckpt: Mapping[str, Any], model_config: Mapping[str, Any] | None,
                 path: str | Path) -> None:
    """Load ``ckpt["model"]``; weights that do not fit say which ``model.*`` key differs."""
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError:
        diffs = config_differences(ckpt["config"].get("model", {}), model_config or {}, "model.")
        why = "; ".join(diffs) if diffs else "the weights do not fit this model's shapes"
        raise CheckpointError(f"ckpt_path {path} does not fit the model: {why}") from None
