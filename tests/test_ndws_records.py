"""Next Day Wildfire Spread (issue 20): files written with the ``tfrecord`` package's own writer
under the published names and feature names, read by data=ndws: the split is the file name's,
values and normalisation are the published rules, and every bad input stops the run with one
line naming the file and the record (exit 2), leaving finished caches as they were."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from tfrecord.writer import TFRecordWriter

from conftest import one_line_error, run_app
from emberformer.data.ndws import records
from emberformer.data.ndws.datamodule import NDWSDataModule
from emberformer.data.ndws.preprocess import CHANNEL_NAMES, FIRE_CHANNEL
from emberformer.data.reader import DataError

COVARIATES = ("elevation", "th", "vs", "tmmn", "tmmx", "sph", "pr", "pdsi", "NDVI", "population", "erc")
PUBLISHED = (*COVARIATES, "PrevFireMask", "FireMask")
# the app's options for a quick run on these files (a tiny model, CPU, no logger, one epoch)
QUICK = ["experiment=ndws", "logger=none", "hardware=cpu", "hardware.batch_size=4", "trainer.epochs=1",
         "trainer.progress=false", "data.progress=false", "trainer.preview_samples=0"]
SIZES = {"train_00": 3, "train_01": 2, "eval_00": 2, "test_00": 2, "test_01": 1}


def record(seed: int) -> dict[str, np.ndarray]:
    """One record's features [64, 64]: covariates of distinct scales, sparse fire, some -1 pixels."""
    rng = np.random.default_rng(seed)
    rec = {name: (rng.normal(10.0 * (i + 1), 1.0 + i, (64, 64))).astype(np.float32)
           for i, name in enumerate(COVARIATES)}
    rec["th"] = rng.uniform(0, 360, (64, 64)).astype(np.float32)
    prev = (rng.random((64, 64)) < 0.05).astype(np.float32)
    fire = np.where(rng.random((64, 64)) < 0.5, prev, (rng.random((64, 64)) < 0.05)).astype(np.float32)
    fire[rng.random((64, 64)) < 0.1] = -1.0
    prev[rng.random((64, 64)) < 0.02] = -1.0
    rec["PrevFireMask"], rec["FireMask"] = prev, fire
    return rec


def write_file(path: Path, recs: list[dict[str, np.ndarray]]) -> Path:
    """The records with the tfrecord package's writer (float lists, as tf.train.Example holds them)."""
    w = TFRecordWriter(str(path))
    for rec in recs:
        w.write({k: (np.asarray(v).ravel().tolist(), "float") for k, v in rec.items()})
    w.close()
    return path


def write_root(root: Path, sizes: dict[str, int] = SIZES) -> dict[str, list[dict[str, np.ndarray]]]:
    """A root of the published file names, ``sizes`` records each; returns each file's records."""
    root.mkdir(parents=True, exist_ok=True)
    out, seed = {}, 0
    for part, n in sizes.items():
        recs = [record(seed + j) for j in range(n)]
        seed += n
        write_file(root / f"next_day_wildfire_spread_{part}.tfrecord", recs)
        out[part] = recs
    (root / "README.txt").write_text("not data")
    return out


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> tuple[Path, dict]:
    r = tmp_path_factory.mktemp("ndws") / "files"
    return r, write_root(r)


def module(root: Path, cache: Path, **kw) -> NDWSDataModule:
    m = NDWSDataModule(root=str(root), cache_dir=str(cache), batch_size=4, progress=False, **kw)
    m.setup()
    return m


def test_the_split_is_the_file_name(root, tmp_path):
    r, recs = root
    m = module(r, tmp_path)
    assert {s: len(m.datasets[s]) for s in ("train", "val", "test")} == {"train": 5, "val": 2, "test": 3}
    assert m.split["test"] == {"files": ["next_day_wildfire_spread_test_00.tfrecord",
                                         "next_day_wildfire_spread_test_01.tfrecord"], "records": [2, 1]}
    # sample i of a split is record i of its files in name order: the raw values, unchanged
    x, y = m.datasets["test"].record(2)
    want = recs["test_01"][0]
    assert np.array_equal(y, want["FireMask"].astype(np.int8))
    assert np.array_equal(x[records.INPUTS.index("pdsi")], want["pdsi"])
    assert m.static_channels == 12 and m.day_channels == 0 and len(CHANNEL_NAMES) == 13


def test_normalisation_is_the_training_files_and_the_angle_is_sin_cos(root, tmp_path):
    r, recs = root
    m = module(r, tmp_path)
    train = [rec for part in ("train_00", "train_01") for rec in recs[part]]
    norm = m.datasets["train"].norm
    vs = np.stack([rec["vs"] for rec in train]).astype(np.float64)
    lo, hi = np.percentile(vs, (0.1, 99.9))
    clipped = np.clip(vs, lo, hi)
    c = records.INPUTS.index("vs")
    assert norm.low[c] == pytest.approx(lo, rel=1e-5) and norm.high[c] == pytest.approx(hi, rel=1e-5)
    assert norm.mean[c] == pytest.approx(clipped.mean(), rel=1e-5)
    assert norm.std[c] == pytest.approx(clipped.std(), rel=1e-4)
    s = m.datasets["val"][0]   # validation: whole image, no augmentation
    raw = recs["eval_00"][0]
    x = s["x"][0].numpy()
    assert x.shape == (13, 64, 64)
    assert np.allclose(x[1], np.sin(np.deg2rad(raw["th"])), atol=1e-6)
    assert np.allclose(x[2], np.cos(np.deg2rad(raw["th"])), atol=1e-6)
    assert np.allclose(x[CHANNEL_NAMES.index("vs")], (np.clip(raw["vs"], lo, hi) - norm.mean[c]) / norm.std[c], atol=1e-4)
    assert np.array_equal(x[FIRE_CHANNEL], raw["PrevFireMask"] > 0)
    assert torch.equal(s["target"][0], torch.from_numpy(raw["FireMask"] == 1).float())
    assert torch.equal(s["target_valid"][0], torch.from_numpy(raw["FireMask"] != -1))


