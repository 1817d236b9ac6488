"""WildfireSpreadTS read as published (issue 19): both layouts written here directly with tifffile
and h5py (never with the project's code), then the reader's folds, sample counts, targets,
preprocessing, crops, cache and one-line errors checked against values computed by hand."""
from __future__ import annotations

import itertools
import math
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import torch
from hydra.utils import instantiate

from conftest import compose_config
from emberformer.cli.errors import user_errors
from emberformer.data.reader import DataError
from emberformer.data.wsts import folds
from emberformer.data.wsts.datamodule import WSTSDataModule
from emberformer.data.wsts.on_device import finish
from emberformer.data.wsts.samples import angle_map, best_crop, corrected_angles, crop_first, flip_and_rotate, published_order

YEARS = (2018, 2019, 2020, 2021)
# (name, days, height, width, TIF storage): the second fire's images are another size
FIRES = (("fire_a", 4, 40, 36, "separate"), ("fire_b", 6, 33, 45, "contig"))
START = {2018: 1, 2019: 3, 2020: 5, 2021: 7}  # day of month of each year's first image


def make_fire(year: int, k: int, days: int, h: int, w: int) -> np.ndarray:
    """Raw 23-band days [T, 23, H, W] float32 as the published GeoTIFFs hold them."""
    rng = np.random.default_rng(year * 10 + k)
    a = rng.normal(0, 1, (days, 23, h, w)).astype(np.float32)
    a[:, 0] = 2000 + 300 * a[:, 0] + 100 * (year - 2018)  # VIIRS M11: differs from year to year
    a[:, 14] = 1500 + 200 * a[:, 14] + 50 * k             # elevation
    for b in (7, 13, 19):
        a[:, b] = rng.uniform(0, 360, (days, h, w))     # degrees
    a[:, 16] = rng.integers(1, 18, (days, h, w))         # land cover class 1-17
    a[:, 3][a[:, 3] > 1.5] = np.nan                      # NDVI: some missing
    a[:, 16, 10, 10] = np.nan                            # a missing land cover cell
    af = np.full((days, h, w), np.nan, np.float32)
    for t in range(days):                                # a blob of detections that moves east
        af[t, 10:16, 5 + 3 * t:11 + 3 * t] = rng.choice([130.0, 1342.0, 2359.0, 45.0], (6, 6))
    a[:, 22] = af
    return a


def all_fires() -> dict[tuple[int, str], np.ndarray]:
    return {(y, name): make_fire(y, k, d, h, w)
            for y in YEARS for k, (name, d, h, w, _) in enumerate(FIRES)}


def dates(year: int, n: int) -> list[str]:
    return [f"{year}-08-{START[year] + i:02d}" for i in range(n)]


def write_tif_root(root: Path) -> Path:
    for (y, name), arr in all_fires().items():
        folder = root / str(y) / name
        folder.mkdir(parents=True)
        planar = {n: p for n, _, _, _, p in FIRES}[name]
        for d, day in zip(dates(y, len(arr)), arr):
            if planar == "separate":
                tifffile.imwrite(folder / f"{d}.tif", day, photometric="minisblack", planarconfig="separate")
            else:  # pixel-interleaved, as GDAL writes by default
                tifffile.imwrite(folder / f"{d}.tif", np.moveaxis(day, 0, -1), photometric="minisblack",
                                 planarconfig="contig")
    return root


def write_hdf5_root(root: Path) -> Path:
    """What the published converter writes: active fire NaN -> 0 and hhmm // 100, attributes."""
    for (y, name), arr in all_fires().items():
        (root / str(y)).mkdir(parents=True, exist_ok=True)
        x = arr.copy()
        x[:, -1] = np.floor_divide(np.nan_to_num(x[:, -1], nan=0), 100)
        with h5py.File(root / str(y) / f"{name}.hdf5", "w") as f:
            dset = f.create_dataset("data", x.shape, data=x)
            dset.attrs["year"] = y
            dset.attrs["fire_name"] = name
            dset.attrs["img_dates"] = dates(y, len(arr))
            dset.attrs["lnglat"] = (-120.5, 38.25)
    return root


