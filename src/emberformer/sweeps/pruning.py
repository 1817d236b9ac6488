"""Job side of a pruned Optuna study: report the best monitored value so far every epoch, ask
whether to stop.

The sweeper (``emberformer.sweeps.optuna_sweeper``) hands each job its trial number through the
job's own config: ``hydra.job.env_set.EMBERFORMER_OPTUNA_TRIAL=<number>``, with ``..._STUDY``
(study name) and ``..._STORAGE`` (storage URL, SQLite paths made absolute); the pruner settings
are the sweeper's config, which every job carries in its ``hydra.sweeper`` node. ``TrialPruning.from_hydra()`` reads them and opens the trial in the
shared storage (SQLite file, or a database URL for several machines); outside an Optuna study
(single runs, grid multiruns) it is a no-op whose ``report`` always answers False. With
``hydra.sweeper.pruner=none`` the values are still reported (the study's per-epoch curves), and
Optuna's NopPruner never says stop.

A pruned job ends like an early-stopped one (``best.pt`` and ``last.pt`` kept, W&B run finished);
it marks its trial with the user attribute ``pruned_at_epoch``, and the sweeper, which alone
finishes trials, records it as PRUNED.

Optuna is imported only inside a study: every training run imports this module, and Optuna
(with SciPy) takes seconds to import.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Mapping

TRIAL_ENV = "EMBERFORMER_OPTUNA_TRIAL"
STUDY_ENV = "EMBERFORMER_OPTUNA_STUDY"
STORAGE_ENV = "EMBERFORMER_OPTUNA_STORAGE"
FAIL_ATTR = "fail_reason"
PRUNED_ATTR = "pruned_at_epoch"
PRUNERS = ("median", "successive_halving", "hyperband", "none")


def build_pruner(name: str, settings: Mapping[str, Any] | None = None, max_epochs: int | None = None):
    """Optuna's own pruner for ``hydra.sweeper.pruner`` (steps are epochs, counted from 1); a bad
    setting is a one-line ValueError naming ``hydra.sweeper.pruners.<name>``."""
    import optuna  # here, not at the top: a training run outside a study never needs it

    from emberformer.sweeps.hyperband import StableHyperbandPruner

    name = str(name).lower()
    opts = dict(settings or {})
    kinds = {"median": optuna.pruners.MedianPruner, "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
             "hyperband": StableHyperbandPruner, "none": optuna.pruners.NopPruner}
    if name not in kinds:
        raise ValueError(f"hydra.sweeper.pruner={name!r} is not known; allowed: {', '.join(PRUNERS)}")
    if name == "hyperband" and opts.get("max_resource") is None:  # null: the run's trainer.epochs
        opts["max_resource"] = int(max_epochs) if max_epochs else "auto"
    try:
        return kinds[name](**opts)
    except (TypeError, ValueError) as e:  # Optuna's own check of the value, or an unknown key
        raise ValueError(f"hydra.sweeper.pruners.{name}: {e}") from None


def sweeper_pruner_settings(sweeper_cfg: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    name = str(sweeper_cfg.get("pruner") or "none").lower()
    settings = dict((sweeper_cfg.get("pruners") or {}).get(name) or {})
    return name, settings


class TrialPruning:
    """``report(epoch, value) -> bool``: True means 'prune now'. A no-op outside an Optuna study."""

    def __init__(self, trial: Any = None, number: int | None = None):
        self.trial = trial
        self.number = number
        self.pruned_at: int | None = None

    @property
    def active(self) -> bool:
        return self.trial is not None

    @classmethod
    def from_hydra(cls, max_epochs: int | None = None) -> "TrialPruning":
        """Built from the running job's Hydra config; inactive when there is nothing to report to."""
        try:
            from hydra.core.hydra_config import HydraConfig

            hc = HydraConfig.get()
        except ValueError:  # not under Hydra (a test, a script)
            return cls()
        env = hc.job.get("env_set") or {}
        number, study, storage = env.get(TRIAL_ENV), env.get(STUDY_ENV), env.get(STORAGE_ENV)
        name, settings = sweeper_pruner_settings(hc.get("sweeper") or {})
        if number in (None, "") or not study or not storage:
            return cls()
        # with pruner=none the job still reports every epoch (the study's per-epoch curves);
        # Optuna's NopPruner then never says stop
        return cls.open(str(study), str(storage), int(number), build_pruner(name, settings, max_epochs))

    @classmethod
    def open(cls, study_name: str, storage: str, number: int, pruner: Any) -> "TrialPruning":
        import optuna

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study = optuna.load_study(study_name=study_name, storage=storage, pruner=pruner,
                                      sampler=optuna.samplers.RandomSampler())
            trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
            trial = optuna.trial.Trial(study, trial_id)
        return cls(trial, number)

    def report(self, epoch: int, value: float) -> bool:
        """Report this epoch's monitored value to the trial; True when the pruner says stop."""
        if self.trial is None or self.pruned_at is not None:
            return self.pruned_at is not None
        value = float(value)
        if not math.isfinite(value):
            return False  # the non-finite check of the run decides; Optuna's plots need numbers
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.trial.report(value, step=int(epoch))
            prune = bool(self.trial.should_prune())
        if prune:
            self.pruned_at = int(epoch)
            self.trial.set_user_attr(PRUNED_ATTR, int(epoch))
        return prune

    @property
    def pruned(self) -> bool:
        return self.pruned_at is not None

    def message(self, monitor: str, value: float) -> str:
        return (f"Pruned by the Optuna study at epoch {self.pruned_at} (trial {self.number}, "
                f"best {monitor}={value:.4f} behind the other trials); best.pt and last.pt are kept")


def mark_run_pruned(logger: Any, epoch: int) -> None:
    """Tag the job's W&B run ``pruned`` and note the epoch in its summary (metrics.jsonl too)."""
    logger.summary({"pruned": True, "pruned_at_epoch": int(epoch)})
    run = getattr(getattr(logger, "wandb", None), "run", None)
    if run is not None:
        try:
            run.tags = tuple(sorted(set(run.tags or ()) | {"pruned"}))
        except Exception:  # noqa: BLE001 - W&B trouble never costs the run
            pass
