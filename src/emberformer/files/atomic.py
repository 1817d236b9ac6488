"""Files and folders that appear whole or not at all under their real name.

Both are written under a temporary sibling name and renamed into place when complete, so a kill,
a full disk or an exception half way never leaves a truncated file or a half-built folder that a
later run would take for finished; any failure removes the temporary copy. Temporary names carry
the writer's pid, so a stale-temp clean-up (:func:`emberformer.files.tempdirs.remove_stale`) can
tell whether their writer still runs.
"""
from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Callable, Iterator

from emberformer.files import tempdirs


@contextmanager
def write(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary sibling of ``path`` (``.<name>.tmp<pid>``) for writing; when the block
    ends, flush and fsync it, then rename it over ``path``. On any failure it is removed and
    ``path`` keeps what it held before."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    """``path.write_text(text)``, atomically (see :func:`write`)."""
    with write(path, "w") as f:
        f.write(text)


@contextmanager
def folder(final: Path, tmp: Path, problem: Callable[[Path], str | None]) -> Iterator[Path]:
    """Build a folder in ``tmp`` (a sibling of ``final``, named so the caller's stale-temp clean-up
    recognises it) and publish it as ``final`` when the block ends; any failure removes ``tmp``.

    ``problem(folder)`` says what is wrong with a finished folder (None: nothing). Publishing keeps
    a complete ``final`` that another process finished first (``tmp`` is dropped) and sets a
    damaged one aside (:func:`~emberformer.files.tempdirs.discard`), so readers never see half a
    folder. Not ``tempfile.mkdtemp``: that folder would be mode 0700 and end up as ``final``.
    """
    shutil.rmtree(tmp, ignore_errors=True)  # left by an earlier process with the same pid
    try:
        tmp.mkdir(parents=True)
        yield tmp
        _publish(tmp, final, problem)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _publish(tmp: Path, final: Path, problem: Callable[[Path], str | None]) -> None:
    """Move the finished ``tmp`` into place, unless another process finished the same folder first."""
    if final.exists():
        if problem(final) is None:  # another process finished the same folder first
            shutil.rmtree(tmp, ignore_errors=True)
            return
        tempdirs.discard(final)  # a damaged, foreign or broken folder under our name: never reuse it
    try:
        os.replace(tmp, final)
    except OSError:
        if problem(final) is not None:  # not another process finishing the same folder first
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def listed_files_problem(root: Path, listing: str = "settings.json") -> str | None:
    """What is wrong with a finished folder whose ``listing`` JSON file records every file's size
    under ``"files"`` (None: nothing): the check a built data set gets before it is reused."""
    try:
        files = json.loads((root / listing).read_text())["files"]
        items = [(str(k), int(v)) for k, v in files.items()]
    except FileNotFoundError:
        return f"{listing} is missing"
    except KeyError:
        return f"{listing} has no file list (written by an older version)"
    except (OSError, ValueError, TypeError, AttributeError):
        return f"{listing} is unreadable"
    for rel, size in items:
        try:
            actual = (root / rel).stat().st_size
        except OSError:
            return f"{rel} is missing"
        if actual != size:
            return f"{rel} is {actual} bytes, {size} when it was written"
    return None


def problem_of(check: Callable[[Path], object], error: type[Exception]) -> Callable[[Path], str | None]:
    """A :func:`folder` ``problem`` from a reader: ``check(folder)`` raising ``error`` is the problem."""
    def problem(folder: Path) -> str | None:
        try:
            check(folder)
        except error as e:
            return str(e)
        return None
    return problem
