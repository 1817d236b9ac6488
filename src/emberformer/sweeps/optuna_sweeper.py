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
- A failed job's reason is kept on its trial (``fail_reason``); the study goes on as before. A
  sweep none of whose trials completes ends non-zero (``SweepSummary`` says so, after the summary).
- Several sweeps may work on one study at once (the same command in two terminals): a SQLite
  storage is created under a file lock beside it (Optuna's table creation is not safe against a
  second process doing the same), other databases are retried, and every job's folder is named
  after its trial, unique in the study.
- A resumed study whose search space changed kind (``interval`` -> ``choice``) is refused before
  any trial is asked, in one line naming the parameter and both distributions (exit 2).
"""
from __future__ import annotations

import contextlib
import functools
import logging
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import optuna
from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl, create_params_from_overrides
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import (BaseDistribution, CategoricalDistribution, IntLogUniformDistribution,
                                  IntUniformDistribution, LogUniformDistribution, UniformDistribution,
                                  check_distribution_compatibility)
from optuna.trial import TrialState
from sqlalchemy.exc import SQLAlchemyError

from emberformer.files import locks
from emberformer.sweeps.summary import SWEEP_TALLY
from emberformer.sweeps.pruning import (FAIL_ATTR, PRUNED_ATTR, STORAGE_ENV, STUDY_ENV, TRIAL_ENV,
                                        build_pruner)

log = logging.getLogger(__name__)


def sqlite_path(url: Any) -> Optional[Path]:
    """The file of a ``sqlite:///`` storage URL (None for other storages and in-memory SQLite)."""
    if isinstance(url, str) and url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if path and path != ":memory:":
            return Path(path)
    return None


def absolute_storage(url: Any) -> Any:
    """``sqlite:///relative/optuna.db`` -> an absolute path, so every job opens the same file."""
    db = sqlite_path(url)
    if db is not None and not db.is_absolute():
        return "sqlite:///" + str(db.resolve())
    return url


def storage_lock(url: Any) -> Optional[Path]:
    """The lock file beside a SQLite storage (``.optuna.db.lock``), under which it is created."""
    db = sqlite_path(url)
    return None if db is None else db.with_name(f".{db.name}.lock")


def describe_distribution(d: BaseDistribution) -> str:
    """A distribution as the search-space syntax writes it (``interval(0.05, 1.0)``, ``choice(a, b)``)."""
    if isinstance(d, CategoricalDistribution):
        return f"choice({', '.join(str(c) for c in d.choices)})"
    if isinstance(d, LogUniformDistribution):
        return f"tag(log, interval({d.low}, {d.high}))"
    if isinstance(d, IntLogUniformDistribution):
        return f"tag(log, interval({d.low}, {d.high})) of integers"
    if isinstance(d, UniformDistribution):
        return f"interval({d.low}, {d.high})"
    if isinstance(d, IntUniformDistribution):
        return f"integers {d.low}..{d.high} (step {d.step})"
    return repr(d)


def changed_search_space(study: optuna.Study, dists: Dict[str, BaseDistribution]) -> Optional[str]:
    """Why this sweep's search space cannot go on in ``study`` (a parameter whose distribution
    changed kind or choices, which Optuna refuses once a trial has asked for it); None when it can."""
    for t in study.get_trials(deepcopy=False):
        for name, old in t.distributions.items():
            new = dists.get(name)
            if new is None:
                continue
            try:
                check_distribution_compatibility(old, new)
            except ValueError:
                return (f"{name}: the study {study.study_name!r} searched it as {describe_distribution(old)}, "
                        f"this sweep as {describe_distribution(new)}; a study's search space cannot change "
                        f"kind: sweep it as before, or start a new study (hydra.sweeper.study_name=NEW_NAME)")
    return None


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
            for attempt in range(5):  # another sweep creating the same database's tables: try again
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        self.rdb = optuna.storages.RDBStorage(url, heartbeat_interval=self.heartbeat_interval)
                    break
                except SQLAlchemyError:
                    if attempt == 4:
                        raise
                    time.sleep(1 + attempt)
            return self.rdb
        if self.pruner_name != "none":
            raise ValueError(f"hydra.sweeper.pruner={self.pruner_name} needs hydra.sweeper.storage to be a "
                             "database URL (e.g. sqlite:///optuna.db) that the sweeper and its jobs share")
        return url

    def open_study(self, directions: List[str], pruner: Any) -> optuna.Study:
        """The study, created if new. Two sweeps starting together on a new SQLite study: one
        creates the storage and the study under the lock beside it, the other then opens them."""
        lock = storage_lock(absolute_storage(self.storage))
        if lock is not None:
            lock.parent.mkdir(parents=True, exist_ok=True)
        with locks.hold(lock, timeout=300) if lock is not None else contextlib.nullcontext():
            storage = self._open_storage()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return optuna.create_study(study_name=self.study_name, storage=storage, sampler=self.sampler,
                                           directions=directions, load_if_exists=True, pruner=pruner)

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
        # plain overrides where the config declares the keys (conf/hparams_search/loss_weights.yaml),
        # so that job names and summaries, which leave out hydra.* overrides, stay as they were
        declared = OmegaConf.select(self.config, "hydra.job.env_set", default=None) or {}

        def env(key: str, value: str) -> str:
            return f"{'' if key in declared else '++'}hydra.job.env_set.{key}={value}"

        # the trial number always (it names the job's folder, unique in the study even when several
        # sweeps work on it); the study and storage where the job can reach them
        shared = self.storage_url is not None
        return [(*o, env(TRIAL_ENV, str(t.number)),
                 *((env(STUDY_ENV, quote(t.study.study_name)), env(STORAGE_ENV, quote(self.storage_url)))
                   if shared else ())) for o, t in zip(overrides, trials)]

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
        max_epochs = OmegaConf.select(self.config, "trainer.epochs", default=None)
        pruner = build_pruner(self.pruner_name, self.pruner_settings, max_epochs)
        study = self.open_study(directions, pruner)
        changed = changed_search_space(study, dists)
        if changed is not None:  # before any trial is asked: nothing is left RUNNING
            print(f"Error: {changed}", file=sys.stderr, flush=True)
            sys.exit(2)
        self._fail_interrupted(study)
        log.info(f"Study name: {study.study_name}")
        log.info(f"Storage: {self.storage}")
        log.info(f"Sampler: {type(self.sampler).__name__}")
        log.info(f"Pruner: {type(pruner).__name__}")
        log.info(f"Directions: {directions}")

        n_to_go = self.n_trials
        SWEEP_TALLY.start()
        while n_to_go > 0:
            batch = min(n_to_go, self.n_jobs)
            trials = [study.ask() for _ in range(batch)]
            try:
                overrides = self._configure_trials(trials, dists, fixed_params)
            except BaseException:  # the asked trials never run: none stays RUNNING
                for t in trials:
                    study.tell(t, state=TrialState.FAIL)
                raise
            with _Heartbeat(self.rdb, [t._trial_id for t in trials], self.heartbeat_interval):
                returns = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
            self.job_idx += len(returns)
            failures = [e for t, r in zip(trials, returns)
                        if (e := self._tell(study, t, r, directions, is_grid_sampler)) is not None]
            SWEEP_TALLY.add(trials=len(returns), failed=len(failures))
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
