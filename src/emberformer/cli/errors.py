"""One-line errors for user mistakes: a single run prints ``Error: ...`` and exits 2; a sweep job
re-raises so its trial is recorded as failed and the sweep goes on."""
from __future__ import annotations

import contextlib
import os
import sys
import traceback
from pathlib import Path
from typing import Iterator, NoReturn

from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException, ConfigCompositionException, InstantiationException
from hydra.types import RunMode
from omegaconf.errors import OmegaConfBaseException

from emberformer.cli.moved_keys import removed_key_error, rename_argv
from emberformer.data.frames import FrameError
from emberformer.data.reader import DataError, DataInterrupted
from emberformer.models.pretrained import PretrainedNotFound

USER_ERRORS = (ValueError, DataError, FrameError, PretrainedNotFound, FileNotFoundError,
               OmegaConfBaseException)


class UserError(ValueError):
    """A mistake in the config or the data, reported in one line."""


def root_cause(e: BaseException) -> BaseException:
    """Hydra wraps errors raised by _target_ constructors; report the original one."""
    while isinstance(e, InstantiationException) and e.__cause__ is not None:
        e = e.__cause__
    return e


def is_multirun() -> bool:
    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Single runs: print ``Error: …`` and exit 2. Sweeps: re-raise so the trial is marked failed."""
    try:
        yield
    except DataInterrupted as e:  # Ctrl-C while data was built: say that nothing was harmed
        if is_multirun():
            raise
        print(str(e), file=sys.stderr, flush=True)
        sys.exit(130)
    except (InstantiationException, *USER_ERRORS) as e:
        cause = root_cause(e)
        if not isinstance(cause, USER_ERRORS):
            raise
        if is_multirun():
            raise UserError(str(cause)) from None
        msg = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        print(f"Error: {msg}", file=sys.stderr, flush=True)
        sys.exit(2)


def check_argv(argv: list[str]) -> None:
    """Mistakes Hydra's override parser would answer with a traceback, as one line (exit 2):
    a ``~`` path, a key that was removed. A key that moved is renamed (``moved_keys``)."""
    rename_argv(argv)
    for arg in argv[1:]:
        key, eq, value = arg.partition("=")
        removed = removed_key_error(key.lstrip("+~"))
        if eq and removed:
            print(f"Error: {removed}", file=sys.stderr, flush=True)
            sys.exit(2)
        if eq and value.startswith("~"):
            print(f"Error: {arg}: Hydra reads '~' as its delete operator, so a home-relative path is "
                  f"not expanded; write {key}=$HOME{value[1:]} (the shell expands $HOME) or an absolute path",
                  file=sys.stderr, flush=True)
            sys.exit(2)


def _raised_by_hydra(e: BaseException) -> bool:
    """True when no function of this package ran between Hydra's frames and the raise (a run
    folder Hydra could not create), False for errors of the job itself."""
    package = str(Path(__file__).resolve().parents[1])
    in_hydra = False
    for frame, _ in traceback.walk_tb(e.__traceback__):
        name = frame.f_code.co_filename
        if f"{os.sep}hydra{os.sep}" in name:
            in_hydra = True
        elif in_hydra and name.startswith(package):
            return False
    return in_hydra


def _run_folder_message(e: OSError) -> str:
    try:
        folder = HydraConfig.get().runtime.output_dir
    except (ValueError, AttributeError):
        folder = e.filename
    where = "" if str(e.filename) == str(folder) else f": {e.filename}"
    return (f"hydra.run.dir {folder}: cannot create the run folder there ({e.strerror or e}{where}); "
            "give a folder you can write to")


@contextlib.contextmanager
def hydra_errors(argv: list[str], config_name: str) -> Iterator[None]:
    """Around an app's ``main()``: the command-line mistakes Hydra meets before any of our code runs,
    as one ``Error:`` line and exit 2.

    Hydra answers a key the chosen group lacks (``model=copy_last model.d_model=32``) with several
    lines, and a run folder it cannot create with a traceback, both exit 1. For this call Hydra
    re-raises its errors (``HYDRA_FULL_ERROR=1``) so they are reported here; its other command-line
    errors are printed the way Hydra prints them. A user's own ``HYDRA_FULL_ERROR=1`` changes
    nothing: they asked for Hydra's tracebacks.
    """
    check_argv(argv)
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        yield
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        yield
    except ConfigCompositionException as e:
        from emberformer.cli.checks import missing_key_message

        line = missing_key_message(e, argv[1:], config_name)
        if line is None:
            _print_like_hydra(e)
        print(f"Error: {line}", file=sys.stderr, flush=True)
        sys.exit(2)
    except CompactHydraException as e:
        _print_like_hydra(e)
    except OSError as e:
        if e.filename is None or not _raised_by_hydra(e):
            raise
        print(f"Error: {_run_folder_message(e)}", file=sys.stderr, flush=True)
        sys.exit(2)
    finally:
        os.environ.pop("HYDRA_FULL_ERROR", None)


def _print_like_hydra(e: BaseException) -> NoReturn:
    """What Hydra prints for its own compact errors (hydra._internal.utils.run_and_report), exit 1."""
    sys.stderr.write(str(e) + os.linesep)
    if isinstance(e.__cause__, OmegaConfBaseException):
        sys.stderr.write(str(e.__cause__) + os.linesep)
    sys.stderr.write("\nSet the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.\n")
    sys.exit(1)
