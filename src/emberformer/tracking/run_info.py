"""A run's W&B identity: its name, its group (the sweep) and its tags (the chosen config groups)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

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
