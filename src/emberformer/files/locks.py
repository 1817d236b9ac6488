"""Locks that a killed process does not leave behind: ``fcntl.flock`` on a lock file.

The lock is the kernel's, held by an open file: when its process ends, however it ends (SIGKILL,
a crash, power loss on a local disk), the kernel releases it, so a stale lock file never blocks
anyone. The file only carries who holds the lock (pid, host, since when) for the message of a
process that was refused, and is emptied when the lock is given back (so a command that took and
gave back a free lock leaves the file's bytes as they were); it is never deleted (deleting a lock
file races with a process that has just opened it).

A lock is held per process: taking a lock this process already holds is granted at once (and
counted), so a run folder locked at start-up can be locked again where the run's files are chosen.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator


class Locked(RuntimeError):
    """The lock is held by another live process; ``owner`` says which (pid, host, since)."""

    def __init__(self, path: Path, owner: str):
        super().__init__(f"{path} is locked by {owner}")
        self.path, self.owner = path, owner


@dataclass
class _Held:
    fd: int
    count: int


_HELD: dict[Path, _Held] = {}


def owner_text(path: Path) -> str:
    """Who holds the lock at ``path``, as its holder wrote it ('another process' when unknown)."""
    try:
        text = Path(path).read_text().strip()
    except OSError:
        text = ""
    return text.splitlines()[0] if text else "another process"


def acquire(path: Path, timeout: float = 0.0) -> None:
    """Take the lock at ``path`` (its folder must exist), waiting at most ``timeout`` seconds;
    raises Locked naming the owner. A lock this process already holds is granted again."""
    path = Path(path).absolute()
    if path in _HELD:
        _HELD[path].count += 1
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not truncated: the owner's text stays
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise Locked(path, owner_text(path)) from None
            time.sleep(0.05)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {stamp}\n".encode(), 0)
    _HELD[path] = _Held(fd, 1)


def release(path: Path) -> None:
    """Give back one hold of the lock at ``path``; the last one unlocks it."""
    path = Path(path).absolute()
    held = _HELD.get(path)
    if held is None:
        return
    held.count -= 1
    if held.count == 0:
        del _HELD[path]
        os.ftruncate(held.fd, 0)  # free again: no owner named (a killed owner's text is overwritten)
        fcntl.flock(held.fd, fcntl.LOCK_UN)
        os.close(held.fd)


@contextlib.contextmanager
def hold(path: Path, timeout: float = 0.0) -> Iterator[None]:
    """``with hold(path):`` the lock for the block (see ``acquire``)."""
    acquire(path, timeout)
    try:
        yield
    finally:
        release(path)


def is_held(path: Path) -> bool:
    """Whether this process holds the lock at ``path``."""
    return Path(path).absolute() in _HELD
