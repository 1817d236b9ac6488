"""Shared test settings and helpers.

Recipe for a test:

* a config: ``compose_config(*overrides)`` (or the ``tiny_cfg`` fixture: ``debug=fast`` on the
  session cache, no W&B);
* an app as a user runs it, in this process (fast; the same exit code, stdout and stderr):
  ``proc = run_app("train", [*TINY, ...], tmp_path)``; a user mistake: ``one_line_error(proc)``;
* an app in a real interpreter, only where the process is the point (exit status of a real
  interpreter, signals, two processes at once, ``-m`` sweeps launching joblib, torchrun):
  ``run_module("train", args, run_env, tmp_path)`` (``run_env``: the one environment);
* a trained tiny run to read, evaluate or resume: the ``tiny_run`` fixture (copy its folder with
  ``copy_run`` before changing anything in it);
* a test that trains, sweeps or starts a process costing more than a few seconds:
  ``@pytest.mark.slow`` (``--strict-markers``: no other marker names). ``python -m pytest -m "not
  slow"`` is the quick loop, ``python -m pytest`` runs everything.

Every test runs with the private data cache, offline and silent W&B and no network (``run_env``,
applied to ``os.environ`` for every test by an autouse fixture), and ``run_app`` puts back what an
app changes in this process (cwd, environment, Hydra's singletons, logging, signal handlers,
torch's thread count and flags).
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import runpy
import shutil
import signal
import subprocess
import sys
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
# the smallest real training run: built-in synthetic fires, 2 epochs, no W&B, no bars
TINY = ["debug=fast", "logger=none", "trainer.limit_batches=null", "trainer.progress=false", "data.progress=false"]


def compose_config(*overrides: str, config_name: str = "train") -> DictConfig:
    """The config ``python -m emberformer.<app> OVERRIDES`` would run with (no Hydra run folder)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


def loader_bench_rates(stdout: str, rows: Sequence[str], speedup_line: str) -> tuple[dict[str, float], list[float]]:
    """A loader bench's printed table: samples/s of each row (1 worker, > 0), and the speedups of
    its last line (``speedup_line``, a regex with one group per speedup), each checked against the
    table's rates (rounded to 0.1 samples/s) of the first row over the others."""
    import re

    rates = {}
    for name in rows:
        m = re.search(rf"^\| {re.escape(name)} \| 1 \| ([\d.]+) \| [\d.]+ ms \| ([\d.]+)x \|$", stdout, re.M)
        assert m, stdout
        rates[name] = float(m.group(1))
        assert rates[name] > 0
    last = stdout.strip().splitlines()[-1]
    m = re.fullmatch(speedup_line, last)
    assert m, last
    speedups = [float(g) for g in m.groups()]
    for got, ref in zip(speedups, rows[1:]):
        assert abs(got - rates[rows[0]] / rates[ref]) <= 0.05 + 0.05 * got
    return rates, speedups


def one_line_error(proc) -> str:
    """The single ``Error: …`` line of a run that stopped on a user mistake (exit code 2)."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    return lines[0]


# ------------------------------------------------------------------ the one environment
@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One synthetic-data cache for the whole session, so tiny data sets are generated once."""
    return tmp_path_factory.mktemp("efcache")


@pytest.fixture(scope="session")
def run_env(cache_dir, tmp_path_factory) -> dict[str, str]:
    """The environment every run gets (in-process and subprocess): private cache, offline and
    silent W&B writing under the session's temporary folder, no network."""
    wandb = tmp_path_factory.mktemp("wandb")
    env = dict(os.environ)
    env.update({"EMBERFORMER_CACHE": str(cache_dir), "WANDB_MODE": "offline", "WANDB_SILENT": "true",
                "WANDB_DIR": str(wandb), "WANDB_CACHE_DIR": str(wandb / "cache"),
                "WANDB_CONFIG_DIR": str(wandb / "config"), "HF_HUB_OFFLINE": "1",
                "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"})
    return env


@pytest.fixture(autouse=True)
def _test_environment(run_env, monkeypatch) -> Iterator[None]:
    """Every test sees ``run_env`` in ``os.environ`` (so in-process apps and helpers read the
    private cache and offline W&B); whatever a test changes there is put back after it."""
    for key, value in run_env.items():
        if os.environ.get(key) != value:
            monkeypatch.setenv(key, value)
    yield
    # an ignored SIGINT would be inherited by every later subprocess, which Ctrl-C could not stop
    signals = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    for sig, handler in signals.items():
        if signal.getsignal(sig) is not handler:
            signal.signal(sig, handler)


@pytest.fixture
def tiny_cfg(cache_dir) -> Callable[..., DictConfig]:
    """``tiny_cfg(*overrides)``: the ``debug=fast`` config on the session cache, without W&B."""
    def make(*overrides: str) -> DictConfig:
        return compose_config("debug=fast", "logger=none", f"data.cache_dir={cache_dir}", *overrides)
    return make