def test_augmentation_is_off_by_default_and_crops_flips_with_the_angle_corrected(root, tmp_path):
    r, recs = root
    plain = module(r, tmp_path).datasets["train"]
    assert torch.equal(plain[0]["x"], plain[len(plain)]["x"])  # epoch 1 = epoch 0: no augmentation
    aug = module(r, tmp_path, augment={"crop_size": 32, "flip_rotate": True}).datasets["train"]
    seen = [aug[e * len(aug)] for e in range(6)]
    assert all(s["x"].shape == (1, 13, 32, 32) for s in seen)
    assert len({s["x"].numpy().tobytes() for s in seen}) > 1
    # the wind direction follows the pixels: find the flips and turn that moved the elevation,
    # then the same moves of the raw angles, mapped as geometry says (a left-right mirror
    # a -> 360 - a, top-bottom a -> 180 - a, a quarter turn counter-clockwise a -> a - 90)
    turned = module(r, tmp_path, augment={"flip_rotate": True}).datasets["train"]
    raw = recs["train_00"][0]
    still = plain[0]["x"][0, 0].numpy()   # the standardised elevation, unmoved
    matched = 0
    for e in range(8):
        x = turned[e * len(turned)]["x"][0].numpy()
        elev = x[0]
        for h in (False, True):
            for v in (False, True):
                for k in range(4):
                    el, th = still, raw["th"].astype(np.float64)
                    if h:
                        el, th = el[:, ::-1], (360 - th[:, ::-1])
                    if v:
                        el, th = el[::-1], (180 - th[::-1])
                    el, th = np.rot90(el, k), np.rot90(th, k) - 90 * k
                    if np.array_equal(el, elev):
                        matched += 1
                        assert np.allclose(x[1], np.sin(np.deg2rad(th)), atol=1e-5)
                        assert np.allclose(x[2], np.cos(np.deg2rad(th)), atol=1e-5)
    assert matched >= 8
    with pytest.raises(ValueError, match="data.augment.crop_size"):
        NDWSDataModule(root=str(r), augment={"crop_size": 100})
    with pytest.raises(ValueError, match="data.augment.flips"):
        NDWSDataModule(root=str(r), augment={"flips": True})


def test_the_cache_is_built_once_and_a_bad_root_leaves_it(root, tmp_path):
    r, _ = root
    m = module(r, tmp_path)
    folder = m.datasets["train"].index.path
    stamp = (folder / "index.json").stat().st_mtime_ns
    module(r, tmp_path)
    assert (folder / "index.json").stat().st_mtime_ns == stamp
    bad = tmp_path / "bad"
    write_root(bad, {"train_00": 2, "eval_00": 1})
    p = bad / "next_day_wildfire_spread_train_00.tfrecord"
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(DataError):
        module(bad, tmp_path)
    assert (folder / "index.json").stat().st_mtime_ns == stamp
    assert sorted(q.name for q in tmp_path.iterdir() if q.name.startswith("ndws-")) == [folder.name]


def _corrupt_crc(path: Path) -> None:
    data = bytearray(path.read_bytes())
    (length,) = struct.unpack("<Q", data[:8])
    second = 16 + length                       # record 1 starts here
    data[second + 12 + 100] ^= 0xFF            # one byte inside record 1's data
    path.write_bytes(bytes(data))


def _missing_feature(path: Path) -> None:
    recs = [record(0), record(1)]
    del recs[1]["erc"]
    write_file(path, recs)


def _wrong_length(path: Path) -> None:
    recs = [record(0), record(1)]
    recs[0]["NDVI"] = recs[0]["NDVI"][:32]
    write_file(path, recs)


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-50])


BAD = {
    "corrupt CRC": (_corrupt_crc, "record 1 is corrupt (its data do not match their CRC)"),
    "missing feature": (_missing_feature, "record 1 has no feature 'erc'"),
    "wrong length": (_wrong_length, "record 0: feature 'NDVI' has 2048 float values, not 64 x 64 = 4096"),
    "truncated": (_truncated, "record 1 is truncated"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_records_name_the_file_and_record_and_exit_2(case, tmp_path):
    root = tmp_path / "files"
    write_root(root, {"train_00": 2, "train_01": 2, "eval_00": 1})
    spoil, message = BAD[case]
    bad = root / "next_day_wildfire_spread_train_01.tfrecord"
    spoil(bad)
    proc = run_app("train", [*QUICK, f"data.root={root}", f"data.cache_dir={tmp_path / 'c'}",
                             f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    line = one_line_error(proc)
    assert str(bad) in line and message in line, line
    assert not (tmp_path / "run" / "checkpoints").exists() or not any((tmp_path / "run" / "checkpoints").iterdir())


def test_a_folder_with_no_train_files(tmp_path):
    root = tmp_path / "files"
    write_root(root, {"eval_00": 1, "test_00": 1})
    proc = run_app("train", [*QUICK, f"data.root={root}", f"data.cache_dir={tmp_path / 'c'}",
                             f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    line = one_line_error(proc)
    assert f"data.root {root} has no train files" in line and "train_00" in line
    proc = run_app("train", [*QUICK, f"data.root={tmp_path / 'nowhere'}",
                             f"hydra.run.dir={tmp_path / 'run2'}"], tmp_path)
    assert "does not exist" in one_line_error(proc)
