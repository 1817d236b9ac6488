"""What the apps (train, evaluate, predict, bench) share about a run's config: where the config
folder is, how a run's config is rebuilt from its checkpoint, and how its model is built.

A checkpoint stores the resolved config it was trained with, and under ``config_groups`` the
group choices it was composed from (``hardware: cpu``...). Rebuilding puts this command's
``key=value`` overrides on top; which config groups may be swapped is read from Hydra's runtime
choices, so a group added to ``conf/`` is known here without editing a list. Repeating a group
choice the run made is no change.

Resuming a run (its ``last.pt``) keeps its data: a ``data.*`` key that changes the samples is
refused, because the run's later epochs would be trained on another data set than its earlier
ones. Only the keys in ``DATA_KEYS_FREE`` may change: they decide how the same samples are read
and shown, not which samples there are.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Collection

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from emberformer.training import checkpoint
from emberformer.cli.errors import UserError
from emberformer.cli.moved_keys import upgrade_saved
from emberformer.cli.run_folder import run_folder

CONF = str(Path(__file__).resolve().parents[3] / "conf")
COPY_LAST = "emberformer.models.copy_last.CopyLast"
LAYOUT_READER = "emberformer.data.datamodule.FireDataModule"
WSTS_READERS = ("emberformer.data.wsts.", "emberformer.data.ndws.")  # data=wsts, data=ndws: their root is their own (never the layout reader's)
SYNTHETIC_ONLY = ("num_sequences", "size", "max_frames", "steps_per_frame", "seed")
# groups that decide the model: scoring a checkpoint never swaps them under its weights
MODEL_GROUPS = ("model", "experiment", "debug", "hparams_search")
GROUPS_KEY = "config_groups"  # the run's group choices, recorded in its config (and checkpoints)
# data keys a resumed run may change: progress bars, where the cache lives (the synthetic data is
# a pure function of its settings, the real-layout cache a copy of the same files), and what to do
# about a bad sequence (a run that trained had none with `error`; `skip` of a good folder skips none)
DATA_KEYS_FREE = ("progress", "cache_dir", "on_bad_sequence")


# modules that moved (issue 17's layout): a checkpoint written before names the old paths
MOVED_MODULES = {
    "emberformer.trainer": "emberformer.training.trainer",
    "emberformer.losses": "emberformer.training.losses",
    "emberformer.early_stopping": "emberformer.training.early_stopping",
    "emberformer.optim": "emberformer.training.optim",
    "emberformer.hardware": "emberformer.training.hardware",
}


def upgrade_targets(node: Any) -> Any:
    """A saved config with every ``_target_`` of a moved module pointed at its new place."""
    if isinstance(node, dict):
        out = {k: upgrade_targets(v) for k, v in node.items()}
        target = out.get("_target_")
        if isinstance(target, str):
            module, _, name = target.rpartition(".")
            if module in MOVED_MODULES:
                out["_target_"] = f"{MOVED_MODULES[module]}.{name}"
        return out
    if isinstance(node, list):
        return [upgrade_targets(v) for v in node]
    return node


def config_groups() -> set[str]:
    """This app's config groups (data, model, loss, ...), from Hydra's runtime choices."""
    return {k for k in HydraConfig.get().runtime.choices if not k.startswith("hydra")}


def group_choices() -> dict[str, Any]:
    """This command's choice in each config group (``{"hardware": "cpu", "experiment": None...}``)."""
    choices = HydraConfig.get().runtime.choices
    return {k: choices[k] for k in sorted(config_groups())}


def record_group_choices(cfg: DictConfig) -> None:
    """Keep a new run's group choices in its config, so that a resume can tell a repeated choice
    from a change."""
    with open_dict(cfg):
        cfg[GROUPS_KEY] = group_choices()


def overrides() -> list[tuple[str, str]]:
    """(key, value) of this command's overrides, without Hydra's own and ``ckpt_path``."""
    out = []
    for ov in HydraConfig.get().overrides.task:
        key, _, value = ov.lstrip("+~").partition("=")
        if key != "ckpt_path" and not key.startswith("hydra"):
            out.append((key, value))
    return out


def from_checkpoint(cfg: DictConfig, saved_config: dict[str, Any], *,
                    frozen_groups: Collection[str] | None = None, why: str) -> DictConfig:
    """The checkpoint's config with this command's overrides on top.

    A group in ``frozen_groups`` (default: every group) cannot be swapped: ``{key}={value}: {why}``.
    Top-level keys of this app that the run did not have (``split``, ``sequence``...),
    ``ckpt_path`` and trainer settings newer than the checkpoint come from ``cfg``; keys that
    moved or were removed since are read in today's names (``moved_keys.upgrade_saved``).
    """
    groups = config_groups()
    frozen = groups if frozen_groups is None else groups & set(frozen_groups)
    saved = OmegaConf.create(upgrade_saved(upgrade_targets(saved_config)))
    run_choices = saved_config.get(GROUPS_KEY)  # None: a checkpoint from before they were recorded
    choices = group_choices()
    with open_dict(saved):
        for key, value in overrides():
            if key in frozen:
                if isinstance(run_choices, dict) and key in run_choices and run_choices[key] == choices.get(key):
                    continue  # the run's own choice, repeated: its saved node stays as it was
                raise UserError(f"{key}={value}: {why}")
            OmegaConf.update(saved, key, OmegaConf.select(cfg, key), merge=False)
        for key in cfg:
            if key not in saved or key == "ckpt_path":
                saved[key] = cfg[key]
        if isinstance(saved.get("trainer"), DictConfig) and "trainer" in cfg:
            for key in cfg.trainer:  # a trainer setting newer than the checkpoint (ceiling_samples)
                if key not in saved.trainer:
                    saved.trainer[key] = OmegaConf.select(cfg, f"trainer.{key}")
    return saved


