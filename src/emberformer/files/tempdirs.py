"""Temporary build folders (the decoded-frame cache's, the built-in data set's): removal that
readers never see half done, and the clean-up of folders left by a build that was killed (SIGKILL,
power loss) before it could remove its own.
"""
from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from pathlib import Path

STALE_AFTER_S = 3600.0  # a live build touches its folder at least once per sequence


def discard(folder: Path) -> None:
    """Remove a folder atomically for readers: rename it aside first, then delete it."""
    aside = folder.with_name(f".{folder.name}.old{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        os.replace(folder, aside)
    except FileNotFoundError:
        return
    shutil.rmtree(aside, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process, or not a pid: leave the folder alone
    return True


def _last_touched(folder: Path) -> float:
    """Newest modification time of the folder and the folders directly in it."""
    times = [folder.stat().st_mtime]
    for p in folder.iterdir():
        if p.is_dir():
            times.append(p.stat().st_mtime)
    return max(times)


def remove_stale(parent: Path, pattern: str) -> list[Path]:
    """Remove the temporary folders in parent whose names match ``pattern`` (a regex whose first
    non-empty group is the pid) when that process is gone on this machine and the folder was not
    touched for an hour. Prints one notice per folder removed; returns them."""
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    rx = re.compile(pattern)
    for p in parent.iterdir():
        m = rx.fullmatch(p.name)
        if not m or not p.is_dir():
            continue
        pid = int(next(g for g in m.groups() if g))
        if pid == os.getpid() or _alive(pid):
            continue
        try:
            if time.time() - _last_touched(p) < STALE_AFTER_S:
                continue
        except OSError:
            continue
        shutil.rmtree(p, ignore_errors=True)
        if not p.exists():
            print(f"Note: removed {p}, left by an interrupted build", flush=True)
            removed.append(p)
    return removed