@pytest.fixture(scope="module")
def tif_root(tmp_path_factory) -> Path:
    return write_tif_root(tmp_path_factory.mktemp("wsts_tif"))


@pytest.fixture(scope="module")
def h5_root(tmp_path_factory) -> Path:
    return write_hdf5_root(tmp_path_factory.mktemp("wsts_h5"))


@pytest.fixture(scope="module")
def wsts_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("wsts_cache")


def module(root: Path, cache: Path, **kw) -> WSTSDataModule:
    dm = WSTSDataModule(root=str(root), cache_dir=str(cache), progress=False, **kw)
    dm.setup()
    return dm


def expected_count(years, n: int) -> int:
    return sum(max(d - n, 0) for _ in years for _, d, _, _, _ in FIRES)


# --------------------------------------------------------------------------- folds and counts

# The benchmark's list as Gerard et al. publish it (fold k is the k-th row)
PUBLISHED_FOLDS = [
    (2018, 2019, 2020, 2021), (2018, 2019, 2021, 2020), (2018, 2020, 2019, 2021), (2018, 2020, 2021, 2019),
    (2018, 2021, 2019, 2020), (2018, 2021, 2020, 2019), (2019, 2020, 2018, 2021), (2019, 2020, 2021, 2018),
    (2019, 2021, 2018, 2020), (2019, 2021, 2020, 2018), (2020, 2021, 2018, 2019), (2020, 2021, 2019, 2018)]


def test_the_twelve_folds_are_the_published_orderings():
    assert list(folds.FOLDS) == PUBLISHED_FOLDS
    f = folds.fold(3)
    assert (f.train, f.val, f.test) == ((2018, 2020), (2021,), (2019,))
    assert folds.fold(11).train == (2020, 2021) and folds.fold(11).test == (2018,)
    for fo in folds.FOLDS:
        assert sorted(fo) == list(YEARS)
    with pytest.raises(ValueError, match="data.fold must be an integer 0-11, got 12"):
        folds.fold(12)


def test_sample_counts_per_fold_and_leading_observations(tif_root, wsts_cache, capsys):
    for k in range(12):
        dm = module(tif_root, wsts_cache, fold=k, n_leading_observations=1)
        fo = folds.fold(k)
        for split in ("train", "val", "test"):
            ds = dm.datasets[split]
            assert len(ds) == expected_count(fo.years(split), 1)
            assert {f.year for f in ds.fires} == set(fo.years(split))
    for n in range(1, 6):
        dm = module(tif_root, wsts_cache, fold=0, n_leading_observations=n)
        # fire_a has 4 days, fire_b 6: D - n samples each, none below n + 1 days
        assert len(dm.datasets["train"]) == 2 * (max(4 - n, 0) + max(6 - n, 0))
        assert len(dm.datasets["test"]) == max(4 - n, 0) + max(6 - n, 0)
        warned = capsys.readouterr().out
        if n >= 4:
            assert "WARNING: fire 2021/fire_a has 4 day(s), fewer than data.n_leading_observations + 1" in warned
        else:
            assert "WARNING" not in warned


# --------------------------------------------------------------------------- targets and preprocessing

def centre(a: np.ndarray, h: int, w: int) -> np.ndarray:
    H, W = a.shape[-2:]
    y0, x0 = int(round((H - h) / 2)), int(round((W - w) / 2))
    return a[..., y0:y0 + h, x0:x0 + w]


def hours(af: np.ndarray) -> np.ndarray:
    """The published hhmm -> whole hours, NaN -> 0."""
    return np.floor_divide(np.nan_to_num(af, nan=0), 100)


