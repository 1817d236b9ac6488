"""The project's Optuna sweeper: hydra-optuna-sweeper's, plus pruning, heartbeats and trial states.

``PrunedOptunaSweeperImpl`` extends the plugin's ``OptunaSweeperImpl`` (same config keys, same
search-space syntax, same SQLite/database studies); Hydra instantiates it through
``hydra_plugins.emberformer_sweepers.EmberformerOptunaSweeper`` (a subclass of the plugin's
``OptunaSweeper``; Hydra loads sweepers only from ``hydra_plugins``). It adds:

- ``pruner: successive_halving | median | hyperband | none`` (settings under ``pruners.<name>``): Optuna's
  own pruners.
  Each job gets its trial through its config (``hydra.job.env_set.EMBERFORMER_OPTUNA_TRIAL``,
  ``..._STUDY``, ``..._STORAGE``), reports its monitored value every epoch to that trial in the
  shared storage and asks whether to stop (``emberformer.sweeps.pruning``). A job that was told
  to stop marks its trial ``pruned_at_epoch``; the sweeper then records the trial as PRUNED.
- Heartbeats: while a batch of jobs runs, the sweeper records a heartbeat for each of its trials
  (Optuna's RDB heartbeat). When a study is resumed, a trial still RUNNING without a recent
  heartbeat (its sweep was interrupted) is marked FAIL with ``fail_reason: interrupted``.
- A failed job's reason is kept on its trial (``fail_reason``); the study goes on as before.
"""
from __future__ import annotations

import functools
import logging
import threading
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import optuna
from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl, create_params_from_overrides
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from emberformer.sweeps.pruning import (FAIL_ATTR, PRUNED_ATTR, STORAGE_ENV, STUDY_ENV, TRIAL_ENV,
                                        build_pruner)

log = logging.getLogger(__name__)


def absolute_storage(url: Any) -> Any:
    """``sqlite:///relative/optuna.db`` -> an absolute path, so every job opens the same file."""
    if isinstance(url, str) and url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        path = url[len("sqlite:///"):]
        if path and path != ":memory:":
            return "sqlite:///" + str(Path(path).resolve())
    return url


def quote(value: str) -> str:
    """A Hydra override value that is taken verbatim (quotes escaped; in Hydra's quoted strings a
    backslash is special only before a quote, so only trailing ones are doubled)."""
    text = str(value)
    body = text.rstrip("\\")
    return "'" + body.replace("'", "\\'") + "\\" * (2 * (len(text) - len(body))) + "'"


def one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


