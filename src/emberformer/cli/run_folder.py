"""Where a job writes its files: Hydra's run folder, or the folder of the run it resumes; and the
one owner a run folder has at a time (a lock in the folder that a killed run does not leave behind)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from emberformer.cli.errors import UserError
from emberformer.files import locks

_RUN_FOLDER: Path | None = None
LOCK_FILE = ".run.lock"  # flock'ed for as long as a run writes the folder; names its owner
_CLAIMED: list[Path] = []


class FolderInUse(UserError):
    """Another live process writes this run folder."""


def use_run_folder(path: Path | None) -> None:
    """Write this job's files to ``path`` instead of Hydra's folder (a resumed run's own folder)."""
    global _RUN_FOLDER
    _RUN_FOLDER = None if path is None else Path(path)


def run_folder() -> Path:
    """Where this job's files go: Hydra's run folder, or the folder of the run it resumes."""
    return _RUN_FOLDER if _RUN_FOLDER is not None else Path(HydraConfig.get().runtime.output_dir)


def claim(folder: Path) -> None:
    """Make this process the owner of run folder ``folder`` until ``release_claims`` (or its end,
    however it ends); FolderInUse, naming the live owner, when another process writes it."""
    folder = Path(folder).absolute()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        locks.acquire(folder / LOCK_FILE)
    except locks.Locked as e:
        raise FolderInUse(f"run folder {folder} is in use by a run still going ({e.owner}); one run "
                          "writes a folder at a time: wait for that run to end, or stop it first") from None
    _CLAIMED.append(folder)


def owns(folder: Path) -> bool:
    """Whether this process holds run folder ``folder`` (only its owner writes its status)."""
    return locks.is_held(Path(folder).absolute() / LOCK_FILE)


def release_claims() -> None:
    """Give back the folders this job claimed (a sweep's next job in this process claims its own)."""
    while _CLAIMED:
        locks.release(_CLAIMED.pop() / LOCK_FILE)


class RunFolderLock(Callback):
    """Hydra callback (conf/train.yaml): a single run claims ``hydra.run.dir`` before Hydra writes
    anything into it, so a second run into a live run's folder is refused and changes none of its files."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from emberformer.training import distributed

        if not distributed.is_main():
            return  # torchrun: rank 0 owns the folder for all ranks
        try:
            folder = Path(str(config.hydra.run.dir))
        except Exception:  # noqa: BLE001 - an interpolation only a job can resolve: train() claims it
            return
        try:
            claim(folder)
        except OSError:  # a folder that cannot be made: Hydra's own mkdir says so next, in one line
            return
        except FolderInUse as e:
            print(f"Error: {e}", file=sys.stderr, flush=True)
            sys.exit(2)
