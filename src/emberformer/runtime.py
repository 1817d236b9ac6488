"""What every entry point shares: one-line errors for user mistakes, run names, checks made
before any data work."""
from __future__ import annotations

import contextlib
import re
import sys
from pathlib import Path
from typing import Any, Iterator

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from emberformer.data.frames import FrameError
from emberformer.data.layout import DataError
from emberformer.models.pretrained import PretrainedNotFound

USER_ERRORS = (ValueError, DataError, FrameError, PretrainedNotFound, FileNotFoundError,
               OmegaConfBaseException)


class UserError(ValueError):
    """A mistake in the config or the data, reported in one line."""


def root_cause(e: BaseException) -> BaseException:
    """Hydra wraps errors raised by _target_ constructors; report the original one."""
    while isinstance(e, InstantiationException) and e.__cause__ is not None:
        e = e.__cause__
    return e


def is_multirun() -> bool:
    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Single runs: print ``Error: …`` and exit 2. Sweeps: re-raise so the trial is marked failed."""
    try:
        yield
    except (InstantiationException, *USER_ERRORS) as e:
        cause = root_cause(e)
        if not isinstance(cause, USER_ERRORS):
            raise
        if is_multirun():
            raise UserError(str(cause)) from None
        msg = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        print(f"Error: {msg}", file=sys.stderr, flush=True)
        sys.exit(2)


def run_dir() -> Path:
    return Path(HydraConfig.get().runtime.output_dir)


def run_info(cfg: DictConfig, script: str = "train_emberformer") -> dict[str, Any]:
    """W&B name (script, model, loss, key overrides), group (the sweep) and tags (chosen groups)."""
    hc = HydraConfig.get()
    choices = {k: v for k, v in hc.runtime.choices.items() if not k.startswith("hydra") and v}
    overrides = [o for o in hc.overrides.task if not o.startswith(("hydra", "ckpt_path"))]
    name = "-".join([script, choices.get("model", "model"), choices.get("loss", "loss"), *overrides])
    name = re.sub(r"[^A-Za-z0-9_.=,+/-]", "", name)[:120]
    group = None
    if hc.mode == RunMode.MULTIRUN:
        group = f"sweep-{Path(hc.sweep.dir).name}-{Path(hc.sweep.dir).parent.name}"
    tags = [f"{k}:{v}" for k, v in choices.items() if k in
            ("data", "model", "loss", "optim", "early_stopping", "hardware", "experiment", "hparams_search")]
    return {"name": name, "group": group, "tags": tags,
            "config": OmegaConf.to_container(cfg, resolve=True)}


def pin_gpu_for_parallel_job(hardware: Any) -> None:
    """Parallel sweep jobs on a multi-GPU machine: job N uses GPU N mod count."""
    if not is_multirun() or str(hardware.device) not in ("auto", "cuda"):
        return
    import torch

    count = torch.cuda.device_count()
    if count > 1:
        hardware.device = f"cuda:{HydraConfig.get().job.num % count}"


def checked_optimizer(factory: Any) -> Any:
    """Build the optimizer once on a dummy parameter so bad optim.* values fail before any work."""
    import torch

    factory({"temporal": [torch.nn.Parameter(torch.zeros(1))], "spatial": [torch.nn.Parameter(torch.zeros(1))]})
    return factory


def check_model_config(model_cfg: DictConfig) -> None:
    """Check model.* values (and that pretrained weights exist) before the data is prepared."""
    from hydra.utils import instantiate

    if model_cfg.get("pretrained"):
        from emberformer.models.pretrained import load_decode_head_state

        load_decode_head_state(model_cfg.get("pretrained_path"))
        return
    instantiate(model_cfg, static_channels=1)