class _Heartbeat:
    """Records a heartbeat for the running trials every ``interval`` seconds while jobs run."""

    def __init__(self, storage: Optional[optuna.storages.RDBStorage], trial_ids: Sequence[int], interval: int):
        self.storage, self.trial_ids, self.interval = storage, list(trial_ids), interval
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def _beat(self) -> None:
        for tid in self.trial_ids:
            try:
                self.storage.record_heartbeat(tid)  # type: ignore[union-attr]
            except Exception as e:  # noqa: BLE001 - a missed beat must not stop the sweep
                log.debug(f"heartbeat failed: {e}")

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._beat()

    def __enter__(self) -> "_Heartbeat":
        if self.storage is not None:
            self._beat()
            self._thread = threading.Thread(target=self._run, name="optuna-heartbeat", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


class PrunedOptunaSweeperImpl(OptunaSweeperImpl):
    def __init__(self, *args: Any, pruner: str = "none", pruners: Optional[DictConfig] = None,
                 heartbeat_interval: int = 10, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pruner_name = str(pruner or "none").lower()
        self.pruner_settings: Dict[str, Any] = dict(
            (OmegaConf.to_container(pruners, resolve=True) if isinstance(pruners, DictConfig) else pruners or {})
            .get(self.pruner_name) or {})
        build_pruner(self.pruner_name, self.pruner_settings)  # a bad name or setting fails here, before any trial
        self.heartbeat_interval = int(heartbeat_interval)
        if self.heartbeat_interval < 1:
            raise ValueError(f"hydra.sweeper.heartbeat_interval must be >= 1 s, got {heartbeat_interval}")
        self.rdb: Optional[optuna.storages.RDBStorage] = None
        self.storage_url: Optional[str] = None

    # ------------------------------------------------------------------ storage and study
    def _open_storage(self) -> Any:
        url = absolute_storage(self.storage)
        if isinstance(url, str) and not url.startswith("redis"):
            self.storage_url = url
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.rdb = optuna.storages.RDBStorage(url, heartbeat_interval=self.heartbeat_interval)
            return self.rdb
        if self.pruner_name != "none":
            raise ValueError(f"hydra.sweeper.pruner={self.pruner_name} needs hydra.sweeper.storage to be a "
                             "database URL (e.g. sqlite:///optuna.db) that the sweeper and its jobs share")
        return url

    def _fail_interrupted(self, study: optuna.Study) -> None:
        """Trials left RUNNING by an interrupted sweep (no heartbeat for the grace period) -> FAIL."""
        if self.rdb is None:
            return
        for tid in self.rdb._get_stale_trial_ids(study._study_id):
            try:
                self.rdb.set_trial_user_attr(tid, FAIL_ATTR, "interrupted")
                if self.rdb.set_trial_state(tid, TrialState.FAIL):
                    log.warning(f"Trial {self.rdb.get_trial_number_from_id(tid)} was left running by an "
                                "interrupted sweep: marked failed (interrupted)")
            except Exception as e:  # noqa: BLE001 - another sweeper finished it meanwhile
                log.debug(f"could not fail stale trial {tid}: {e}")

    # ------------------------------------------------------------------ trials
    def _configure_trials(self, trials: List[optuna.trial.Trial], search_space_distributions: Dict[str, Any],
                          fixed_params: Dict[str, Any]) -> Sequence[Sequence[str]]:
        overrides = super()._configure_trials(trials, search_space_distributions, fixed_params)
        if self.storage_url is None:
            return overrides
        # plain overrides where the config declares the keys (conf/hparams_search/loss_weights.yaml),
        # so that job names and summaries, which leave out hydra.* overrides, stay as they were
        declared = OmegaConf.select(self.config, "hydra.job.env_set", default=None) or {}

        def env(key: str, value: str) -> str:
            return f"{'' if key in declared else '++'}hydra.job.env_set.{key}={value}"

        return [(*o, env(TRIAL_ENV, str(t.number)), env(STUDY_ENV, quote(t.study.study_name)),
                 env(STORAGE_ENV, quote(self.storage_url))) for o, t in zip(overrides, trials)]

    def _mirror_job_reports(self, trial: optuna.trial.Trial) -> Dict[str, Any]:
        """Copy what the job wrote to its trial (per-epoch values, attributes) into this process's
        cached view, so the sampler and ``tell`` see them; return the job's user attributes."""
        if self.rdb is None:
            return {}
        fresh = self.rdb.get_trial(trial._trial_id)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for step, value in sorted(fresh.intermediate_values.items()):
                trial.report(value, step)
            for k, v in fresh.user_attrs.items():
                if trial.user_attrs.get(k) != v:
                    trial.set_user_attr(k, v)
        return fresh.user_attrs

    def _tell(self, study: optuna.Study, trial: optuna.trial.Trial, ret: JobReturn,
              directions: List[str], is_grid_sampler: bool) -> Optional[Exception]:
        """Record one finished job; return the failure, if any."""
        try:
            attrs = self._mirror_job_reports(trial) if ret.status == JobStatus.COMPLETED else {}
            if ret.status == JobStatus.COMPLETED and PRUNED_ATTR in attrs:
                study.tell(trial, state=TrialState.PRUNED)
                log.info(f"Trial {trial.number} pruned at epoch {attrs[PRUNED_ATTR]}")
                return None
            value = ret.return_value  # raises the job's exception when it failed
            try:
                values = [float(value)] if len(directions) == 1 else [float(v) for v in value]
            except (ValueError, TypeError):
                raise ValueError(f"Return value must be float-castable. Got '{value}'.") from None
            if len(values) != len(directions):
                raise ValueError(f"The number of the values and the number of the objectives are mismatched. "
                                 f"Expect {len(directions)}, but actually {len(values)}.")
            try:
                study.tell(trial=trial, state=TrialState.COMPLETE, values=values)
            except RuntimeError as e:
                if not (is_grid_sampler and "`Study.stop` is supposed to be invoked" in str(e)):
                    raise
            return None
        except Exception as e:  # noqa: BLE001 - the trial fails, the study goes on
            reason = one_line(e)
            try:
                trial.set_user_attr(FAIL_ATTR, reason)
            except Exception:  # noqa: BLE001
                pass
            study.tell(trial=trial, state=TrialState.FAIL)
            log.warning(f"Trial {trial.number} failed: {reason}")
            return e

    # ------------------------------------------------------------------ the sweep
    def sweep(self, arguments: List[str]) -> None:
        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        self._process_searchspace_config()
        params_conf = self._parse_sweeper_params_config()
        params_conf.extend(arguments)
        is_grid_sampler = (isinstance(self.sampler, functools.partial)
                           and self.sampler.func == optuna.samplers.GridSampler)
        override_dists, fixed_params = create_params_from_overrides(params_conf)
        dists = dict(self.search_space_distributions or {})
        dists.update(override_dists)
        if is_grid_sampler:
            grid = {name: self._to_grid_sampler_choices(d) for name, d in dists.items()}
            self.sampler = self.sampler(grid)
            n = 1
            for v in grid.values():
                n *= len(v)
            self.n_trials = min(self.n_trials, n)
            log.info(f"Updating num of trials to {self.n_trials} due to using GridSampler.")
        for name in fixed_params:
            dists.pop(name, None)
        directions = self._get_directions()
        storage = self._open_storage()
        max_epochs = OmegaConf.select(self.config, "trainer.epochs", default=None)
        pruner = build_pruner(self.pruner_name, self.pruner_settings, max_epochs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study = optuna.create_study(study_name=self.study_name, storage=storage, sampler=self.sampler,
                                        directions=directions, load_if_exists=True, pruner=pruner)
        self._fail_interrupted(study)
        log.info(f"Study name: {study.study_name}")
        log.info(f"Storage: {self.storage}")
        log.info(f"Sampler: {type(self.sampler).__name__}")
        log.info(f"Pruner: {type(pruner).__name__}")
        log.info(f"Directions: {directions}")

        n_to_go = self.n_trials
        while n_to_go > 0:
            batch = min(n_to_go, self.n_jobs)
            trials = [study.ask() for _ in range(batch)]
            overrides = self._configure_trials(trials, dists, fixed_params)
            with _Heartbeat(self.rdb, [t._trial_id for t in trials], self.heartbeat_interval):
                returns = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
            self.job_idx += len(returns)
            failures = [e for t, r in zip(trials, returns)
                        if (e := self._tell(study, t, r, directions, is_grid_sampler)) is not None]
            if len(failures) / len(returns) > self.max_failure_rate:
                log.error(f"Failed {failures} times out of {len(returns)} "
                          f"with max_failure_rate={self.max_failure_rate}.")
                for r in returns:
                    r.return_value  # noqa: B018 - raise the first failure with its traceback
            n_to_go -= batch
        self._write_results(study, directions)

    def _write_results(self, study: optuna.Study, directions: List[str]) -> None:
        results: Dict[str, Any]
        if len(directions) < 2:
            try:
                best = study.best_trial
                results = {"name": "optuna", "best_params": best.params, "best_value": best.value}
                log.info(f"Best parameters: {best.params}")
                log.info(f"Best value: {best.value}")
            except ValueError:  # no complete trial (all pruned or failed)
                results = {"name": "optuna", "best_params": {}, "best_value": None}
                log.warning("No trial of the study has completed yet")
        else:
            results = {"name": "optuna",
                       "solutions": [{"params": t.params, "values": t.values} for t in study.best_trials]}
        OmegaConf.save(OmegaConf.create(results), f"{self.config.hydra.sweep.dir}/optimization_results.yaml")
