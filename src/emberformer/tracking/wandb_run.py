"""A W&B run that never costs the training: any failure warns once and turns W&B off."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping


class WandbRun:
    """Thin wrapper over ``wandb`` with epoch/step metric declarations and failure isolation."""

    def __init__(self, project: str = "emberformer", entity: str | None = None, mode: str = "offline",
                 tags: list[str] | None = None, init_timeout: float = 30.0):
        if mode not in ("offline", "online", "disabled"):
            raise ValueError(f"logger.mode must be offline, online or disabled, got {mode!r}")
        self.project, self.entity, self.mode = project, entity, mode
        self.extra_tags = list(tags or [])
        self.init_timeout = float(init_timeout)
        self.run = None
        self.failed = False

    def _fail(self, what: str, err: BaseException) -> None:
        if not self.failed:
            print(f"WARNING: W&B {what} failed ({type(err).__name__}: {err}); "
                  "training goes on, metrics stay in metrics.jsonl")
        self.failed = True
        run, self.run = self.run, None
        if run is not None:
            try:
                run.finish(exit_code=1)
            except Exception:  # noqa: BLE001 - the run is already broken
                pass

    def start(self, run_dir: Path, name: str, group: str | None, tags: list[str],
              config: Mapping[str, Any], resume_id: str | None = None) -> None:
        try:
            import wandb

            os.environ.setdefault("WANDB_SILENT", "true")
            self.run = wandb.init(
                project=self.project, entity=self.entity, mode=self.mode, dir=str(run_dir),
                name=name, group=group, tags=sorted(set(tags + self.extra_tags)), config=dict(config),
                id=resume_id, resume="allow" if resume_id else None, reinit="finish_previous",
                settings=wandb.Settings(init_timeout=self.init_timeout, console="off",
                                        x_disable_stats=True),
            )
            self.run.define_metric("epoch")
            self._epoch_keys: set[str] = set()
        except Exception as e:  # noqa: BLE001 - W&B trouble must never cost a run
            self._fail("start", e)

    @property
    def active(self) -> bool:
        return self.run is not None

    def banner(self) -> list[str]:
        if self.run is None:
            return ["W&B run: off (W&B could not start)" if self.failed else "W&B run: off"]
        lines = [f"W&B run: {self.run.name} ({self.run.id})"]
        if self.mode == "online" and self.run.url:
            lines.append(f"W&B url: {self.run.url}")
        else:
            lines.append(f"W&B sync: wandb sync {Path(self.run.dir).parent}")
        return lines

    def log(self, data: Mapping[str, Any], step: int | None) -> None:
        if self.run is None:
            return
        try:
            if "epoch" in data:  # epoch panels plot against epochs, step panels against steps
                for k in data.keys() - self._epoch_keys - {"epoch"}:
                    self.run.define_metric(k, step_metric="epoch")
                    self._epoch_keys.add(k)
            self.run.log(dict(data), step=step)
        except Exception as e:  # noqa: BLE001
            self._fail("log", e)

    def image(self, key: str, images: list, captions: list[str], step: int | None, epoch: int) -> None:
        if self.run is None:
            return
        try:
            import wandb

            if key not in self._epoch_keys:
                self.run.define_metric(key, step_metric="epoch")
                self._epoch_keys.add(key)
            self.run.log({key: [wandb.Image(im, caption=c) for im, c in zip(images, captions)],
                          "epoch": epoch}, step=step)
        except Exception as e:  # noqa: BLE001
            self._fail("image log", e)

    def summary(self, data: Mapping[str, Any]) -> None:
        if self.run is None:
            return
        try:
            for k, v in data.items():
                self.run.summary[k] = v
        except Exception as e:  # noqa: BLE001
            self._fail("summary", e)

    @property
    def run_id(self) -> str | None:
        return self.run.id if self.run is not None else None

    def finish(self, exit_code: int = 0) -> None:
        if self.run is None:
            return
        try:
            self.run.finish(exit_code=exit_code)
        except Exception as e:  # noqa: BLE001
            self._fail("finish", e)
        self.run = None
