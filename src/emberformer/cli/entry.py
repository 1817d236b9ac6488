"""The one shape every app's entry point has: a Hydra task whose user mistakes end in one line.

``hydra.main`` names the job (and its ``<job>.log``) after the module that defines the task
function; the task is defined here, so the app's own name is given to Hydra as ``hydra.job.name``.
"""
from __future__ import annotations

import sys
from typing import Any, Callable

import hydra
from omegaconf import DictConfig

from emberformer.cli.errors import hydra_errors, user_errors
from emberformer.cli.run_config import CONF


def hydra_app(name: str, run: Callable[[DictConfig], Any]) -> Callable[[], Any]:
    """``python -m emberformer.<name>``'s ``main``: compose ``conf/<name>.yaml`` and the command
    line, then ``run(cfg)``; its return value is the job's (an objective for a sweeper)."""
    @hydra.main(config_path=CONF, config_name=name, version_base="1.3")
    def main(cfg: DictConfig) -> Any:
        with user_errors():
            return run(cfg)
    return main


def start(main: Callable[[], Any], name: str) -> None:
    """Run ``main`` as the command ``python -m emberformer.<name>``: mistakes Hydra itself reports
    (an unknown group option, a bad override) also end in one line."""
    with hydra_errors(sys.argv, name):
        main()
