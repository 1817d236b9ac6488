"""Hydra loads sweepers only from the ``hydra_plugins`` package: the project's, as a thin entry point.

The work is done in ``emberformer.sweeps`` (imported lazily, so other apps start as fast as before).
"""
from __future__ import annotations

from typing import Any, Optional

from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
from omegaconf import DictConfig


class EmberformerOptunaSweeper(OptunaSweeper):
    """The plugin's OptunaSweeper with Optuna pruners, heartbeats and trial states
    (``hydra/sweeper=emberformer_optuna``; see ``emberformer.sweeps.optuna_sweeper``)."""

    def __init__(self, sampler: Any, direction: Any, storage: Optional[Any], study_name: Optional[str],
                 n_trials: int, n_jobs: int, max_failure_rate: float, search_space: Optional[DictConfig],
                 custom_search_space: Optional[str], params: Optional[DictConfig], pruner: str = "none",
                 pruners: Optional[DictConfig] = None, heartbeat_interval: int = 10) -> None:
        from emberformer.sweeps.optuna_sweeper import PrunedOptunaSweeperImpl

        # the plugin's __init__ only builds its impl: build ours, with the same arguments and more
        self.sweeper = PrunedOptunaSweeperImpl(
            sampler, direction, storage, study_name, n_trials, n_jobs, max_failure_rate, search_space,
            custom_search_space, params, pruner=pruner, pruners=pruners, heartbeat_interval=heartbeat_interval)
