"""One object the trainer logs to: metrics.jsonl always, W&B when the logger config asks."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from emberformer.tracking.local import JsonlWriter, plot_curves
from emberformer.tracking.wandb_run import WandbRun


class RunLogger:
    """Fans every record out to the local files and (optionally) W&B."""

    def __init__(self, wandb: WandbRun | None = None):
        self.wandb = wandb
        self.jsonl: JsonlWriter | None = None
        self.run_dir: Path | None = None

    def start(self, run_dir: Path, name: str, group: str | None, tags: list[str],
              config: Mapping[str, Any], resume_id: str | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.jsonl = JsonlWriter(self.run_dir)
        if self.wandb is not None:
            self.wandb.start(self.run_dir, name, group, tags, config, resume_id)

    def banner(self) -> list[str]:
        return self.wandb.banner() if self.wandb is not None else ["W&B run: off (logger=none)"]

    def log(self, data: Mapping[str, Any], step: int | None = None) -> None:
        record = dict(data)
        if step is not None:
            record = {"step": step, **record}
        if self.jsonl is not None:
            self.jsonl.write(record)
        if self.wandb is not None:
            self.wandb.log(data, step)

    def images(self, key: str, paths: list[Path], captions: list[str], step: int, epoch: int) -> None:
        if self.jsonl is not None:
            self.jsonl.write({"step": step, "epoch": epoch, key: [str(p) for p in paths],
                              "captions": captions})
        if self.wandb is not None:
            self.wandb.image(key, [str(p) for p in paths], captions, step, epoch)

    def summary(self, data: Mapping[str, Any]) -> None:
        if self.jsonl is not None:
            self.jsonl.write({"summary": dict(data)})
        if self.wandb is not None:
            self.wandb.summary(data)

    @property
    def run_id(self) -> str | None:
        return self.wandb.run_id if self.wandb is not None else None

    def finish(self, exit_code: int = 0) -> None:
        if self.jsonl is not None:
            self.jsonl.close()
            plot_curves(self.jsonl.path, self.jsonl.path.parent / "curves.png")
            self.jsonl = None
        if self.wandb is not None:
            self.wandb.finish(exit_code)
