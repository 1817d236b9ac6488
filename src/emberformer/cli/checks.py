"""Checks made before any data work, so a config mistake is one line in seconds: keys nothing
reads, optimizer and model settings built once on dummies."""
from __future__ import annotations

from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from emberformer.cli.errors import UserError
from emberformer.cli.moved_keys import moved_key_note

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
            moved = moved_key_note(f"{path}{unknown[0]}") if unknown else None
            if moved:  # an old name in a YAML file (the command line's are renamed in check_argv)
                raise UserError(f"{moved}: write it there")
            if unknown:
                raise UserError(f"{path}{unknown[0]} is not a setting of {node._target_.rsplit('.', 1)[-1]}; "
                                f"its settings: {', '.join(sorted(accepted))}")
        for k, v in node.items_ex(resolve=False):
            walk(v, f"{path}{k}.")

    walk(cfg, "")


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
