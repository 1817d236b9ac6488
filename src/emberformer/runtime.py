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


_RUN_DIR: Path | None = None


def use_run_dir(path: Path | None) -> None:
    """Write this job's files to ``path`` instead of Hydra's folder (a resumed run's own folder)."""
    global _RUN_DIR
    _RUN_DIR = None if path is None else Path(path)


def run_dir() -> Path:
    """Where this job's files go: Hydra's run folder, or the folder of the run it resumes."""
    return _RUN_DIR if _RUN_DIR is not None else Path(HydraConfig.get().runtime.output_dir)


def check_argv(argv: list[str]) -> None:
    """Mistakes Hydra's override parser would answer with a traceback, as one line (exit 2)."""
    for arg in argv[1:]:
        key, eq, value = arg.partition("=")
        if eq and value.startswith("~"):
            print(f"Error: {arg}: Hydra reads '~' as its delete operator, so a home-relative path is "
                  f"not expanded; write {key}=$HOME{value[1:]} (the shell expands $HOME) or an absolute path",
                  file=sys.stderr, flush=True)
            sys.exit(2)


def _accepted_keys(target: Any) -> set[str] | None:
    """Keyword arguments ``target`` takes, following ``**kwargs`` into our own base classes;
    None when it takes any keyword (nothing to check)."""
    import inspect

    keys: set[str] = set()
    funcs = [c.__init__ for c in target.__mro__ if "__init__" in vars(c)] if inspect.isclass(target) else [target]
    for fn in funcs:
        if not getattr(fn, "__module__", "").startswith("emberformer"):
            return None
        params = inspect.signature(fn).parameters.values()
        keys |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {"self"}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            return keys
    return None


def check_config_keys(cfg: DictConfig) -> None:
    """A key that nothing reads (``+trainer.epoch=3``, ``+foo=1``) is a typo: say which, before any work."""
    from hydra.utils import get_object

    for ov in HydraConfig.get().overrides.task:
        if not ov.startswith("+"):
            continue
        key = ov.lstrip("+").partition("=")[0]
        parent = key.rpartition(".")[0]
        node = OmegaConf.select(cfg, parent) if parent else cfg
        if key.startswith("hydra") or (isinstance(node, DictConfig) and "_target_" in node):
            continue  # a _target_'s keys are checked against its signature below
        raise UserError(f"{key} is not a setting: nothing reads it (a typo? see the keys in conf/)")

    def walk(node: Any, path: str) -> None:
        if not isinstance(node, DictConfig):
            return
        if "_target_" in node:
            accepted = _accepted_keys(get_object(node._target_))
            unknown = [k for k in node if not str(k).startswith("_") and accepted is not None and k not in accepted]
            if unknown:
                raise UserError(f"{path}{unknown[0]} is not a setting of {node._target_.rsplit('.', 1)[-1]}; "
                                f"its settings: {', '.join(sorted(accepted))}")
        for k, v in node.items_ex(resolve=False):
            walk(v, f"{path}{k}.")

    walk(cfg, "")


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
