"""Checks made before any data work, so a config mistake is one line in seconds: keys nothing
reads, optimizer and model settings built once on dummies."""
from __future__ import annotations

from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from emberformer.cli.errors import UserError
from emberformer.cli.moved_keys import moved_key_note

# keyword arguments the apps pass when they build a config node (instantiate(cfg.model,
# static_channels=...), instantiate(cfg.data, **hardware.loader_settings())): never user settings
SET_BY_THE_APP = frozenset({"static_channels", "day_channels", "batch_size", "num_workers", "pin_memory"})

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


def check_model_fits_data(model_cfg: DictConfig, data: Any) -> None:
    """``model.keep_last`` assumes cumulative masks (burned stays burned): on data whose target is
    not cumulative (WildfireSpreadTS: next-day active fire, which goes out) it is refused in one
    line, before any data work, rather than turned off behind the user's back."""
    if model_cfg.get("keep_last") is True and not getattr(data, "cumulative_target", True):
        raise UserError("model.keep_last=true predicts every pixel on fire today as on fire tomorrow, which "
                        "holds for cumulative burned-area masks only; this data's target is next-day active "
                        "fire (it goes out): set model.keep_last=false (experiment=wsts does)")


def _own_keys(target: Any) -> set[str]:
    """The keyword arguments ``target`` names itself (not those it passes on through ``**kwargs``)."""
    import inspect

    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return set()
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {"self"}


def _compose_without(overrides: list[str], key: str, config_name: str) -> DictConfig | None:
    """The config of the command without its overrides of ``key`` (and without sweeps), or None."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from emberformer.cli.run_config import CONF

    try:
        parsed = OverridesParser.create().parse_overrides([o for o in overrides if not o.startswith("-")])
        kept = [o.input_line for o in parsed if o.key_or_group != key and not o.is_sweep_override()]
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose(config_name=config_name, overrides=kept, return_hydra_config=True)
    except Exception:  # noqa: BLE001 - another mistake in the command: Hydra's own message then
        return None


def missing_key_message(e: Exception, overrides: list[str], config_name: str) -> str | None:
    """Hydra's "Could not override 'model.d_model' ... Key 'd_model' is not in struct" as one line:
    the key, the group choice or node that lacks it, and that node's settings (or, for a setting
    its YAML file leaves out, how to add it with ``+``). None for any other composition error."""
    cause = e.__cause__
    key = getattr(cause, "full_key", None)
    if not str(e).startswith("Could not override") or not key or "not in struct" not in str(cause):
        return None
    cfg = _compose_without(overrides, key, config_name)
    if cfg is None:
        return None
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    if not isinstance(node, DictConfig):
        return None
    group = key.split(".", 1)[0]
    choice = cfg.hydra.runtime.choices.get(group) if parent else None
    where = f"{group}={choice}" if choice else (parent or f"conf/{config_name}.yaml")
    keys = {str(k) for k in node if not str(k).startswith("_") and str(k) != "hydra"}
    target_keys: set[str] = set()
    if "_target_" in node:
        from hydra.utils import get_object

        try:
            target_keys = _own_keys(get_object(node._target_)) - keys - SET_BY_THE_APP
        except Exception:  # noqa: BLE001 - an unimportable target is reported when it is built
            target_keys = set()
    value = next((o.partition("=")[2] for o in overrides if o.partition("=")[0] == key), "VALUE")
    if leaf in target_keys:
        return (f"{key} is a setting of {where} that its config file leaves out: add it with "
                f"+{key}={value}")
    line = f"{key} is not a setting of {where}; its settings: {', '.join(sorted(keys | target_keys)) or 'none'}"
    if target_keys:  # settings the class takes that its YAML file does not list: Hydra needs a +
        line += " (" + ", ".join(f"+{parent}.{k}=..." for k in sorted(target_keys)) + \
            ": not in its config file, so with a leading +)"
    return line
