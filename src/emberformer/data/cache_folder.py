"""A decoded cache folder (data=wsts, data=ndws): its ``index.json`` and its build.

The index carries a checksum of its own contents and the size of every array it lists, so a
damaged folder is found by one ``stat`` per file when it is opened; a missing or damaged folder is
built aside and published whole (files/atomic.py), with a notice when it replaces a damaged one.
One reader and one builder serve every data set's cache, so they fail with the same one-line
messages.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, TypeVar

from emberformer.data.reader import DataError, DataInterrupted
from emberformer.data.wsts.layout import one_line
from emberformer.files import atomic, tempdirs

INDEX = "index.json"
T = TypeVar("T")


def disk_full_hint(e: OSError) -> str:
    """What to do about a full disk (empty for any other OSError), for the end of a message."""
    return " (disk full: set data.cache_dir to a folder on another disk)" \
        if e.errno in (errno.ENOSPC, errno.EDQUOT) else ""


def checksum(body: dict) -> str:
    """The checksum of an index's body (everything but ``checksum``)."""
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def write_index(folder: Path, body: dict[str, Any]) -> None:
    """Write ``folder/index.json``: ``body`` and its checksum."""
    atomic.write_text(folder / INDEX, json.dumps({**body, "checksum": checksum(body)}, indent=1))


def read_index(folder: Path, what: str, version: int, sizes_key: str, parse: Callable[[dict], T]) -> T:
    """``parse(body)`` of ``folder/index.json`` once its checksum, version (``version``) and the
    sizes of the files it lists under ``sizes_key`` are right; else a one-line DataError naming the
    ``what`` cache (e.g. "WildfireSpreadTS"), the folder and the damage."""
    where = f"{what} cache {folder} is damaged"
    try:
        data = json.loads((folder / INDEX).read_text())
        body = {k: v for k, v in data.items() if k != "checksum"}
        if data.get("checksum") != checksum(body) or body.get("version") != version:
            raise DataError(f"{where}: {INDEX} does not match its checksum or version")
        index = parse(body)
        sizes = {str(k): int(v) for k, v in body[sizes_key].items()}
    except DataError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise DataError(f"{where}: cannot read {INDEX} ({one_line(e)})") from None
    for name, size in sizes.items():
        try:
            actual = (folder / name).stat().st_size
        except OSError:
            raise DataError(f"{where}: {name} is missing") from None
        if actual != size:
            raise DataError(f"{where}: {name} is {actual} bytes, {size} when it was written")
    return index


def build(out: Path, temp_names: str, damage: Callable[[Path], str | None], decode: Callable[[Path], None],
          what: str, interrupted: str | None = None) -> None:
    """Make ``out`` a finished cache folder unless it is one: ``decode(tmp)`` fills a sibling
    ``<out>.tmp<pid>`` that is then published as ``out``.

    Stale build folders (``temp_names``, see files/tempdirs.py) are removed first; a damaged ``out``
    (``damage``) is rebuilt with a notice. An OSError is one line naming the ``what`` cache's
    folder; Ctrl-C is the DataInterrupted ``interrupted`` where given (the partly built copy is
    removed either way).
    """
    tempdirs.remove_stale(out.parent, temp_names)
    problem = damage(out) if out.exists() else "missing"
    if problem is None:
        return
    if out.exists():
        print(f"Note: {problem}; rebuilding it", flush=True)
    tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
    try:
        with atomic.folder(out, tmp, damage):
            decode(tmp)
    except OSError as e:
        raise DataError(f"cannot build the {what} cache in {out.parent}: {one_line(e)}{disk_full_hint(e)}") from None
    except KeyboardInterrupt:
        if interrupted is None:
            raise
        raise DataInterrupted(interrupted) from None