def resume_config(cfg: DictConfig, ckpt: dict[str, Any]) -> DictConfig:
    """Continue a run: its own config; plain ``key=value`` changes only (a swapped group would
    not fit the saved optimizer and early-stopping state)."""
    return from_checkpoint(cfg, ckpt["config"], why="config groups cannot change when resuming from a "
                                                     "checkpoint; start a new run instead")


def resume(cfg: DictConfig) -> tuple[DictConfig, dict[str, Any] | None, Path]:
    """For ``ckpt_path``: the config to go on with, the checkpoint, and the folder to write to.

    ``RUN/checkpoints/last.pt`` continues that run in RUN, whose files and status it updates. Any
    other checkpoint (``best.pt``, a copy) starts a new run in this command's folder from that
    state, recorded as ``started_from``: the original run's files are never written.
    """
    here = run_folder()
    if not cfg.ckpt_path:
        record_group_choices(cfg)
        return cfg, None, here
    path = Path(str(cfg.ckpt_path)).expanduser().resolve()
    ckpt = checkpoint.load(path)
    cfg = resume_config(cfg, ckpt)
    own_run = path.parents[1] if path.name == "last.pt" and path.parent.name == "checkpoints" else None
    if own_run is not None:
        check_same_data(upgrade_targets(ckpt["config"]).get("data") or {},
                        OmegaConf.to_container(cfg.data, resolve=True), own_run)
        return cfg, ckpt, own_run
    if here.resolve() == path.parent.parent.resolve() or here.resolve() == path.parent.resolve():
        raise UserError(f"ckpt_path={path.name} starts a new run, but hydra.run.dir={here} is the folder of the "
                        f"run it comes from; leave hydra.run.dir out (a new folder is made) or name another one")
    ckpt["wandb_id"] = None  # a new run: a new W&B run too
    ckpt["started_from"] = str(path)
    return cfg, ckpt, here


def check_same_data(saved: dict[str, Any], current: dict[str, Any], run: Path) -> None:
    """A resumed run goes on with the samples it was trained on: any ``data.*`` change but those
    in DATA_KEYS_FREE is one line naming the key, the checkpoint's value and this command's."""
    def kept(node: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in node.items() if k not in DATA_KEYS_FREE}

    diffs = checkpoint.config_differences(kept(saved), kept(current), "data.")
    if diffs:
        free = ", ".join(f"data.{k}" for k in DATA_KEYS_FREE)
        raise UserError(f"{diffs[0]}: resuming the run in {run} on other data would mix two data sets in "
                        f"one run (a resume may change only {free}); to train on other data, start a "
                        f"new run from its checkpoints/best.pt")


def scoring_config(cfg: DictConfig) -> tuple[DictConfig, dict[str, Any] | None]:
    """evaluate / predict: the config to rebuild the model and data from, and the checkpoint.

    The data and hardware may differ from training (``data.root=…`` reads another folder in the
    data layout); the model groups may not.
    """
    ckpt = None
    if cfg.ckpt_path:
        ckpt = checkpoint.load(cfg.ckpt_path)
        changed = {key for key, _ in overrides()}
        cfg_from = cfg
        cfg = from_checkpoint(cfg, ckpt["config"], frozen_groups=MODEL_GROUPS,
                              why="cannot be changed when ckpt_path is given: the model and its config "
                                  "come from the checkpoint")
        with open_dict(cfg):
            if not changed & {"data", "data.cache_dir"} and \
                    not Path(str(cfg.data.cache_dir)).expanduser().is_dir():
                cfg.data.cache_dir = cfg_from.data.cache_dir  # checkpoint from another machine: local cache
            if "pretrained" in cfg.model:
                cfg.model.pretrained = False  # the checkpoint holds every weight
    elif cfg.model.get("_target_") != COPY_LAST:
        raise ValueError("ckpt_path is required (e.g. ckpt_path=outputs/DATE/TIME/checkpoints/best.pt); "
                         "only model=copy_last runs without one")
    _use_layout_reader(cfg.data)
    return cfg, ckpt


def _use_layout_reader(data: DictConfig) -> None:
    """A ``data.root`` given: read that folder with FireDataModule (synthetic settings dropped).
    WildfireSpreadTS and Next Day Wildfire Spread data stay what they are: their ``data.root`` is their own."""
    if str(data.get("_target_", "")).startswith(WSTS_READERS):
        return
    with open_dict(data):
        if data.get("root") is not None and data.get("_target_") != LAYOUT_READER:
            data._target_ = LAYOUT_READER
            for key in SYNTHETIC_ONLY:
                data.pop(key, None)
        elif "root" in data and data.get("root") is None and data.get("_target_") != LAYOUT_READER:
            del data["root"]  # the synthetic module takes no root


def channel_settings(static_channels: int, day_channels: int = 0) -> dict[str, int]:
    """What the app passes a model from its data: ``static_channels``, and ``day_channels`` only
    when the data has per-day inputs (so a model that takes none keeps working on data without)."""
    return {"static_channels": static_channels, **({"day_channels": day_channels} if day_channels else {})}


def build_model(cfg: DictConfig, static_channels: int, ckpt: dict[str, Any] | None = None,
                device: torch.device | None = None, day_channels: int = 0) -> nn.Module:
    """The model of ``cfg`` (with the checkpoint's weights when given), in eval mode."""
    model = instantiate(cfg.model, **channel_settings(static_channels, day_channels))
    if ckpt is not None:
        checkpoint.load_weights(model, ckpt, OmegaConf.to_container(cfg.model, resolve=True), cfg.ckpt_path)
    return model.to(device or "cpu").eval()
