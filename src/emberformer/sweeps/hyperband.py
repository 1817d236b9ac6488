"""Optuna's Hyperband pruner made deterministic across processes (``hydra.sweeper.pruner=hyperband``).

A module of its own because it subclasses an Optuna class: it is imported only when a study
builds this pruner, so a run outside a study never imports Optuna.
"""
from __future__ import annotations

import binascii

import optuna


class StableHyperbandPruner(optuna.pruners.HyperbandPruner):
    """Optuna's HyperbandPruner with a bracket assignment that is the same in every process.

    Optuna 2.10 puts a trial into a bracket by Python's ``hash()`` of ``<study>_<number>``, which
    is salted per process: the sweeper and each job (joblib workers, SLURM jobs) would disagree on
    the brackets, and one command would prune differently on every run. CRC32 of the same text
    (what later Optuna releases use) is the same everywhere."""

    def _get_bracket_id(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> int:
        if len(self._pruners) == 0:
            return 0
        n = binascii.crc32(f"{study.study_name}_{trial.number}".encode()) % self._total_trial_allocation_budget
        for bracket_id in range(self._n_brackets):
            n -= self._trial_allocation_budgets[bracket_id]
            if n < 0:
                return bracket_id
        raise AssertionError("unreachable: the budgets sum to the modulus")
