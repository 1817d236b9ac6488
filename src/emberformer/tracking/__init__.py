"""Where metrics go: always a local metrics.jsonl (+ curves.png), and W&B when configured."""
from __future__ import annotations

from emberformer.tracking.run_logger import RunLogger
from emberformer.tracking.wandb_run import WandbRun


def wandb_logger(*, mode: str, project: str, entity: str | None, tags: list[str],
                 init_timeout: float) -> RunLogger:
    """conf/logger/wandb.yaml (the values): local files plus a W&B run."""
    return RunLogger(WandbRun(project, entity, mode, list(tags), init_timeout))


__all__ = ["RunLogger", "WandbRun", "wandb_logger"]