# ------------------------------------------------------------------ an app in this process
@dataclass
class AppResult:
    """What a finished app run left: like ``subprocess.CompletedProcess`` (returncode, stdout, stderr)."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str


def _exit_code(e: SystemExit, err: io.StringIO) -> int:
    """The exit status ``sys.exit(code)`` gives the interpreter (a message is printed, status 1)."""
    if e.code is None:
        return 0
    if isinstance(e.code, int):
        return e.code
    print(e.code, file=err)
    return 1


@contextlib.contextmanager
def _process_state_kept():
    """Put back what an app changes in its process: cwd, os.environ, Hydra's singletons, the
    root logger, SIGINT/SIGTERM handlers, torch's threads and backend flags, the run-folder claims."""
    from emberformer.cli.run_folder import release_claims, use_run_folder

    cwd, environ, argv = os.getcwd(), dict(os.environ), list(sys.argv)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    signals = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    threads = torch.get_num_threads()
    flags = (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32,
             torch.backends.cuda.matmul.allow_tf32, torch.are_deterministic_algorithms_enabled())
    GlobalHydra.instance().clear()
    try:
        yield
    finally:
        release_claims()
        use_run_folder(None)
        GlobalHydra.instance().clear()
        HydraConfig.instance().cfg = None
        for h in root.handlers:
            if h not in handlers:
                h.close()
        root.handlers[:] = handlers
        root.setLevel(level)
        for s, h in signals.items():
            signal.signal(s, h)
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32,
         torch.backends.cuda.matmul.allow_tf32) = flags[:3]
        torch.use_deterministic_algorithms(flags[3])
        os.environ.clear()
        os.environ.update(environ)
        sys.argv[:] = argv
        os.chdir(cwd)


def run_app(module: str, args: Sequence[str], cwd: Path, env: dict[str, str] | None = None) -> AppResult:
    """``python -m emberformer.<module> ARGS`` run in ``cwd`` inside this process: the same code path
    (``runpy`` runs the module as ``__main__``), its exit status, stdout and stderr (warnings
    included, as the interpreter would print them), without starting an interpreter.

    ``env``: extra or changed environment variables for this run only.
    """
    cwd = Path(cwd)
    cwd.mkdir(parents=True, exist_ok=True)
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with _process_state_kept():
        os.environ.update(env or {})
        os.chdir(cwd)
        sys.argv[:] = [f"emberformer.{module}", *args]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                warnings.catch_warnings(record=True) as caught:
            warnings.resetwarnings()
            warnings.simplefilter("default")  # the interpreter's own filters
            for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                warnings.filterwarnings("ignore", category=category)
            name = f"emberformer.{module}"
            if hasattr(sys.modules.get(name), "__path__"):  # a package: python -m runs its __main__
                name += ".__main__"
            imported = sys.modules.pop(name, None)  # a test imported it: run it afresh, as ``python -m`` does
            try:
                runpy.run_module(name.removesuffix(".__main__"), run_name="__main__", alter_sys=True)
            except SystemExit as e:
                code = _exit_code(e, err)
            except Exception:  # noqa: BLE001 - what an uncaught error does to the interpreter
                traceback.print_exc(file=err)
                code = 1
            finally:
                if imported is not None:
                    sys.modules[name] = imported
            for w in caught:
                err.write(warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line))
    return AppResult([module, *args], code, out.getvalue(), err.getvalue())


# ------------------------------------------------------------------ an app in a real interpreter
def run_module(module: str | None, args: Sequence[str], env: dict, cwd: Path, timeout: int = 400,
               preexec_fn: Callable[[], None] | None = None) -> subprocess.CompletedProcess:
    """``python -m emberformer.<module> ARGS`` (``module=None``: ``python ARGS``) in a new interpreter
    in ``cwd``, output captured. Only where the process is the point; otherwise ``run_app``."""
    cwd = Path(cwd)
    cwd.mkdir(parents=True, exist_ok=True)
    target = [] if module is None else ["-m", f"emberformer.{module}"]
    return subprocess.run([sys.executable, *target, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, preexec_fn=preexec_fn)


# ------------------------------------------------------------------ one tiny trained run
@dataclass
class TinyRun:
    """The session's tiny training run (``debug=fast``: 2 epochs of 3 batches, progress bars on,
    ``hydra.run.dir=run``, no W&B): read it, never change it."""

    folder: Path
    result: AppResult

    @property
    def best(self) -> Path:
        return self.folder / "checkpoints" / "best.pt"

    @property
    def last(self) -> Path:
        return self.folder / "checkpoints" / "last.pt"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, run_env) -> TinyRun:
    """One tiny training run for the session, reused by evaluate, predict and resume tests."""
    cwd = tmp_path_factory.mktemp("tiny_run")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in run_env.items():
            mp.setenv(key, value)
        proc = run_app("train", ["debug=fast", "logger=none", "data.progress=false", "hydra.run.dir=run"], cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return TinyRun(cwd / "run", proc)


def copy_run(run: TinyRun, dest: Path) -> Path:
    """A copy of the tiny run's folder at ``dest`` (for tests that resume into it or change it)."""
    shutil.copytree(run.folder, dest, ignore=shutil.ignore_patterns(".run.lock"))
    return Path(dest)
