"""The published Next Day Wildfire Spread files, read record by record without TensorFlow.

Layout (the split is the file name's)::

    ROOT/next_day_wildfire_spread_{train_00..train_14, eval_00, eval_01, test_00, test_01}.tfrecord

Each record is a ``tf.train.Example`` of 64 x 64 float32 lists: the 11 covariates, ``PrevFireMask``
and the target ``FireMask`` (1 fire, 0 none, -1 uncertain). The protobuf schema and the CRC are the
``tfrecord`` package's (``example_pb2``, ``TFRecordWriter.masked_crc``); the framing is read here
because the package's iterator skips both CRCs, and a corrupt record must be named, not parsed.
"""
from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np
from tfrecord import example_pb2
from tfrecord.writer import TFRecordWriter

from emberformer.data.reader import DataError

SIZE = 64
#: the covariates in the published order, then the fire of the day before
COVARIATES = ("elevation", "th", "vs", "tmmn", "tmmx", "sph", "pr", "pdsi", "NDVI", "population", "erc")
INPUTS = (*COVARIATES, "PrevFireMask")
TARGET = "FireMask"
FEATURES = (*INPUTS, TARGET)
PREFIX = "next_day_wildfire_spread_"
#: the published files of each split (the project's split names: train, val, test)
SPLIT_FILES = {"train": tuple(f"train_{i:02d}" for i in range(15)),
               "val": ("eval_00", "eval_01"), "test": ("test_00", "test_01")}
FILE_NAME = re.compile(rf"{PREFIX}(train|eval|test)_(\d+)\.tfrecord$")
SPLIT_OF = {"train": "train", "eval": "val", "test": "test"}
EXPECTED = (f"expected files {PREFIX}train_00.tfrecord .. train_14, eval_00, eval_01, test_00, test_01 "
            "(.tfrecord) directly in it")


def file_name(part: str) -> str:
    """``train_03`` -> ``next_day_wildfire_spread_train_03.tfrecord``."""
    return f"{PREFIX}{part}.tfrecord"


def list_files(root: Path) -> dict[str, list[Path]]:
    """Each split's files under ``root`` by their names, sorted; DataError (one line) when the
    folder is missing or has no train files. Other names are not data and are left alone."""
    if not root.is_dir():
        raise DataError(f"data.root {root} does not exist; {EXPECTED}")
    out: dict[str, list[Path]] = {s: [] for s in SPLIT_FILES}
    for p in sorted(root.iterdir()):
        m = FILE_NAME.fullmatch(p.name)
        if m and p.is_file():
            out[SPLIT_OF[m.group(1)]].append(p)
    for split in ("train", "val"):
        if not out[split]:
            kind = "train" if split == "train" else "eval"
            raise DataError(f"data.root {root} has no {kind} files ({PREFIX}{kind}_NN.tfrecord); {EXPECTED}")
    return out


def _read_exact(f: BinaryIO, n: int, path: Path, record: int, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise DataError(f"{path}: record {record} is truncated (the file ends inside its {what}; "
                        "a partly copied file? copy it again)")
    return data


def raw_records(path: Path) -> Iterator[bytes]:
    """Each record's bytes, both CRCs checked (TFRecord framing: length, its CRC, data, its CRC)."""
    with open(path, "rb") as f:
        record = 0
        while True:
            head = f.read(8)
            if not head:
                return
            if len(head) != 8:
                _read_exact(f, 1, path, record, "length")  # raises: fewer than 8 bytes were left
            length_crc = _read_exact(f, 4, path, record, "length CRC")
            if TFRecordWriter.masked_crc(head) != length_crc:
                raise DataError(f"{path}: record {record} is corrupt (its length does not match its CRC)")
            (length,) = struct.unpack("<Q", head)
            data = _read_exact(f, length, path, record, "data")
            if TFRecordWriter.masked_crc(data) != _read_exact(f, 4, path, record, "data CRC"):
                raise DataError(f"{path}: record {record} is corrupt (its data do not match their CRC)")
            yield data
            record += 1


def parse(data: bytes, path: Path, record: int) -> dict[str, np.ndarray]:
    """One record -> {feature: float32 [64, 64]} of :data:`FEATURES`; DataError names the file, the
    record and the missing or misshapen feature."""
    example = example_pb2.Example()
    try:
        example.ParseFromString(data)
    except Exception as e:  # protobuf's DecodeError
        raise DataError(f"{path}: record {record} is not a tf.train.Example ({type(e).__name__})") from None
    features = example.features.feature
    out = {}
    for name in FEATURES:
        if name not in features:
            raise DataError(f"{path}: record {record} has no feature {name!r} (each record needs "
                            f"{', '.join(FEATURES)})")
        values = features[name].float_list.value
        if len(values) != SIZE * SIZE:
            raise DataError(f"{path}: record {record}: feature {name!r} has {len(values)} float values, "
                            f"not {SIZE} x {SIZE} = {SIZE * SIZE}")
        out[name] = np.asarray(values, dtype=np.float32).reshape(SIZE, SIZE)
    return out


def read_file(path: Path) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Each record of ``path`` as (inputs float32 [12, 64, 64] in :data:`INPUTS` order, target
    float32 [64, 64] with -1 where uncertain)."""
    for k, data in enumerate(raw_records(path)):
        rec = parse(data, path, k)
        yield np.stack([rec[n] for n in INPUTS]), rec[TARGET]


def record_offsets(path: Path) -> list[int]:
    """The byte offset of every record (what a per-access reader seeks to)."""
    offsets, pos = [], 0
    with open(path, "rb") as f:
        while True:
            head = f.read(8)
            if len(head) < 8:
                return offsets
            offsets.append(pos)
            (length,) = struct.unpack("<Q", head)
            pos += 16 + length
            f.seek(pos)


def read_at(path: Path, offset: int, record: int) -> tuple[np.ndarray, np.ndarray]:
    """The record at ``offset`` of ``path``, read and parsed (CRCs checked) on its own."""
    with open(path, "rb") as f:
        f.seek(offset)
        head = _read_exact(f, 12, path, record, "length")[:8]
        (length,) = struct.unpack("<Q", head)
        data = _read_exact(f, length + 4, path, record, "data")
    if TFRecordWriter.masked_crc(data[:-4]) != data[-4:]:
        raise DataError(f"{path}: record {record} is corrupt (its data do not match their CRC)")
    rec = parse(data[:-4], path, record)
    return np.stack([rec[n] for n in INPUTS]), rec[TARGET]
