"""Where a job writes its files: Hydra's run folder, or the folder of the run it resumes."""
from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig

_RUN_FOLDER: Path | None = None


def use_run_folder(path: Path | None) -> None:
    """Write this job's files to ``path`` instead of Hydra's folder (a resumed run's own folder)."""
    global _RUN_FOLDER
    _RUN_FOLDER = None if path is None else Path(path)


def run_folder() -> Path:
    """Where this job's files go: Hydra's run folder, or the folder of the run it resumes."""
    return _RUN_FOLDER if _RUN_FOLDER is not None else Path(HydraConfig.get().runtime.output_dir)
