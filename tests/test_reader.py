"""The on-disk layout reader, the decoded-frame cache and FireSamples, on a hand-made data set.

The data set (see ``make_dataset``) follows docs/data-layout.md exactly:

* sequence 7 in folder ``sequence_007`` (RGB PNGs, 3 frames of 4x5, crop [1, 5, 2, 7]),
  sequence 12 in folder ``sequence_0012`` (RGBA PNGs, 4 frames of 5x6, crop [6, 11, 8, 14]);
* WeatherHistory.csv with 12 lines, line 7 ``Weathers/Weather1.csv`` and line 12
  ``data/x/Weathers/Weather2.csv``;
* weather CSVs with extra columns, WS/WD in other orders;
* a 3-band 12x14 GeoTIFF: a continuous band with one -9999, a {0,1} band and a {-1,1} band.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from emberformer.data import cache as cache_mod
from emberformer.data import reader
from emberformer.data.cache import build_cache, read_index
from emberformer.data.datamodule import split_sequences
from emberformer.data.dataset import FireSamples, collate, to_device
from emberformer.data.frames import decode_mask
from emberformer.data.reader import DataError

FIRE = (253, 231, 37)
# viridis colours that are not fire, two of them with a green channel next to 231
NOT_FIRE = [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 230, 37),
            (250, 232, 36), (231, 228, 25)]

RASTER_SHAPE = (3, 12, 14)
WINDOWS = {7: [1, 5, 2, 7], 12: [6, 11, 8, 14]}
FRAMES = {7: 3, 12: 4}
FOLDERS = {7: "sequence_007", 12: "sequence_0012"}

# Weather1: columns Time, WD, Temp, WS.   Weather2: columns WD, Humidity, WS.
WEATHER1 = "Time,WD,Temp,WS\n0,90,20,10\n1,180,21,20\n2,270,22,5\n"
WEATHER2 = "WD, Humidity ,WS\n0,50,0\n45,40,40\n360,30,30\n10,20,25\n"
# global WS range 0..40, WD range 0..360 (over both files)
WIND7 = np.array([[10 / 40, 90 / 360], [20 / 40, 180 / 360], [5 / 40, 270 / 360]], np.float32)
WIND12 = np.array([[0, 0], [1, 45 / 360], [30 / 40, 1], [25 / 40, 10 / 360]], np.float32)


def make_raster() -> np.ndarray:
    y, x = np.mgrid[0:12, 0:14]
    cont = (0.5 * (y * 14 + x) + 2).astype(np.float32)   # 2 .. 85.5, max at (11, 13)
    cont[0, 0] = -9999.0                                   # -> -1, the minimum
    binary = ((y + x) % 2).astype(np.float32)
    signed = np.where(y > 6, 1.0, -1.0).astype(np.float32)
    return np.stack([cont, binary, signed])


def expected_landscape() -> np.ndarray:
    r = make_raster()
    r[0, 0, 0] = -1.0
    r[0] = (r[0] + 1.0) / (85.5 + 1.0)
    return r


def render(mask: np.ndarray, rgba: bool, rng: np.random.Generator) -> np.ndarray:
    h, w = mask.shape
    colours = np.array(NOT_FIRE, np.uint8)[rng.integers(0, len(NOT_FIRE), size=(h, w))]
    colours[mask] = FIRE
    if rgba:
        alpha = rng.integers(100, 256, size=(h, w, 1)).astype(np.uint8)
        colours = np.concatenate([colours, alpha], axis=-1)
    return colours


def write_png(path: Path, arr: np.ndarray) -> None:
    Image.fromarray(arr).save(path)


def make_masks(seed: int, n: int, shape) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.random((n, *shape)) > 0.5


def make_dataset(root: Path, tiled: bool = False) -> dict:
    """Write the data set; return the masks written ({sid: (fire, iso)})."""
    land = root / "landscape"
    (land / "Weathers").mkdir(parents=True)
    raster = make_raster()
    if tiled:  # pixel-interleaved, tiled, Deflate-compressed (as GDAL writes them)
        tifffile.imwrite(land / "Input_Geotiff.tif", np.moveaxis(raster, 0, -1),
                         photometric="minisblack", planarconfig="contig", tile=(16, 16),
                         compression="zlib")
    else:
        tifffile.imwrite(land / "Input_Geotiff.tif", raster, photometric="minisblack",
                         planarconfig="separate")
    (land / "indices.json").write_text(json.dumps({str(k): v for k, v in WINDOWS.items()}))
    lines = [f"Weathers/Unused{i}.csv" for i in range(1, 13)]
    lines[6] = "Weathers/Weather1.csv"
    lines[11] = "data/x/Weathers/Weather2.csv"
    (land / "WeatherHistory.csv").write_text("\n".join(lines) + "\n")
    (land / "Weathers" / "Weather1.csv").write_text(WEATHER1)
    (land / "Weathers" / "Weather2.csv").write_text(WEATHER2)
    masks = {}
    rng = np.random.default_rng(123)
    for sid in (7, 12):
        y0, y1, x0, x1 = WINDOWS[sid]
        shape = (y1 - y0, x1 - x0)
        fire = make_masks(sid, FRAMES[sid], shape)
        iso = make_masks(sid + 100, FRAMES[sid], shape)
        for kind, arr in (("fire", fire), ("iso", iso)):
            folder = root / ("fire_frames" if kind == "fire" else "isochrones") / FOLDERS[sid]
            folder.mkdir(parents=True)
            for t, m in enumerate(arr):
                write_png(folder / f"{kind}_{t:03d}.png", render(m, rgba=sid == 12, rng=rng))
        masks[sid] = (fire, iso)
    return masks


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "data"
    masks = make_dataset(root)
    return root, masks


# ---------------------------------------------------------------- layout


@pytest.mark.parametrize("name,sid", [("sequence_007", 7), ("sequence_0007", 7), ("sequence_0012", 12),
                                      ("sequence_1", 1), ("sequence_000", 0)])
def test_parse_sequence_id(name, sid):
    assert reader.parse_sequence_id(name) == sid


@pytest.mark.parametrize("name", ["sequence_", "sequence_7a", "seq_007", "sequence_007.png",
                                  "xsequence_007", "sequence_-7", ".DS_Store"])
def test_parse_sequence_id_rejects(name):
    assert reader.parse_sequence_id(name) is None


def test_list_sequences_ids_weather_and_frames(dataset):
    root, _ = dataset
    seqs = {s.seq_id: s for s in reader.list_sequences(root)}
    assert set(seqs) == {7, 12}
    land = root / "landscape"
    assert seqs[7].weather_file == land / "Weathers" / "Weather1.csv"
    assert seqs[12].weather_file == land / "Weathers" / "Weather2.csv"
    assert seqs[7].window == (1, 5, 2, 7)
    assert seqs[12].window == (6, 11, 8, 14)
    assert [p.name for p in seqs[7].fire_frames] == ["fire_000.png", "fire_001.png", "fire_002.png"]
    assert [p.name for p in seqs[12].iso_frames] == [f"iso_{t:03d}.png" for t in range(4)]
    assert seqs[12].fire_frames[0].parent == root / "fire_frames" / "sequence_0012"
    assert seqs[12].iso_frames[0].parent == root / "isochrones" / "sequence_0012"


def test_list_sequences_sorted_by_id(dataset):
    root, _ = dataset
    assert [s.seq_id for s in reader.list_sequences(root)] == [7, 12]


def test_list_sequences_ignores_non_sequence_entries(dataset):
    root, _ = dataset
    (root / "fire_frames" / "notes.txt").write_text("x")
    (root / "fire_frames" / "other").mkdir()
    (root / "fire_frames" / "sequence_007" / "readme.txt").write_text("x")
    seqs = {s.seq_id: s for s in reader.list_sequences(root)}
    assert set(seqs) == {7, 12}
    assert len(seqs[7].fire_frames) == 3


def test_read_weather_picks_columns_by_name(dataset):
    root, _ = dataset
    w1 = reader.read_weather(root / "landscape" / "Weathers" / "Weather1.csv")
    w2 = reader.read_weather(root / "landscape" / "Weathers" / "Weather2.csv")
    assert w1.dtype == np.float32
    np.testing.assert_array_equal(w1, [[10, 90], [20, 180], [5, 270]])
    np.testing.assert_array_equal(w2, [[0, 0], [40, 45], [30, 360], [25, 10]])


def test_decode_mask_exact(tmp_path):
    arr = np.array([
        [FIRE, (253, 230, 37), (250, 232, 36), (68, 1, 84)],
        [(0, 231, 0), (231, 228, 25), FIRE, (94, 201, 98)],
    ], np.uint8)
    write_png(tmp_path / "rgb.png", arr)
    rgba = np.concatenate([arr, np.full((2, 4, 1), 7, np.uint8)], axis=-1)
    write_png(tmp_path / "rgba.png", rgba)
    expected = np.array([[True, False, False, False], [True, False, True, False]])
    for name in ("rgb.png", "rgba.png"):
        m = decode_mask(tmp_path / name)
        assert m.dtype == bool
        np.testing.assert_array_equal(m, expected)


def test_decode_mask_of_written_frames(dataset):
    root, masks = dataset
    fire12, iso12 = masks[12]
    folder = root / "fire_frames" / "sequence_0012"
    assert Image.open(folder / "fire_000.png").mode == "RGBA"
    assert Image.open(root / "fire_frames" / "sequence_007" / "fire_000.png").mode == "RGB"
    for t in range(4):
        np.testing.assert_array_equal(decode_mask(folder / f"fire_{t:03d}.png"), fire12[t])
        np.testing.assert_array_equal(
            decode_mask(root / "isochrones" / "sequence_0012" / f"iso_{t:03d}.png"), iso12[t])


@pytest.mark.parametrize("tiled", [False, True], ids=["planar", "tiled-zlib"])
def test_read_landscape(tmp_path, tiled):
    root = tmp_path / "data"
    make_dataset(root, tiled=tiled)
    if tiled:
        with tifffile.TiffFile(root / "landscape" / "Input_Geotiff.tif") as tif:
            assert tif.pages[0].is_tiled
    r = reader.read_landscape(root)
    assert r.shape == RASTER_SHAPE
    assert r.dtype == np.float32
    # continuous band: -9999 -> -1 before min-max, so (0,0) is 0 and the max (11,13) is 1
    assert r[0].min() == 0.0 and r[0].max() == 1.0
    assert r[0, 0, 0] == 0.0 and r[0, 11, 13] == 1.0
    assert r[0, 0, 1] == pytest.approx((2.5 + 1) / 86.5, rel=1e-6)
    np.testing.assert_allclose(r[0], expected_landscape()[0], rtol=1e-6, atol=1e-7)
    # binary bands unchanged
    raw = make_raster()
    np.testing.assert_array_equal(r[1], raw[1])
    np.testing.assert_array_equal(r[2], raw[2])
    assert set(np.unique(r[2]).tolist()) == {-1.0, 1.0}


def test_read_landscape_constant_band_is_zero_and_three_valued_band_normalised(tmp_path):
    root = tmp_path / "data"
    (root / "landscape").mkdir(parents=True)
    raster = np.stack([np.full((4, 5), 7.0, np.float32),
                       np.tile(np.array([0.0, 1.0, 2.0, 1.0, 0.0], np.float32), (4, 1))])
    tifffile.imwrite(root / "landscape" / "Input_Geotiff.tif", raster, photometric="minisblack",
                     planarconfig="separate")
    r = reader.read_landscape(root)
    np.testing.assert_array_equal(r[0], np.zeros((4, 5), np.float32))
    np.testing.assert_array_equal(r[1][0], [0.0, 0.5, 1.0, 0.5, 0.0])



def test_read_landscape_lzw(tmp_path):
    root = tmp_path / "data"
    (root / "landscape").mkdir(parents=True)
    band = np.arange(20, dtype=np.float32).reshape(4, 5)
    Image.fromarray(band).save(root / "landscape" / "Input_Geotiff.tif", compression="tiff_lzw")
    with tifffile.TiffFile(root / "landscape" / "Input_Geotiff.tif") as tif:
        assert tif.pages[0].compression == 5  # LZW
    r = reader.read_landscape(root)
    np.testing.assert_allclose(r[0], band / 19.0, rtol=1e-6)


# ---------------------------------------------------------------- cache + samples


def test_build_cache_and_samples(dataset, tmp_path):
    root, masks = dataset
    out = build_cache(root, tmp_path / "cache", progress=False)
    assert out.parent == tmp_path / "cache" and out.name.startswith("decoded-")
    meta = read_index(out)
    assert meta.static_channels == 3
    assert {i: (s.frames, s.height, s.width) for i, s in meta.sequences.items()} == {
        7: (3, 4, 5), 12: (4, 5, 6)}
    assert meta.wind_min == (0.0, 0.0) and meta.wind_max == (40.0, 360.0)

    ds = FireSamples(out, [7, 12])
    assert len(ds) == (3 - 1) + (4 - 1)
    assert ds.static_channels == 3
    assert sorted((s, t) for s, t in ds.samples) == [(7, 0), (7, 1), (12, 0), (12, 1), (12, 2)]
    land = expected_landscape()
    raster = ds.static_raster()
    np.testing.assert_array_equal(raster.numpy(), land.astype(np.float16))  # stored once, float16
    for i in range(len(ds)):
        x = ds[i]
        sid, t = x["seq_id"], x["t"]
        fire, iso = masks[sid]
        y0, y1, x0, x1 = WINDOWS[sid]
        assert x["fire"].dtype == torch.uint8 and x["target"].dtype == torch.uint8  # bit-packed
        assert x["hw"] == (y1 - y0, x1 - x0) and list(x["window"]) == [y0, y1, x0, x1]
        b = to_device(collate([x]), torch.device("cpu"), raster)
        assert b["fire"].shape == (1, t + 1, y1 - y0, x1 - x0)
        np.testing.assert_array_equal(b["fire"][0].numpy(), fire[: t + 1].astype(np.float32))
        assert b["target"].shape == (1, 1, y1 - y0, x1 - x0)
        np.testing.assert_array_equal(b["target"][0, 0].numpy(), iso[t + 1].astype(np.float32))
        wind = WIND7 if sid == 7 else WIND12
        assert x["wind"].dtype == torch.float32
        np.testing.assert_allclose(x["wind"].numpy(), wind[: t + 1], rtol=1e-6, atol=1e-7)
        crop = land[:, y0:y1, x0:x1]
        assert b["static"].dtype == torch.float32
        np.testing.assert_array_equal(b["static"][0].numpy(), crop.astype(np.float16).astype(np.float32))
        np.testing.assert_allclose(b["static"][0].numpy(), crop, atol=1e-3)
    assert ds.history_lengths() == [t + 1 for _, t in ds.samples]


def test_samples_collate_together(dataset, tmp_path):
    root, masks = dataset
    ds = FireSamples(build_cache(root, tmp_path / "cache", progress=False), [7, 12])
    by_key = {(s, t): i for i, (s, t) in enumerate(ds.samples)}
    batch = to_device(collate([ds[by_key[(7, 0)]], ds[by_key[(12, 2)]]]), torch.device("cpu"),
                      ds.static_raster())
    assert batch["fire"].shape == (2, 3, 5, 6)
    assert batch["valid_t"].tolist() == [[False, False, True], [True, True, True]]
    np.testing.assert_array_equal(batch["fire"][0, 2, :4, :5].numpy(), masks[7][0][0].astype(np.float32))
    assert batch["mask"][0, 0].sum().item() == 4 * 5


def test_fire_samples_subset_and_max_history(dataset, tmp_path):
    root, masks = dataset
    out = build_cache(root, tmp_path / "cache", progress=False)
    only12 = FireSamples(out, [12, 99], max_history=2)
    assert only12.seq_ids == [12]
    assert len(only12) == 3
    assert only12.history_lengths() == [1, 2, 2]
    x = only12[2]  # t = 2: frames 1..2
    assert x["t"] == 2
    fire = to_device(collate([x]), torch.device("cpu"), only12.static_raster())["fire"][0]
    np.testing.assert_array_equal(fire.numpy(), masks[12][0][1:3].astype(np.float32))
    np.testing.assert_allclose(x["wind"].numpy(), WIND12[1:3], rtol=1e-6)


def test_cache_reused_when_unchanged(dataset, tmp_path, monkeypatch):
    root, _ = dataset
    first = build_cache(root, tmp_path / "cache", progress=False)

    def boom(*a, **k):
        raise AssertionError("cache was rebuilt")

    monkeypatch.setattr(cache_mod.reader, "read_landscape", boom)
    monkeypatch.setattr(cache_mod, "decode_mask", boom)
    assert build_cache(root, tmp_path / "cache", progress=False) == first
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [first.name]


def test_cache_rebuilt_after_frame_rewritten(dataset, tmp_path):
    root, masks = dataset
    first = build_cache(root, tmp_path / "cache", progress=False)
    frame = root / "fire_frames" / "sequence_007" / "fire_001.png"
    new_mask = np.zeros((4, 5), bool)
    new_mask[1, 2] = True
    write_png(frame, render(new_mask, rgba=False, rng=np.random.default_rng(0)))
    st = frame.stat()
    os.utime(frame, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    second = build_cache(root, tmp_path / "cache", progress=False)
    assert second != first
    assert (first / "index.json").is_file() and (second / "index.json").is_file()
    ds = FireSamples(second, [7])
    fire = to_device(collate([ds[ds.samples.index((7, 1))]]), torch.device("cpu"), ds.static_raster())["fire"][0]
    np.testing.assert_array_equal(fire[1].numpy(), new_mask.astype(np.float32))
    np.testing.assert_array_equal(fire[0].numpy(), masks[7][0][0].astype(np.float32))


def test_cache_rebuilt_after_touch_only(dataset, tmp_path):
    root, _ = dataset
    first = build_cache(root, tmp_path / "cache", progress=False)
    frame = root / "isochrones" / "sequence_0012" / "iso_003.png"
    st = frame.stat()
    os.utime(frame, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert build_cache(root, tmp_path / "cache", progress=False) != first


# ---------------------------------------------------------------- errors


def test_missing_root_names_the_path(tmp_path):
    missing = tmp_path / "no_such_root"
    with pytest.raises(DataError, match="does not exist") as e:
        reader.list_sequences(missing)
    assert str(missing) in str(e.value)
    with pytest.raises(DataError) as e:
        build_cache(missing, tmp_path / "cache", progress=False)
    assert str(missing) in str(e.value)
    assert issubclass(DataError, ValueError)


def test_root_missing_parts_named(dataset):
    root, _ = dataset
    (root / "landscape" / "indices.json").unlink()
    with pytest.raises(DataError, match=r"is missing landscape/indices\.json"):
        reader.check_root(root)


def test_frame_count_mismatch(dataset):
    root, _ = dataset
    (root / "isochrones" / "sequence_007" / "iso_002.png").unlink()
    with pytest.raises(DataError, match=r"^sequence 7: 3 frames in .*sequence_007 but 2 in .*sequence_007"):
        reader.list_sequences(root)


def test_fewer_than_two_frames(dataset):
    root, _ = dataset
    for t in (1, 2):
        (root / "isochrones" / "sequence_007" / f"iso_{t:03d}.png").unlink()
        (root / "fire_frames" / "sequence_007" / f"fire_{t:03d}.png").unlink()
    with pytest.raises(DataError, match=r"^sequence 7: 1 frame\(s\) in .*need at least 2"):
        reader.list_sequences(root)


def test_missing_isochrone_folder(dataset):
    root, _ = dataset
    for p in (root / "isochrones" / "sequence_0012").iterdir():
        p.unlink()
    (root / "isochrones" / "sequence_0012").rmdir()
    with pytest.raises(DataError, match=r"^sequence 12: .*sequence_0012 is missing"):
        reader.list_sequences(root)


def test_missing_indices_key(dataset):
    root, _ = dataset
    (root / "landscape" / "indices.json").write_text(json.dumps({"7": WINDOWS[7]}))
    with pytest.raises(DataError, match=r'^sequence 12: no key "12" in'):
        reader.list_sequences(root)


def test_weather_history_too_short(dataset):
    root, _ = dataset
    (root / "landscape" / "WeatherHistory.csv").write_text("Weathers/W.csv\n" * 6 + "Weathers/Weather1.csv\n")
    with pytest.raises(DataError, match=r"^sequence 12: line 12 of .*WeatherHistory\.csv.*7 lines"):
        reader.list_sequences(root)


def test_crop_window_outside_raster(dataset, tmp_path):
    root, _ = dataset
    (root / "landscape" / "indices.json").write_text(json.dumps({"7": WINDOWS[7], "12": [7, 13, 8, 14]}))
    with pytest.raises(DataError,
                       match=r"^sequence 12: crop window \[7, 13, 8, 14\] lies outside the raster \(12x14\)"):
        build_cache(root, tmp_path / "cache", progress=False)
    assert not any((tmp_path / "cache").glob("decoded-*/index.json"))


def test_crop_window_size_mismatch(dataset, tmp_path):
    root, _ = dataset
    (root / "landscape" / "indices.json").write_text(json.dumps({"7": [1, 5, 2, 8], "12": WINDOWS[12]}))
    with pytest.raises(DataError, match=r"^sequence 7: crop window \[1, 5, 2, 8\] is 4x6 but its frames are 4x5"):
        build_cache(root, tmp_path / "cache", progress=False)


def _drop_wd(root):
    (root / "landscape" / "Weathers" / "Weather1.csv").write_text("Time,Temp,WS\n0,20,10\n1,21,20\n2,22,5\n")


def test_weather_without_wd_names_the_file(dataset, tmp_path):
    root, _ = dataset
    _drop_wd(root)
    with pytest.raises(DataError, match=r"Weather1\.csv has no WD column"):
        build_cache(root, tmp_path / "cache", progress=False)


def test_weather_without_wd_names_the_sequence(dataset, tmp_path):
    root, _ = dataset
    _drop_wd(root)
    with pytest.raises(DataError, match=r"sequence 7.*Weather1\.csv"):
        build_cache(root, tmp_path / "cache", progress=False)


def test_weather_without_wd_is_skipped_in_skip_mode(dataset, tmp_path):
    root, _ = dataset
    _drop_wd(root)
    out = build_cache(root, tmp_path / "cache", on_bad_sequence="skip", progress=False)
    meta = read_index(out)
    assert list(meta.sequences) == [12]
    assert meta.skipped == (7,)


def test_weather_too_few_rows(dataset, tmp_path):
    root, _ = dataset
    (root / "landscape" / "Weathers" / "Weather1.csv").write_text("WS,WD\n1,2\n3,4\n")
    with pytest.raises(DataError, match=r"^sequence 7: weather file .*Weather1\.csv has 2 rows, "
                                        r"need one per frame \(3\)"):
        build_cache(root, tmp_path / "cache", progress=False)


def test_skip_mode_skips_bad_sequence(dataset, tmp_path, capsys):
    root, masks = dataset
    (root / "landscape" / "indices.json").write_text(json.dumps({"7": WINDOWS[7], "12": [7, 13, 8, 14]}))
    out = build_cache(root, tmp_path / "cache", on_bad_sequence="skip", progress=False)
    meta = read_index(out)
    assert list(meta.sequences) == [7]
    assert meta.skipped == (12,)
    assert "WARNING: skipping sequence 12" in capsys.readouterr().out
    assert len(FireSamples(out, [7, 12])) == 2


# ---------------------------------------------------------------- splits


def test_split_sequences_three_sequences():
    s = split_sequences([12, 3, 7], (0.8, 0.1, 0.1), seed=0)
    assert set(s) == {"train", "val", "test"}
    assert all(len(v) == 1 for v in s.values())
    assert sorted(s["train"] + s["val"] + s["test"]) == [3, 7, 12]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_split_sequences_deterministic_disjoint_covering(seed):
    ids = list(range(1, 21))
    a = split_sequences(ids, (0.8, 0.1, 0.1), seed)
    b = split_sequences(list(reversed(ids)), (0.8, 0.1, 0.1), seed)
    assert a == b
    assert (len(a["train"]), len(a["val"]), len(a["test"])) == (16, 2, 2)
    sets = [set(a[k]) for k in ("train", "val", "test")]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert sets[0] | sets[1] | sets[2] == set(ids)
    assert all(a[k] == sorted(a[k]) for k in a)


def test_split_sequences_seed_matters():
    ids = list(range(20))
    vals = {tuple(split_sequences(ids, (0.8, 0.1, 0.1), seed)["val"]) for seed in range(6)}
    assert len(vals) > 1