def stats_by_hand(years, leave_out=()) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std per band of the given years' raw days: finite values; active fire: detections
    in hours; degree bands and land cover (0, 1)."""
    arrs = [a for (y, name), a in all_fires().items() if y in years and (y, name) not in leave_out]
    mean, std = np.zeros(23), np.ones(23)
    for b in range(23):
        v = np.concatenate([a[:, b].ravel().astype(np.float64) for a in arrs])
        if b == 22:
            v = hours(v)
            v = v[v > 0]
        v = v[np.isfinite(v)]
        if b not in (7, 13, 19, 16):
            mean[b], std[b] = v.mean(), v.std()
    return mean, std


def test_targets_are_next_day_active_fire_on_the_centre_crop(tif_root, wsts_cache):
    dm = module(tif_root, wsts_cache, fold=0, n_leading_observations=2)
    ds = dm.datasets["test"]  # 2021
    raw = all_fires()
    seen = 0
    for i in range(len(ds)):
        s = ds[i]
        name = next(f.name for f in ds.fires if f.id == s["fire_id"])
        arr = raw[(2021, name)]
        h, w = 32, 32  # 40x36 and 33x45 -> 32x32
        # active fire in whole hours > 0: a 00:45 detection is hour 0, no fire (as in the HDF5 layout)
        want = centre(hours(arr[s["t"] + 2, 22]) > 0, h, w)
        assert (centre(np.nan_to_num(arr[s["t"] + 2, 22]) > 0, h, w) != want).any()
        assert s["target"].shape == (1, h, w) and s["target"].dtype.is_floating_point
        np.testing.assert_array_equal(s["target"][0].numpy(), want.astype(np.float32))
        today = centre(hours(arr[s["t"] + 1, 22]) > 0, h, w)
        np.testing.assert_array_equal(s["fire_today"][0].numpy(), today.astype(np.float32))
        assert s["target"].sum() > 0
        seen += 1
    assert seen == (4 - 2) + (6 - 2)


def test_preprocessing_follows_the_published_rules(tif_root, wsts_cache):
    fold = folds.fold(0)  # train 2018 + 2019, val 2020, test 2021
    dm = module(tif_root, wsts_cache, fold=0)
    mean, std = stats_by_hand(fold.train)
    np.testing.assert_allclose(dm.mean, mean, rtol=1e-5)
    np.testing.assert_allclose(dm.std, std, rtol=1e-5)
    other, _ = stats_by_hand(YEARS)  # all years would give another mean (band 0 shifts by year)
    assert abs(other[0] - dm.mean[0]) > 10
    ds = dm.datasets["val"]
    s = ds[0]
    x = s["x"].numpy()[0]
    assert x.shape == (40, 32, 32) and s["x"].dtype.is_floating_point
    name = next(f.name for f in ds.fires if f.id == s["fire_id"])
    day = centre(all_fires()[(2020, name)][s["t"]], 32, 32).astype(np.float64)
    # standardised bands, NaN (missing NDVI) -> 0 after standardisation
    for b in (0, 1, 3, 5, 14, 15):
        want = np.where(np.isfinite(day[b]), (day[b] - mean[b]) / std[b], 0.0)
        np.testing.assert_allclose(x[b], want, rtol=1e-4, atol=1e-4)
    assert (x[3] == 0).any()
    # degree bands: sin of the degrees, not standardised (wind dir 7 -> channel 7; aspect 13 -> 13;
    # forecast wind direction 19 -> channel 19 - 1 + 17 = 35)
    for band, ch in ((7, 7), (13, 13), (19, 35)):
        np.testing.assert_allclose(x[ch], np.sin(np.deg2rad(day[band])), atol=1e-5)
    # land cover one-hot in place of band 16 (channels 16-32), a missing class all zero
    lc = day[16]
    for c in range(17):
        np.testing.assert_array_equal(x[16 + c], (lc == c + 1).astype(np.float32))
    onehot_sum = x[16:33].sum(0)
    assert name == "fire_a" and onehot_sum[10 - 4, 10 - 2] == 0  # the missing cell (crop offset 4, 2)
    assert (onehot_sum == 1).sum() == onehot_sum.size - 1
    # bands 17-22 follow (33-38); active fire in hours, standardised by the detections' mean
    h22 = hours(day[22])
    np.testing.assert_allclose(x[38], (h22 - mean[22]) / std[22], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(x[33], np.where(np.isfinite(day[17]), (day[17] - mean[17]) / std[17], 0),
                               rtol=1e-4, atol=1e-4)
    # the binary channel: detections before standardisation (a 00:45 detection is hour 0: not one)
    np.testing.assert_array_equal(x[39], (h22 > 0).astype(np.float32))
    assert 0 < x[39].sum() < x[39].size


def test_feature_subsets_by_name(tif_root, wsts_cache):
    full = module(tif_root, wsts_cache, fold=0)
    veg = module(tif_root, wsts_cache, fold=0, features="vegetation")
    assert veg.channels == 7 and full.channels == 40
    a, b = full.datasets["val"][1]["x"], veg.datasets["val"][1]["x"]
    np.testing.assert_array_equal(b.numpy(), a[:, [0, 1, 2, 3, 4, 38, 39]].numpy())
    assert module(tif_root, wsts_cache, fold=0, features="multi").channels == 33
    assert full.static_positions == (12, 13, 14, *range(16, 33))
    with pytest.raises(ValueError, match="data.features must be one of all, vegetation"):
        WSTSDataModule(root=str(tif_root), features="veg")


def test_tif_and_hdf5_give_the_same_samples(tif_root, h5_root, tmp_path):
    t = module(tif_root, tmp_path / "c", fold=2, n_leading_observations=3)
    h = module(h5_root, tmp_path / "c", fold=2, n_leading_observations=3, format="auto")
    assert t.datasets["train"].index.format == "tif" and h.datasets["train"].index.format == "hdf5"
    np.testing.assert_array_equal(t.mean, h.mean)
    np.testing.assert_array_equal(t.std, h.std)
    for split in ("train", "val", "test"):
        a, b = t.datasets[split], h.datasets[split]
        assert len(a) == len(b) > 0
        for i in range(len(a)):
            sa, sb = a[i], b[i]
            for key in ("x", "target", "valid", "fire_today"):
                assert sa[key].shape == sb[key].shape
                assert bool((sa[key] == sb[key]).all()), (split, i, key)
    dates_h = [f.dates for f in h.datasets["test"].fires]
    assert dates_h == [f.dates for f in t.datasets["test"].fires] == [tuple(dates(2021, 4)), tuple(dates(2021, 6))]


# --------------------------------------------------------------------------- crops and augmentation

def test_training_crops_flips_and_batches(tif_root, wsts_cache):
    dm = module(tif_root, wsts_cache, fold=0, crop_size=16, batch_size=4)
    ds = dm.datasets["train"]
    s = ds[0]
    assert s["x"].shape == (1, 40, 16, 16) and bool(s["valid"].all())
    again = ds[0]
    assert bool((again["x"] == s["x"]).all())                  # same (seed, epoch, sample): same crop
    later = ds[len(ds) * 3]                                      # epoch 3 of sample 0
    assert later["fire_id"] == s["fire_id"] and not bool((later["x"] == s["x"]).all())
    loader = dm.loader("train", seed=0)
    loader.sampler.set_epoch(1)
    batch = finish(next(iter(loader)), torch.device("cpu"))   # lean batches: the device makes x
    assert batch["x"].shape == (4, 1, 40, 16, 16) and batch["target"].shape == (4, 1, 16, 16)
    assert batch["x"].dtype == torch.float32 and batch["valid"].dtype == torch.bool
    assert batch["fire_id"].shape == (4,) and batch["t"].shape == (4,) and batch["year"].shape == (4,)
    # the default 128-px crop of a 40x36 image: padded, valid marks the real pixels
    big = module(tif_root, wsts_cache, fold=0).datasets["train"][0]
    assert big["x"].shape == (1, 40, 128, 128) and int(big["valid"].sum()) == 40 * 36
    assert float(big["x"][:, :, ~big["valid"][0]].abs().sum()) == 0.0
    val = dm.loader("val")
    assert val.batch_size == 1


def test_best_crop_is_the_best_of_ten_by_target_then_input():
    days = np.zeros((2, 23, 40, 36), np.float32)
    days[:, 22, 2:6, 2:6] = 13.0      # fire in the input, top left
    target = np.zeros((40, 36), bool)
    target[30:34, 25:29] = True       # fire in the target, bottom right
    corner = best_crop(days[:, 22], target, 16, np.random.default_rng(7))
    # the same ten draws, scored by hand
    r = np.random.default_rng(7)
    tries = [(int(r.integers(0, 25)), int(r.integers(0, 21))) for _ in range(10)]
    scores = [days[:, 22, a:a + 16, b:b + 16].mean() + 1000 * target[a:a + 16, b:b + 16].mean()
              for a, b in tries]
    assert corner == tries[int(np.argmax(scores))]
    assert target[corner[0]:corner[0] + 16, corner[1]:corner[1] + 16].any()


def test_the_crop_search_is_the_plain_loop_bit_for_bit():
    """best_crop's shortcuts (one call for the 20 draws, each corner scored once, no scoring when
    the image fits the crop) choose what the plain loop of np.mean scores chooses, and leave the
    generator where it leaves it (the flips are drawn from it next)."""
    def plain(fire_in, target, size, rng):
        H, W = target.shape
        ch, cw = min(size, H), min(size, W)
        best, corner = -np.inf, (0, 0)
        for _ in range(10):
            top, left = int(rng.integers(0, H - ch + 1)), int(rng.integers(0, W - cw + 1))
            score = (float(fire_in[:, top:top + ch, left:left + cw].mean())
                     + 1000.0 * float(target[top:top + ch, left:left + cw].mean()))
            if score > best:
                best, corner = score, (top, left)
        return corner

    rng = np.random.default_rng(0)
    corners = set()
    for seed in range(600):
        H, W = (int(v) for v in rng.integers(5, 90, 2))
        size = int(rng.choice([4, 16, 17, 64, 128]))
        fire_in = rng.uniform(0, 24, (2, H, W)).astype(np.float32) * (rng.random((2, H, W)) < 0.1)
        if seed % 2:
            fire_in = np.floor(fire_in)                  # whole hours, as the cache holds them
        target = rng.random((H, W)) < 0.05
        a, b = np.random.default_rng([seed, 3]), np.random.default_rng([seed, 3])
        got = best_crop(fire_in, target, size, a)
        assert got == plain(fire_in, target, size, b), seed
        assert a.random() == b.random(), seed
        corners.add(got)
    assert len(corners) > 100


def test_the_angle_correction_is_numpys_remainder_bit_for_bit():
    """corrected_angles' fast mod 360 gives exactly ``(sign * a + offset) % 360`` for every flip and
    rotation: at the band edges, -0, NaN, and angles out of range (those take % itself)."""
    rng = np.random.default_rng(1)
    edges = [0, -0.0, 360, 90, 180, 270, 1e-7, 359.99997, 89.99999, 90.00001, 269.99997, 0.5, 1e-30,
             np.nan, -1, -500, 800, 719.9, -719.9, 720, -720, np.inf, -np.inf]
    values = np.concatenate([np.array(edges, np.float32), rng.uniform(0, 360, 50000).astype(np.float32),
                             np.float32(rng.integers(0, 361, 2000))])
    for hflip, vflip, k in itertools.product((False, True), (False, True), range(4)):
        sign, offset = angle_map(hflip, vflip, k)
        for deg in (values, values[len(edges):], values[:12], np.full(4, np.nan, np.float32)):
            with np.errstate(invalid="ignore"):    # inf % 360 is NaN, with a warning
                want = (sign * deg + offset) % 360.0 if hflip or vflip or k else deg
                got = corrected_angles(deg.copy(), hflip, vflip, k)
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32))


def test_flips_and_rotations_correct_the_angle_bands():
    """An arrow: a target pixel one step from the centre in the direction the angle bands give
    (degrees clockwise from north = up). After any flip/rotation the arrow and the corrected
    angle still agree."""
    seen = set()
    for start in (0.0, 90.0):
        for seed in range(48):
            days = np.zeros((1, 23, 9, 9), np.float32)
            days[:, [7, 13, 19]] = start
            target = np.zeros((9, 9), bool)
            dy, dx = -round(math.cos(math.radians(start))), round(math.sin(math.radians(start)))
            target[4 + dy, 4 + dx] = True
            d, t, v = flip_and_rotate(days, target, np.ones((9, 9), bool), np.random.default_rng(seed))
            (r,), (c,) = np.nonzero(t)
            angle = float(d[0, 7, 4, 4])
            assert (r - 4, c - 4) == (-round(math.cos(math.radians(angle))), round(math.sin(math.radians(angle))))
            assert np.allclose(d[0, [13, 19]], angle) and v.all()
            seen.add(angle % 360)
    assert seen == {0.0, 90.0, 180.0, 270.0}


@pytest.mark.parametrize("crop, n", [(16, 2), (128, 1)])  # crops inside the images, and padded ones
def test_the_loader_gives_the_published_orders_values_bit_for_bit(tif_root, wsts_cache, crop, n):
    """The project's loader preprocesses the crop's real pixels straight into the flipped output;
    the published order pads, flips, then preprocesses everything: the same numbers, NaN bands,
    angle corrections and padding included, for every flip and rotation a few epochs draw."""
    dm = module(tif_root, wsts_cache, fold=0, crop_size=crop, n_leading_observations=n)
    missing = 0
    for split in ("train", "val"):
        ds = dm.datasets[split]
        assert ds.make_sample is crop_first
        epochs = 6 if split == "train" else 1
        for key in range(epochs * len(ds)):
            epoch, i = divmod(key, len(ds))
            box, rng = ds.crop_window(i, epoch)
            size = (crop, crop) if rng is not None else (32, 32)
            state = None if rng is None else rng.bit_generator.state
            got = crop_first(ds.window(i), n, box, rng, size, dm.mean, dm.std)
            if state is not None:
                rng.bit_generator.state = state
            want = published_order(ds.window(i), n, box, rng, size, dm.mean, dm.std)
            for a, b in zip(got, want):
                assert a.dtype == b.dtype and a.shape == b.shape and a.flags.c_contiguous
                np.testing.assert_array_equal(a, b, strict=True)
            missing += int(np.isnan(ds.window(i)[:n, 3, box[0]:box[0] + box[2], box[1]:box[1] + box[3]]).sum())
    assert missing > 0  # crops with missing NDVI were among them


# --------------------------------------------------------------------------- cache

def test_the_cache_is_built_once(tif_root, h5_root, tmp_path, monkeypatch):
    module(tif_root, tmp_path, fold=0)
    module(h5_root, tmp_path, fold=0)
    assert len(list(tmp_path.glob("wsts-*"))) == 2

    def no_decode(*a, **k):
        raise AssertionError("the second setup opened a source file")

    monkeypatch.setattr(tifffile, "TiffFile", no_decode)
    monkeypatch.setattr(tifffile, "imread", no_decode)
    monkeypatch.setattr(h5py, "File", no_decode)
    for root in (tif_root, h5_root):
        dm = module(root, tmp_path, fold=5, n_leading_observations=2)
        assert len(dm.datasets["train"]) == expected_count((2018, 2021), 2)
    assert len(list(tmp_path.glob("wsts-*"))) == 2


def test_a_damaged_cache_is_rebuilt(tif_root, tmp_path, capsys):
    module(tif_root, tmp_path, fold=0)
    (cache,) = tmp_path.glob("wsts-*")
    (cache / "f0.npy").write_bytes(b"truncated")
    dm = module(tif_root, tmp_path, fold=0)
    assert "is damaged: f0.npy is 9 bytes" in capsys.readouterr().out
    assert len(dm.datasets["train"]) == expected_count((2018, 2019), 1)


# --------------------------------------------------------------------------- bad input

def one_line(root: Path, tmp: Path, **kw) -> str:
    with pytest.raises(DataError) as e:
        module(root, tmp / "cache", **kw)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def copy_root(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_bad_tif_inputs_name_the_file(tif_root, tmp_path):
    root = copy_root(tif_root, tmp_path / "r1")
    bad = root / "2019" / "fire_a" / "2019-08-04.tif"
    tifffile.imwrite(bad, np.zeros((22, 40, 36), np.float32), photometric="minisblack", planarconfig="separate")
    assert one_line(root, tmp_path) == f"{bad}: 22 band(s), a WildfireSpreadTS day has 23"

    root = copy_root(tif_root, tmp_path / "r2")
    bad = root / "2020" / "fire_b" / "2020-08-06.tif"
    bad.write_bytes(b"II*\x00garbage, not a GeoTIFF")
    msg = one_line(root, tmp_path)
    assert msg.startswith(f"cannot read GeoTIFF {bad}: ")
    good = root / "2020" / "fire_b" / "2020-08-05.tif"
    good.write_bytes(good.read_bytes()[:40_000])  # truncated half way through its pixels
    assert one_line(root, tmp_path).startswith(f"cannot read GeoTIFF {good}: ")

    root = copy_root(tif_root, tmp_path / "r3")
    bad = root / "2018" / "fire_b" / "2018-08-03.tif"
    tifffile.imwrite(bad, np.zeros((23, 33, 44), np.float32), photometric="minisblack", planarconfig="separate")
    assert one_line(root, tmp_path) == (f"fire {root / '2018' / 'fire_b'}: days of different sizes "
                                        "(2018-08-01.tif is 33x45, 2018-08-03.tif is 33x44)")

    root = copy_root(tif_root, tmp_path / "r4")
    bad = root / "2021" / "fire_a" / "2021-08-07.tif"
    bad.rename(bad.with_name("2021-13-07.tif"))
    assert one_line(root, tmp_path) == (f"{bad.with_name('2021-13-07.tif')}: file name '2021-13-07.tif' "
                                        "is not a date YYYY-MM-DD.tif")

    root = copy_root(tif_root, tmp_path / "r5")
    shutil.rmtree(root / "2020")
    msg = one_line(root, tmp_path, fold=7)
    assert msg.startswith(f"data.root {root} has no folder 2020") and msg.endswith(f"{root / '2020'} is missing")


def test_bad_hdf5_inputs_name_the_file(h5_root, tmp_path):
    root = copy_root(h5_root, tmp_path / "h1")
    bad = root / "2019" / "fire_b.hdf5"
    with h5py.File(bad, "w") as f:
        f.create_dataset("data", data=np.zeros((5, 24, 8, 8), np.float32))
    assert one_line(root, tmp_path) == (f"{bad}: dataset 'data' has shape [5, 24, 8, 8], expected "
                                        "(T, 23, H, W): 23 bands a day")
    bad.write_bytes(b"\x89HDF\r\n\x1a\n broken")
    assert one_line(root, tmp_path).startswith(f"cannot read HDF5 file {bad}: ")


def test_skip_leaves_the_bad_fire_out_with_a_warning(tif_root, tmp_path, capsys):
    root = copy_root(tif_root, tmp_path / "r")
    bad = root / "2018" / "fire_a" / "2018-08-02.tif"
    bad.write_bytes(b"not a tif")
    dm = module(root, tmp_path / "cache", fold=0, on_bad_sequence="skip")
    out = capsys.readouterr().out
    assert f"WARNING: skipping fire 2018/fire_a: cannot read GeoTIFF {bad}" in out
    assert len(dm.datasets["train"]) == expected_count((2018, 2019), 1) - (4 - 1)
    # its first day, read before the broken second, is not in the training statistics either
    mean, std = stats_by_hand((2018, 2019), leave_out=[(2018, "fire_a")])
    np.testing.assert_allclose(dm.mean, mean, rtol=1e-5)
    np.testing.assert_allclose(dm.std, std, rtol=1e-5)
    # the cache built with skip, reused without it: the same fire is the error
    msg = one_line(root, tmp_path)
    assert msg.startswith(f"fire 2018/fire_a: cannot read GeoTIFF {bad}")


def test_user_errors_print_one_line_and_exit_2(tif_root, tmp_path, capsys):
    root = copy_root(tif_root, tmp_path / "r")
    bad = root / "2021" / "fire_b" / "2021-08-09.tif"
    bad.write_bytes(b"")
    with pytest.raises(SystemExit) as e, user_errors():
        module(root, tmp_path / "c")
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"Error: cannot read GeoTIFF {bad}")


def test_config_builds_the_data_module(tif_root, tmp_path):
    cfg = compose_config("data=wsts", f"data.root={tif_root}", f"data.cache_dir={tmp_path}",
                         "data.fold=9", "data.n_leading_observations=5", "data.progress=false")
    d = cfg.data
    assert (d.fold, d.n_leading_observations, d.features, d.format, d.crop_size) == (9, 5, "all", "auto", 128)
    dm = instantiate(cfg.data, batch_size=2, num_workers=0, pin_memory=False)
    assert isinstance(dm, WSTSDataModule) and dm.fold.test == (2018,)
    dm.setup()
    assert len(dm.datasets["train"]) == 2 * (6 - 5) and len(dm.datasets["val"]) == 1
    for key, value, message in (("fold", 12, "data.fold must be an integer 0-11"),
                                ("n_leading_observations", 6, "data.n_leading_observations must be an integer 1-5"),
                                ("format", "zarr", "data.format must be one of tif, hdf5, auto")):
        bad = cfg.data.copy()
        bad[key] = value
        with pytest.raises(Exception, match=message):
            instantiate(bad, batch_size=2, num_workers=0, pin_memory=False)


def test_training_crops_do_not_depend_on_workers(tif_root, wsts_cache):
    """The crops of an epoch follow from (seed, epoch, sample): a worker process gives the same."""
    batches = []
    for workers in (0, 1):
        dm = module(tif_root, wsts_cache, fold=1, crop_size=16, batch_size=3, num_workers=workers)
        loader = dm.loader("train", seed=5)
        loader.sampler.set_epoch(2)
        batches.append(finish(next(iter(loader)), torch.device("cpu")))
    for key in ("x", "target", "valid", "fire_id", "t"):
        assert bool((batches[0][key] == batches[1][key]).all()), key


def test_a_root_that_is_not_wildfirespreadts(tif_root, h5_root, tmp_path):
    assert one_line(tmp_path / "nowhere", tmp_path).startswith(f"data.root {tmp_path / 'nowhere'} does not exist")
    (tmp_path / "empty" / "2018").mkdir(parents=True)
    assert one_line(tmp_path / "empty", tmp_path).startswith(
        f"data.root {tmp_path / 'empty'} holds no WildfireSpreadTS fires")
    both = copy_root(tif_root, tmp_path / "both")
    (both / "2018" / "fire_c.hdf5").write_bytes((h5_root / "2018" / "fire_a.hdf5").read_bytes())
    assert "set data.format=tif or data.format=hdf5" in one_line(both, tmp_path)
    dm = module(both, tmp_path / "c", format="tif")  # the explicit layout ignores the other files
    assert len(dm.datasets["train"]) == expected_count((2018, 2019), 1)
    with pytest.raises(ValueError, match="data.root is required with data=wsts"):
        WSTSDataModule(root=None)
