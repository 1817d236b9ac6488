"""Next Day Wildfire Spread decoded once: each split as two memory-mapped arrays.

``{split}_x.npy`` float32 [N, 12, 64, 64] (the raw inputs, :data:`records.INPUTS` order) and
``{split}_y.npy`` int8 [N, 64, 64] (``FireMask``: 1, 0, -1 uncertain), so a training sample is a
slice of a memory map, never a protobuf parse. ``index.json`` records each split's files and
record counts, the training files' normalisation (:mod:`preprocess`), every array's size and a
checksum of its own contents; the folder is keyed by the source files' names, sizes and
modification times, built aside and published whole (files/atomic.py), and a damaged one is found
by one ``stat`` per file and rebuilt with a notice.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from emberformer.data import cache_folder
from emberformer.data.ndws import records
from emberformer.data.ndws.preprocess import Normalisation, fit
from emberformer.data.reader import DataError
from emberformer.files import atomic

VERSION = 1
TEMP_NAMES = r"ndws-[0-9a-f]+\.tmp(?P<pid>\d+)|\.ndws-[0-9a-f]+\.old(?P<pid2>\d+)-[0-9a-f]+"


@dataclass(frozen=True)
class NDWSIndex:
    """What a cache's ``index.json`` says, checked against its files (see :func:`read_index`)."""

    path: Path
    root: Path
    files: dict[str, tuple[tuple[str, int], ...]]   # split -> ((file name, records), ...)
    norm: Normalisation

    def samples(self, split: str) -> int:
        return sum(n for _, n in self.files[split])

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """The split's inputs [N, 12, 64, 64] and targets [N, 64, 64], memory-mapped read-only."""
        return (np.load(self.path / f"{split}_x.npy", mmap_mode="r"),
                np.load(self.path / f"{split}_y.npy", mmap_mode="r"))

    def source(self, split: str, i: int) -> tuple[str, int]:
        """(file name, record number) of sample i of the split."""
        for name, n in self.files[split]:
            if i < n:
                return name, i
            i -= n
        raise IndexError(i)


def read_index(folder: str | Path) -> NDWSIndex:
    """The index of the cache in ``folder``; DataError (one line) names the folder and the damage."""
    folder = Path(folder)

    def parse(body: dict) -> NDWSIndex:
        return NDWSIndex(path=folder, root=Path(body["root"]),
                         files={s: tuple((str(n), int(c)) for n, c in v) for s, v in body["splits"].items()},
                         norm=Normalisation.from_json(body["normalisation"]))
    return cache_folder.read_index(folder, "Next Day Wildfire Spread", VERSION, "sizes", parse)


#: what is wrong with a finished cache folder (None: nothing), as read_index finds it
damage = atomic.problem_of(read_index, DataError)


def _fingerprint(root: Path, files: dict[str, list[Path]]) -> str:
    h = hashlib.sha1(f"ndws v{VERSION}|{root.resolve()}".encode())
    for split, paths in files.items():
        for p in paths:
            st = p.stat()
            h.update(f"{split}|{p.name}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def build_cache(root: str | Path, cache_dir: str | Path, progress: bool = True) -> Path:
    """Decode every file under ``root`` once (reused while unchanged); return the cache folder.

    A bad record stops the build with one line naming its file and number; the partly built
    folder is removed and finished caches are left as they were.
    """
    root = Path(root).expanduser()
    files = records.list_files(root)
    out = Path(cache_dir).expanduser() / f"ndws-{_fingerprint(root, files)}"
    cache_folder.build(
        out, TEMP_NAMES, damage, lambda tmp: _decode_into(tmp, root, files, progress), "Next Day Wildfire Spread",
        interrupted=f"Interrupted while decoding {root} into the cache; nothing was harmed: the partly built "
                    f"cache was removed, {root} and the finished caches in {out.parent} are as they were (the "
                    "next run decodes it again)")
    read_index(out)
    return out


def _write_split(tmp: Path, split: str, paths: list[Path], bar: tqdm) -> list[tuple[str, int]]:
    """Stream the split's records into its two .npy files (one record in memory at a time)."""
    counts = [(p, len(records.record_offsets(p))) for p in paths]
    n = sum(c for _, c in counts)
    headers = {"x": ((n, len(records.INPUTS), records.SIZE, records.SIZE), "<f4"),
               "y": ((n, records.SIZE, records.SIZE), "|i1")}
    outs = {k: open(tmp / f"{split}_{k}.npy", "wb") for k in headers}
    try:
        for k, (shape, descr) in headers.items():
            np.lib.format.write_array_header_1_0(outs[k], {"descr": descr, "fortran_order": False, "shape": shape})
        for path, expected in counts:
            got = 0
            for x, y in records.read_file(path):
                outs["x"].write(np.ascontiguousarray(x, "<f4").tobytes())
                outs["y"].write(np.rint(y).clip(-1, 1).astype(np.int8).tobytes())
                got += 1
            if got != expected:  # changed while it was read
                raise DataError(f"{path}: {got} records read, {expected} counted before (changed while read?)")
            bar.update(1)
    finally:
        for f in outs.values():
            f.close()
    return [(p.name, c) for p, c in counts]


def _decode_into(tmp: Path, root: Path, files: dict[str, list[Path]], progress: bool) -> None:
    with tqdm(total=sum(map(len, files.values())), desc="Decoding Next Day Wildfire Spread",
              disable=not progress, unit="file") as bar:
        splits = {s: _write_split(tmp, s, paths, bar) for s, paths in files.items()}
    if sum(c for _, c in splits["train"]) == 0:
        raise DataError(f"data.root {root}: the train files hold no records")
    norm = fit(np.load(tmp / "train_x.npy", mmap_mode="r"))
    body = {"version": VERSION, "root": str(root), "splits": {s: [list(e) for e in v] for s, v in splits.items()},
            "normalisation": norm.to_json(),
            "sizes": {p.name: p.stat().st_size for p in sorted(tmp.glob("*.npy"))}}
    cache_folder.write_index(tmp, body)
