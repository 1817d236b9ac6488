"""One-line errors for user mistakes: a single run prints ``Error: ...`` and exits 2; a sweep job
re-raises so its trial is recorded as failed and the sweep goes on."""
from __future__ import annotations

import contextlib
import sys
from typing import Iterator

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from omegaconf.errors import OmegaConfBaseException

from emberformer.cli.moved_keys import removed_key_error, rename_argv
from emberformer.data.frames import FrameError
from emberformer.data.reader import DataError
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
