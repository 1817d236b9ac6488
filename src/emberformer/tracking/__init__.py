"""Where metrics go: always a local metrics.jsonl (+ curves.png), and W&B when configured."""
from __future__ import annotations

from emberformer.tracking.run_logger import RunLogger
from emberformer.tracking.wandb_run import WandbRun


def wandb_logger(mode: str = "offline", project: str = "emberformer", entity: str | None = None,
                 tags: list[str] | None = None, init_timeout: float = 30.0,
                 preview_samples: int = 2) -> RunLogger:
    """conf/logger/wandb.yaml: local files plus a W&B run."""
    return RunLogger(WandbRun(project, entity, mode, list(tags or []), init_timeout), preview_samples)


__all__ = ["RunLogger", "WandbRun", "wandb_logger"]
