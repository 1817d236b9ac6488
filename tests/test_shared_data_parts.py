"""The parts data=wsts and data=ndws share (data/cache_folder.py, data/builtin_set.py,
data/integer_setting.py), on real folders, files and locks: the messages every data set gives."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from emberformer.data import builtin_set, cache_folder, integer_setting
from emberformer.data.reader import DataError, DataInterrupted
from emberformer.files import atomic

TEMP = r"thing-[0-9a-f]+\.tmp(?P<pid>\d+)|\.thing-[0-9a-f]+\.old(?P<pid2>\d+)-[0-9a-f]+"
SET_TEMP = r"\.set-[0-9a-f]+\.(?P<pid>\d+)-[0-9a-f]+\.tmp|\.set-[0-9a-f]+\.old(?P<pid2>\d+)-[0-9a-f]+"


def _decode(tmp: Path) -> None:
    (tmp / "a.npy").write_bytes(b"12345")
    cache_folder.write_index(tmp, {"version": 2, "root": "/r", "files": {"a.npy": 5}})


def _read(folder: Path) -> str:
    return cache_folder.read_index(folder, "Thing", 2, "files", lambda body: body["root"])


def test_a_cache_folder_is_built_once_checked_and_rebuilt_when_damaged(tmp_path, capsys):
    out = tmp_path / "thing-0a"
    damage = atomic.problem_of(_read, DataError)
    calls = []
    cache_folder.build(out, TEMP, damage, lambda tmp: (calls.append(tmp), _decode(tmp)), "Thing")
    assert _read(out) == "/r" and len(calls) == 1
    cache_folder.build(out, TEMP, damage, lambda tmp: (calls.append(tmp), _decode(tmp)), "Thing")
    assert len(calls) == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["thing-0a"]

    (out / "a.npy").write_bytes(b"1")
    with pytest.raises(DataError, match=rf"^Thing cache {out} is damaged: a\.npy is 1 bytes, 5 when it was written$"):
        _read(out)
    cache_folder.build(out, TEMP, damage, _decode, "Thing")
    assert capsys.readouterr().out == (f"Note: Thing cache {out} is damaged: a.npy is 1 bytes, 5 when it was "
                                       "written; rebuilding it\n")
    assert _read(out) == "/r"

    index = json.loads((out / "index.json").read_text())
    (out / "index.json").write_text(json.dumps({**index, "version": 3}))
    with pytest.raises(DataError, match=r"is damaged: index\.json does not match its checksum or version$"):
        _read(out)
    (out / "index.json").write_text("{")
    with pytest.raises(DataError, match=r"is damaged: cannot read index\.json \(Expecting property name"):
        _read(out)


def test_a_failed_or_interrupted_build_leaves_nothing_and_says_so_in_one_line(tmp_path):
    out = tmp_path / "thing-0b"
    damage = atomic.problem_of(_read, DataError)

    def interrupted(tmp: Path) -> None:
        (tmp / "a.npy").write_bytes(b"1")
        raise KeyboardInterrupt

    with pytest.raises(DataInterrupted, match="^Interrupted: nothing was harmed$"):
        cache_folder.build(out, TEMP, damage, interrupted, "Thing", interrupted="Interrupted: nothing was harmed")
    with pytest.raises(KeyboardInterrupt):
        cache_folder.build(out, TEMP, damage, interrupted, "Thing")
    assert list(tmp_path.iterdir()) == []
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(DataError, match=rf"^cannot build the Thing cache in {blocker}: \[Errno 20\] Not a directory"):
        cache_folder.build(blocker / "thing-0c", TEMP, damage, _decode, "Thing")


def _write(tmp: Path) -> None:
    (tmp / "sub").mkdir()
    (tmp / "sub" / "b.bin").write_bytes(b"abc")
    (tmp / "a.bin").write_bytes(b"a")


def test_a_builtin_set_is_written_once_listed_and_written_again_when_damaged(tmp_path, capsys):
    calls = []
    write = lambda tmp: (calls.append(tmp), _write(tmp))  # noqa: E731
    final = builtin_set.write_once(tmp_path, "set-1", "the built-in test set", SET_TEMP, write, {"v": 1, "key": "1"})
    assert final == tmp_path / "set-1" and len(calls) == 1
    assert json.loads((final / "settings.json").read_text()) == {"v": 1, "key": "1",
                                                                 "files": {"a.bin": 1, "sub/b.bin": 3}}
    assert builtin_set.write_once(tmp_path, "set-1", "the built-in test set", SET_TEMP, write, {}) == final
    assert len(calls) == 1
    (final / "sub" / "b.bin").write_bytes(b"")
    builtin_set.write_once(tmp_path, "set-1", "the built-in test set", SET_TEMP, write, {"v": 1, "key": "1"})
    assert len(calls) == 2 and (final / "sub" / "b.bin").read_bytes() == b"abc"
    assert capsys.readouterr().out == (f"Note: the built-in test set {final} is damaged (sub/b.bin is 0 bytes, 3 "
                                       "when it was written); writing it again\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".set-1.lock", "set-1"]


def test_a_builtin_set_that_cannot_be_written_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(DataError, match=rf"^cannot write the built-in test set in {blocker}: \[Errno 17\] File exists"):
        builtin_set.write_once(blocker, "set-1", "the built-in test set", SET_TEMP, _write, {})
    lock = tmp_path / ".set-2.lock"
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a'); "
                               "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(30)", str(lock)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(DataError, match=rf"^the built-in test set in {tmp_path} is being written by .+ for more "
                                            r"than 0 s; wait for it or set data\.cache_dir to another folder$"):
            builtin_set.write_once(tmp_path, "set-2", "the built-in test set", SET_TEMP, _write, {}, lock_wait_s=0.2)
    finally:
        holder.kill()
        holder.wait()
    assert not (tmp_path / "set-2").exists()


def test_root_resolution_passes_a_root_and_writes_the_builtin_set(tmp_path, capsys):
    class Settings:
        def as_dict(self) -> dict:
            return {"n": 1}

    def ensure(cache_dir, settings, progress):
        assert (cache_dir, settings, progress) == (str(tmp_path), {"n": 1}, False)
        return tmp_path / "set"

    def interrupted(cache_dir, settings, progress):
        raise KeyboardInterrupt

    assert builtin_set.resolve_root(tmp_path / "r", None, ensure, str, "the set", str(tmp_path), False) == tmp_path / "r"
    assert capsys.readouterr().out == ""
    assert builtin_set.resolve_root(None, Settings(), ensure, lambda r: f"Data: {r}", "the set", str(tmp_path),
                                    False) == tmp_path / "set"
    assert capsys.readouterr().out == f"Data: {tmp_path / 'set'}\n"
    with pytest.raises(DataInterrupted, match=rf"^Interrupted while writing the set; nothing was harmed: the partly "
                                              rf"written copy was removed, the finished data sets in {tmp_path} are"):
        builtin_set.resolve_root(None, Settings(), interrupted, str, "the set", str(tmp_path), False)


@pytest.mark.parametrize("value, minimum, message", [
    ("3", None, "data.x must be an integer, got '3'"), (True, None, "data.x must be an integer, got True"),
    (2.0, 1, "data.x must be an integer, got 2.0"), (0, 1, "data.x must be >= 1, got 0")])
def test_an_integer_setting_names_its_key(value, minimum, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        integer_setting.checked("data.x", value, minimum)


def test_an_integer_setting_is_a_python_int():
    value = integer_setting.checked("data.x", np.int64(5), 1)
    assert value == 5 and type(value) is int
    assert integer_setting.checked("data.x", -3) == -3
