"""A built-in simulated data set (``data.root: null`` of data=wsts, data=ndws): written once into
the cache folder and found there by the data module.

The set is written aside and renamed into place whole, ``settings.json`` (the settings, the key and
every file's size) last, under a lock so that two runs starting together simulate it once; a set
whose files no longer match the list is written again with a one-line notice. One writer serves
every built-in set, so they fail with the same one-line messages.
"""
from __future__ import annotations

import errno
import json
import os
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping

from emberformer.data.cache_folder import disk_full_hint
from emberformer.data.reader import DataError, DataInterrupted
from emberformer.data.wsts.layout import one_line
from emberformer.files import atomic, locks, tempdirs

SETTINGS_FILE = "settings.json"
LOCK_WAIT_S = 1800.0  # another process writing the same set: wait for it rather than write it twice


def _problem(folder: Path) -> str | None:
    return atomic.listed_files_problem(folder, SETTINGS_FILE)


def write_once(cache_dir: Path, name: str, what: str, temp_names: str, write: Callable[[Path], Any],
               record: Mapping[str, Any], no_space: str | None = None, lock_wait_s: float = LOCK_WAIT_S) -> Path:
    """``cache_dir/name``, written by ``write(folder)`` unless it is there and whole.

    ``settings.json`` holds ``record`` and the size of every file ``write`` made. ``what`` names
    the set in messages ("the built-in WSTS set"); ``temp_names`` matches its stale build folders
    (files/tempdirs.py); ``no_space``, where given, is the message for a full disk; another process
    writing the same set is waited for up to ``lock_wait_s``.
    """
    final = cache_dir / name
    if final.exists() and _problem(final) is None:
        return final
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        with locks.hold(cache_dir / f".{name}.lock", timeout=lock_wait_s):
            tempdirs.remove_stale(cache_dir, temp_names)
            if final.exists():
                problem = _problem(final)
                if problem is None:
                    return final  # another process wrote it while this one waited
                print(f"Note: {what} {final} is damaged ({problem}); writing it again", flush=True)
            tmp = cache_dir / f".{name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
            with atomic.folder(final, tmp, _problem):
                write(tmp)
                files = {p.relative_to(tmp).as_posix(): p.stat().st_size
                         for p in sorted(tmp.rglob("*")) if p.is_file()}
                (tmp / SETTINGS_FILE).write_text(json.dumps({**record, "files": files}, indent=1) + "\n")
    except locks.Locked as e:
        raise DataError(f"{what} in {cache_dir} is being written by {e.owner} for more than "
                        f"{lock_wait_s:.0f} s; wait for it or set data.cache_dir to another folder") from None
    except OSError as e:
        if no_space is not None and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DataError(no_space) from None
        raise DataError(f"cannot write {what} in {cache_dir}: {one_line(e)}{disk_full_hint(e)}") from None
    return final


def resolve_root(root: Path | None, settings: Any, ensure: Callable[[str, Mapping[str, Any], bool], Path],
                 describe: Callable[[Path], str], what: str, cache_dir: str, progress: bool) -> Path:
    """A data module's root: ``root``, or (``settings`` not None) the built-in set, written on
    first use by ``ensure(cache_dir, settings.as_dict(), progress)`` and described in the log."""
    if settings is None:
        assert root is not None
        return root
    try:
        root = ensure(cache_dir, settings.as_dict(), progress)
    except KeyboardInterrupt:  # ensure removed its temporary folder
        raise DataInterrupted(
            f"Interrupted while writing {what}; nothing was harmed: the partly written copy was removed, "
            f"the finished data sets in {cache_dir} are as they were (the next run writes it again)") from None
    print(describe(root), flush=True)
    return root
