"""Faults in user data and in the caches (issue 12, items 3, 4, 5, 8, 9, 10 and the 4-D GeoTIFF):
each one is one line naming the file or sequence (exit code 2 from the CLI, no traceback), is
skipped with ``data.on_bad_sequence=skip`` where it concerns one sequence, or is repaired with a
one-line notice; no temporary folder is ever left behind.

The data set is test_reader's: sequences 7 (Weather1.csv, 3 frames of 4x5) and 12
(Weather2.csv, 4 frames of 5x6).
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from conftest import one_line_error, run_app
from emberformer.cli.errors import user_errors
from emberformer.data import cache as cache_mod
from emberformer.data import reader, synthetic
from emberformer.data.cache import CacheError, build_cache, read_index
from emberformer.data.dataset import FireSamples
from emberformer.data.frames import FrameError, decode_mask
from emberformer.data.reader import DataError
from test_reader import FOLDERS, FRAMES, WIND7, WINDOWS, make_dataset, make_raster

TINY_SYNTH = dict(num_sequences=2, size=16, max_frames=3, steps_per_frame=1, seed=0)


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "data"
    masks = make_dataset(root)
    return root, masks


def one_line_exit_2(fn, capsys) -> str:
    """Run fn under user_errors (what every entry point does); return the one stderr line."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        with user_errors():
            fn()
    assert e.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    return lines[0]


def no_temp_left(folder: Path) -> None:
    left = [p.name for p in folder.iterdir() if ".tmp" in p.name or p.name.startswith(".")] \
        if folder.exists() else []
    assert left == []


def cached_ids(out: Path) -> list[int]:
    return list(read_index(out).sequences)


def tree_hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- item 3: non-finite weather


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "1e40", "-9999", "-1"])
def test_non_finite_or_out_of_range_ws_names_file_line_and_column(dataset, tmp_path, value):
    root, _ = dataset
    (root / "landscape" / "Weathers" / "Weather1.csv").write_text(
        f"Time,WD,Temp,WS\n0,90,20,10\n1,180,21,{value}\n2,270,22,5\n")
    with pytest.raises(DataError) as e:
        build_cache(root, tmp_path / "cache", progress=False)
    assert str(e.value) == (f"sequence 7: weather file {root / 'landscape' / 'Weathers' / 'Weather1.csv'}: "
                            f"line 3, column WS: value {value} is not a finite number in [0, 1000]")
    no_temp_left(tmp_path / "cache")


def test_non_finite_wd_names_column_wd(dataset):
    root, _ = dataset
    path = root / "landscape" / "Weathers" / "Weather2.csv"
    path.write_text("WD, Humidity ,WS\n0,50,0\ninf,40,40\n")
    with pytest.raises(DataError, match=r"Weather2\.csv: line 3, column WD: value inf is not a finite "
                                        r"number in \[-1000, 1000\]$"):
        reader.read_weather(path)


def test_nan_weather_is_skipped_with_skip_and_does_not_poison_the_others(dataset, tmp_path, capsys):
    root, _ = dataset
    (root / "landscape" / "Weathers" / "Weather1.csv").write_text(
        "Time,WD,Temp,WS\n0,90,20,10\n1,180,21,nan\n2,270,22,5\n")
    out = build_cache(root, tmp_path / "cache", on_bad_sequence="skip", progress=False)
    assert "WARNING: skipping sequence 7: weather file" in capsys.readouterr().out
    index = read_index(out)
    assert list(index.sequences) == [12] and index.skipped == (7,)
    # the global range comes from the readable file only: WS 0..40, WD 0..360 (Weather2)
    assert index.wind_min == (0.0, 0.0) and index.wind_max == (40.0, 360.0)
    wind = np.load(out / "12_wind.npy")
    assert np.isfinite(wind).all() and wind.min() >= 0 and wind.max() <= 1


# NaN cells in the GeoTIFF: tests/test_faults_data.py (issue 18 item 10)


def test_geotiff_gdal_nodata_tag_is_no_data(tmp_path, capsys):
    root = tmp_path / "data"
    make_dataset(root)
    raster = make_raster()
    nodata = float(np.finfo(np.float32).min)  # GDAL's usual float no-data value
    raster[0, 0, 0] = nodata
    tifffile.imwrite(root / "landscape" / "Input_Geotiff.tif", raster, photometric="minisblack",
                     planarconfig="separate", extratags=[(42113, "s", 0, repr(nodata), True)])
    r = reader.read_landscape(root)
    np.testing.assert_allclose(r[0], (make_raster()[0].clip(-1) + 1.0) / 86.5, rtol=1e-6, atol=1e-7)
    assert "Note:" not in capsys.readouterr().out


# ---------------------------------------------------------------- item 12: 4-D GeoTIFF


def test_4d_geotiff_names_file_and_shape(dataset, tmp_path, capsys):
    root, _ = dataset
    tif = root / "landscape" / "Input_Geotiff.tif"
    tifffile.imwrite(tif, np.zeros((2, 3, 12, 14), np.float32),
                     photometric="minisblack")
    line = one_line_exit_2(lambda: build_cache(root, tmp_path / "cache", progress=False), capsys)
    assert line == (f"Error: GeoTIFF {tif} has shape [2, 3, 12, 14]; expected one 2-D band [Y, X] "
                    "or bands [C, Y, X] / [Y, X, C]")
    no_temp_left(tmp_path / "cache")


# ---------------------------------------------------------------- item 4: frame modes


def _save(path: Path, arr: np.ndarray, mode: str | None = None) -> Path:
    im = Image.fromarray(arr)
    if mode == "P":
        im = im.convert("P", palette=Image.Palette.ADAPTIVE)
    elif mode is not None:
        im = im.convert(mode)
    im.save(path)
    return path


MASK = np.array([[True, False, False], [False, True, True]])


@pytest.mark.parametrize("kind", ["L-255", "L-1", "I;16", "1", "LA", "RGB-black-white", "RGBA-black-white"])
def test_single_channel_and_black_white_masks_decode_non_zero_as_fire(tmp_path, kind):
    if kind.startswith("L-"):
        path = _save(tmp_path / "m.png", MASK.astype(np.uint8) * int(kind[2:]))
    elif kind == "I;16":
        path = _save(tmp_path / "m.png", MASK.astype(np.uint16) * 1000)
        assert Image.open(path).mode in ("I;16", "I")
    elif kind == "1":
        path = _save(tmp_path / "m.png", MASK.astype(np.uint8) * 255, "1")
    elif kind == "LA":
        path = _save(tmp_path / "m.png", MASK.astype(np.uint8) * 200, "LA")
    else:
        path = _save(tmp_path / "m.png", MASK.astype(np.uint8) * 255, kind.split("-")[0])
    assert Image.open(path).mode == {"L-255": "L", "L-1": "L", "1": "1", "LA": "LA", "RGB-black-white": "RGB",
                                     "RGBA-black-white": "RGBA"}.get(kind, Image.open(path).mode)
    np.testing.assert_array_equal(decode_mask(path), MASK)


def test_palette_viridis_frame_decodes_like_rgb(tmp_path):
    rgb = np.array([[(253, 231, 37), (68, 1, 84)], [(33, 145, 140), (253, 231, 37)]], np.uint8)
    path = _save(tmp_path / "p.png", rgb, "P")
    assert Image.open(path).mode == "P"
    np.testing.assert_array_equal(decode_mask(path), [[True, False], [False, True]])


def test_grayscale_picture_stops_naming_file_and_mode(tmp_path, capsys):
    path = _save(tmp_path / "gray.png", np.array([[0, 30, 222], [30, 30, 30]], np.uint8))
    line = one_line_exit_2(lambda: decode_mask(path), capsys)
    assert line == (f"Error: PNG frame {path} is a single-channel image (mode L) with 2 different non-zero "
                    "values; a single-channel frame must be a mask (0 = no fire, one non-zero value = fire) "
                    "or an RGB/RGBA viridis frame")


def test_unknown_mode_stops_naming_file_and_mode(tmp_path):
    path = tmp_path / "cmyk.png"  # a JPEG under a .png name
    Image.new("CMYK", (4, 3), (0, 0, 0, 0)).save(path, format="JPEG")
    with pytest.raises(FrameError, match=r"^PNG frame .*cmyk\.png has mode CMYK, which is neither"):
        decode_mask(path)


def test_16bit_frames_of_one_sequence_train_like_rgb(dataset, tmp_path):
    """Sequence 7 rewritten as 16-bit masks: the cache holds the same masks as from RGB frames."""
    root, masks = dataset
    for kind, arr in zip(("fire", "iso"), masks[7]):
        folder = root / ("fire_frames" if kind == "fire" else "isochrones") / FOLDERS[7]
        for t, m in enumerate(arr):
            _save(folder / f"{kind}_{t:03d}.png", m.astype(np.uint16) * 65535)
    out = build_cache(root, tmp_path / "cache", progress=False)
    fire = np.unpackbits(np.load(out / "7_fire.npy"), axis=-1)[..., :5].astype(bool)
    iso = np.unpackbits(np.load(out / "7_iso.npy"), axis=-1)[..., :5].astype(bool)
    np.testing.assert_array_equal(fire, masks[7][0])
    np.testing.assert_array_equal(iso, masks[7][1])


def test_grayscale_picture_sequence_is_skipped_with_skip(dataset, tmp_path, capsys):
    root, _ = dataset
    bad = root / "fire_frames" / FOLDERS[7] / "fire_001.png"
    _save(bad, (np.arange(20, dtype=np.uint8) * 10).reshape(4, 5))
    out = build_cache(root, tmp_path / "cache", on_bad_sequence="skip", progress=False)
    assert cached_ids(out) == [12]
    assert f"WARNING: skipping sequence 7: PNG frame {bad} is a single-channel image (mode L)" \
        in capsys.readouterr().out


APPLEDOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(64)


def test_appledouble_and_hidden_files_are_skipped(dataset, tmp_path):
    root, _ = dataset
    clean = build_cache(root, tmp_path / "clean", progress=False)
    for folder in (root / "fire_frames" / FOLDERS[7], root / "isochrones" / FOLDERS[12]):
        for p in list(folder.iterdir()):
            (folder / f"._{p.name}").write_bytes(APPLEDOUBLE)
    (root / "landscape" / "Weathers" / "._Weather1.csv").write_bytes(APPLEDOUBLE)
    (root / "fire_frames" / "._sequence_007").write_bytes(APPLEDOUBLE)
    (root / "fire_frames" / FOLDERS[7] / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    seqs = {s.seq_id: s for s in reader.list_sequences(root)}
    assert [len(seqs[i].fire_frames) for i in (7, 12)] == [FRAMES[7], FRAMES[12]]
    assert all(not p.name.startswith(".") for s in seqs.values() for p in (*s.fire_frames, *s.iso_frames))
    out = build_cache(root, tmp_path / "cache", progress=False)
    for name in ("7_fire.npy", "12_iso.npy", "7_wind.npy", "static.npy"):
        np.testing.assert_array_equal(np.load(out / name), np.load(clean / name))


# ---------------------------------------------------------------- item 5: failures while building


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()], ids=["error", "interrupt"])
def test_any_failure_while_building_the_cache_removes_the_temp_folder(dataset, tmp_path, monkeypatch, exc):
    root, _ = dataset
    real_save, calls = np.save, []

    def failing_save(path, arr, *a, **k):
        calls.append(path)
        if len(calls) == 2:
            raise exc
        return real_save(path, arr, *a, **k)

    monkeypatch.setattr(cache_mod.np, "save", failing_save)
    with pytest.raises(type(exc)):
        build_cache(root, tmp_path / "cache", progress=False)
    assert len(calls) == 2 and ".tmp" in str(calls[0])
    assert list((tmp_path / "cache").iterdir()) == []
    monkeypatch.undo()
    assert cached_ids(build_cache(root, tmp_path / "cache", progress=False)) == [7, 12]


def test_full_disk_while_building_the_cache_is_one_line(dataset, tmp_path, monkeypatch, capsys):
    root, _ = dataset
    real_save = np.save

    def full_disk(path, arr, *a, **k):
        if str(path).endswith("12_fire.npy"):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_save(path, arr, *a, **k)

    monkeypatch.setattr(cache_mod.np, "save", full_disk)
    cache = tmp_path / "cache"
    line = one_line_exit_2(lambda: build_cache(root, cache, progress=False), capsys)
    # 2 x (3 + 4 frames) of 1-byte rows packed + wind + a float16 raster of 3x12x14, plus headers
    assert line.startswith(f"Error: no space left on the device of {cache} for the decoded cache: "
                           "it needs about 0.0 MB (")
    assert line.endswith(" MB free); free some space or set data.cache_dir to a folder on another disk")
    assert list(cache.iterdir()) == []  # the temporary folder is gone


def test_full_disk_while_generating_synthetic_data_is_one_line(tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"

    def full_disk(root, **kw):
        (Path(root) / "landscape").mkdir(parents=True)
        (Path(root) / "landscape" / "Input_Geotiff.tif").write_bytes(b"x" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(synthetic, "generate", full_disk)
    line = one_line_exit_2(lambda: synthetic.ensure_synthetic(cache, **TINY_SYNTH, progress=False), capsys)
    assert line.startswith(f"Error: no space left on the device of {cache} for the synthetic data set: "
                           "it needs up to ")
    assert line.endswith(" MB free); free some space or set data.cache_dir to a folder on another disk")
    assert list(cache.iterdir()) == []


def test_any_failure_while_generating_synthetic_data_removes_the_temp_folder(tmp_path, monkeypatch):
    cache = tmp_path / "cache"

    def broken(root, **kw):
        (Path(root) / "fire_frames").mkdir(parents=True)
        raise RuntimeError("simulator bug")

    monkeypatch.setattr(synthetic, "generate", broken)
    with pytest.raises(RuntimeError, match="simulator bug"):
        synthetic.ensure_synthetic(cache, **TINY_SYNTH, progress=False)
    assert list(cache.iterdir()) == []


# ---------------------------------------------------------------- item 8: windows that are not lists


BAD_WINDOWS = [5, [None, 1, 2, 3], "abc", [1, 5, 2], [1, 5, 2, 7, 9], [1.5, 5, 2, 7], [True, 5, 2, 7],
               {"y0": 1}, ["1", "5", "2", "7"]]


@pytest.mark.parametrize("window", BAD_WINDOWS, ids=[json.dumps(w) for w in BAD_WINDOWS])
def test_window_that_is_not_4_ints_names_the_sequence(dataset, tmp_path, window, capsys):
    root, _ = dataset
    path = root / "landscape" / "indices.json"
    path.write_text(json.dumps({"7": window, "12": WINDOWS[12]}))
    line = one_line_exit_2(lambda: build_cache(root, tmp_path / "cache", progress=False), capsys)
    assert line == (f"Error: sequence 7: crop window {json.dumps(window)} in {path} must be a list of "
                    "4 integers [y0, y1, x0, x1]")
    out = build_cache(root, tmp_path / "cache", on_bad_sequence="skip", progress=False)
    assert cached_ids(out) == [12]
    assert f"WARNING: skipping sequence 7: crop window {json.dumps(window)}" in capsys.readouterr().out


def test_integral_float_window_is_read(dataset):
    root, _ = dataset
    (root / "landscape" / "indices.json").write_text(json.dumps({"7": [1.0, 5.0, 2, 7], "12": WINDOWS[12]}))
    assert reader.list_sequences(root)[0].window == (1, 5, 2, 7)


def test_indices_json_that_is_not_an_object(dataset):
    root, _ = dataset
    (root / "landscape" / "indices.json").write_text(json.dumps([WINDOWS[7], WINDOWS[12]]))
    with pytest.raises(DataError, match=r"indices\.json must be a JSON object mapping sequence ids to "
                                        r"\[y0, y1, x0, x1\], got a list$"):
        reader.list_sequences(root)


# ---------------------------------------------------------------- item 9: damaged caches


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[:-7])


def _garble_index(p: Path) -> None:
    data = json.loads(p.read_text())
    data["sequences"][0]["frames"] += 1
    p.write_text(json.dumps(data))


DAMAGE = {
    "truncated-npy": ("7_fire.npy", _truncate, r"7_fire\.npy is \d+ bytes, \d+ when it was written"),
    "missing-npy": ("12_iso.npy", Path.unlink, r"12_iso\.npy is missing"),
    "emptied-index": ("index.json", lambda p: p.write_text(""), r"index\.json is not valid JSON \(Expecting value"),
    "garbled-index": ("index.json", _garble_index, r"index\.json does not match its checksum"),
    "missing-index": ("index.json", Path.unlink, r"index\.json is missing"),
    "truncated-static": ("static.npy", _truncate, r"static\.npy is \d+ bytes"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_cache_is_detected_and_rebuilt_with_a_notice(dataset, tmp_path, damage, capsys):
    root, _ = dataset
    cache = tmp_path / "cache"
    out = build_cache(root, cache, progress=False)
    good = tree_hashes(out)
    name, harm, reason = DAMAGE[damage]
    harm(out / name)
    with pytest.raises(CacheError, match=rf"^decoded cache {out} is damaged: {reason}"):
        FireSamples(out, [7, 12])
    capsys.readouterr()
    assert build_cache(root, cache, progress=False) == out
    notice = capsys.readouterr().out.strip().splitlines()
    assert len(notice) == 1
    assert notice[0].startswith(f"Note: decoded cache {out} is damaged: ")
    assert notice[0].endswith("; rebuilding it")
    assert tree_hashes(out) == good  # rebuilt exactly as it was
    assert [p.name for p in cache.iterdir()] == [out.name]  # nothing left aside
    assert len(FireSamples(out, [7, 12])) == (3 - 1) + (4 - 1)
    capsys.readouterr()
    build_cache(root, cache, progress=False)
    assert capsys.readouterr().out == ""  # an intact cache is reused silently


def test_read_index(dataset, tmp_path):
    root, _ = dataset
    out = build_cache(root, tmp_path / "cache", progress=False)
    index = read_index(out)
    assert index.path == out and index.root == root and index.static_channels == 3
    assert list(index.sequences) == [7, 12] and index.skipped == ()
    s7 = index.sequences[7]
    assert (s7.id, s7.frames, s7.height, s7.width, s7.window) == (7, 3, 4, 5, (1, 5, 2, 7))
    assert index.wind_min == (0.0, 0.0) and index.wind_max == (40.0, 360.0)
    assert set(index.files) == {"static.npy", *(f"{i}_{k}.npy" for i in (7, 12) for k in ("fire", "iso", "wind"))}
    assert index.files["7_fire.npy"] == (out / "7_fire.npy").stat().st_size


def test_synthetic_data_set_missing_a_frame_is_regenerated(tmp_path, capsys):
    cache = tmp_path / "cache"
    root = synthetic.ensure_synthetic(cache, **TINY_SYNTH, progress=False)
    good = tree_hashes(root)
    frame = next((root / "fire_frames").glob("sequence_*/fire_001.png"))
    frame.unlink()
    capsys.readouterr()
    assert synthetic.ensure_synthetic(cache, **TINY_SYNTH, progress=False) == root
    rel = frame.relative_to(root).as_posix()
    assert capsys.readouterr().out.strip() == (f"Note: synthetic data set {root} is damaged ({rel} is missing); "
                                               "generating it again")
    assert tree_hashes(root) == good
    assert [p.name for p in cache.iterdir()] == [root.name]
    # an older data set without a file list is generated again too
    settings = root / "settings.json"
    settings.write_text(json.dumps({k: v for k, v in json.loads(settings.read_text()).items() if k != "files"}))
    synthetic.ensure_synthetic(cache, **TINY_SYNTH, progress=False)
    assert "settings.json has no file list" in capsys.readouterr().out
    assert tree_hashes(root) == good


# ---------------------------------------------------------------- item 10: CSV dialects


@pytest.mark.parametrize("encoded", [
    "\ufeffWS,WD,Temp\n10,90,20\n20,180,21\n5,270,22\n".encode("utf-8"),
    "WS;WD;Temp\n10;90;20,5\n20;180;21,5\n5;270;22,5\n".encode(),
    "Temp;WS;WD\n20,5;10,0;90\n21,5;20;180\n22,5;5;270\n".encode(),  # decimal commas
    "Time\tWD\tWS\n0\t90\t10\n1\t180\t20\n2\t270\t5\n".encode(),
    "Temp (°C),WD,WS\n20,90,10\n21,180,20\n22,270,5\n".encode("latin-1"),
    "Temp (°C),WS,WD\n20,10,90\n21,20,180\n22,5,270\n".encode("utf-16"),
    '"WS","WD"\r\n"10","90"\r\n"20","180"\r\n"5","270"\r\n\r\n'.encode(),
], ids=["utf8-bom", "semicolon", "semicolon-decimal-comma", "tab", "latin1", "utf16", "quoted-crlf"])
def test_weather_csv_dialects_are_read(dataset, tmp_path, encoded):
    root, _ = dataset
    path = root / "landscape" / "Weathers" / "Weather1.csv"
    path.write_bytes(encoded)
    np.testing.assert_array_equal(reader.read_weather(path), [[10, 90], [20, 180], [5, 270]])
    out = build_cache(root, tmp_path / "cache", progress=False)
    np.testing.assert_allclose(np.load(out / "7_wind.npy"), WIND7, rtol=1e-6, atol=1e-7)


def test_weather_history_and_indices_with_bom_or_latin1_are_read(dataset):
    root, _ = dataset
    land = root / "landscape"
    lines = land.joinpath("WeatherHistory.csv").read_text().splitlines()
    lines[0] = "Weathers/Été.csv"
    land.joinpath("WeatherHistory.csv").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    indices = json.dumps({str(k): v for k, v in WINDOWS.items()})
    land.joinpath("indices.json").write_bytes(b"\xef\xbb\xbf" + indices.encode())
    assert [s.seq_id for s in reader.list_sequences(root)] == [7, 12]


def test_unreadable_weather_file_names_the_file_and_the_problem(dataset, tmp_path, capsys):
    root, _ = dataset
    path = root / "landscape" / "Weathers" / "Weather1.csv"
    path.write_bytes(bytes(range(256)) * 4)
    line = one_line_exit_2(lambda: build_cache(root, tmp_path / "cache", progress=False), capsys)
    assert line.startswith(f"Error: sequence 7: weather file {path} ")
    assert len(line) < 400


def test_non_numeric_weather_value_names_line_and_column(dataset):
    root, _ = dataset
    path = root / "landscape" / "Weathers" / "Weather1.csv"
    path.write_text("WS,WD\n10,90\n20,north\n")
    with pytest.raises(DataError, match=r"Weather1\.csv: line 3, column WD: non-numeric value 'north'$"):
        reader.read_weather(path)


# ---------------------------------------------------------------- the CLI: one line, exit 2


def _nan_weather(root: Path) -> None:
    (root / "landscape" / "Weathers" / "Weather1.csv").write_text("WS,WD\n10,90\nnan,180\n5,270\n")


def _int_window(root: Path) -> None:
    (root / "landscape" / "indices.json").write_text(json.dumps({"7": 5, "12": WINDOWS[12]}))


def _geotiff_4d(root: Path) -> None:
    tifffile.imwrite(root / "landscape" / "Input_Geotiff.tif", np.zeros((2, 3, 12, 14), np.float32),
                     photometric="minisblack")


def _gray_picture(root: Path) -> None:
    _save(root / "fire_frames" / FOLDERS[12] / "fire_002.png", (np.arange(30, dtype=np.uint8) * 8).reshape(5, 6))


@pytest.mark.parametrize("fault,message", [
    (_nan_weather, "Error: sequence 7: weather file {root}/landscape/Weathers/Weather1.csv: line 3, column WS: "
                   "value nan is not a finite number in [0, 1000]"),
    (_int_window, "Error: sequence 7: crop window 5 in {root}/landscape/indices.json must be a list of 4 integers "
                  "[y0, y1, x0, x1]"),
    (_geotiff_4d, "Error: GeoTIFF {root}/landscape/Input_Geotiff.tif has shape [2, 3, 12, 14]; expected one 2-D "
                  "band [Y, X] or bands [C, Y, X] / [Y, X, C]"),
    (_gray_picture, "Error: sequence 12: PNG frame {root}/fire_frames/sequence_0012/fire_002.png is a "
                    "single-channel image (mode L) with 29 different non-zero values;"),
], ids=["nan-weather", "int-window", "4d-geotiff", "gray-picture"])
def test_cli_data_fault_is_one_line_exit_2(tmp_path, fault, message):
    root = tmp_path / "data"
    make_dataset(root)
    fault(root)
    before = tree_hashes(root)
    proc = run_app("train", ["data=deep_crown", f"data.root={root}", f"data.cache_dir={tmp_path / 'cache'}",
                             "data.progress=false", "logger=none", "hardware=cpu"], tmp_path / "run")
    line = one_line_error(proc)  # exit code 2, one line, no traceback
    assert line.startswith(message.format(root=root)), line
    assert "Traceback" not in proc.stdout
    assert tree_hashes(root) == before  # the user's files are untouched
    no_temp_left(tmp_path / "cache")


# ---------------------------------------------------------------- item 5: folders left by a killed build


def _dead_pid() -> int:
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid -= 1


def _old(folder: Path, age_s: float) -> Path:
    folder.mkdir()
    (folder / "x.npy").write_bytes(b"x" * 100)
    t = time.time() - age_s
    os.utime(folder, (t, t))
    return folder


def test_temp_folders_of_killed_builds_are_removed_once_stale(dataset, tmp_path, capsys):
    root, _ = dataset
    cache = tmp_path / "cache"
    cache.mkdir()
    dead = _dead_pid()
    stale = _old(cache / f"decoded-0123abcd.tmp{dead}", 2 * 3600)
    stale_aside = _old(cache / f".decoded-0123abcd.old{dead}-abcdef12", 2 * 3600)
    recent = _old(cache / f"decoded-0123abcd.tmp{dead - 1}", 60)          # may still be another host's build
    live = _old(cache / f"decoded-0123abcd.tmp{os.getppid()}", 2 * 3600)  # its process is running
    out = build_cache(root, cache, progress=False)
    notes = capsys.readouterr().out.strip().splitlines()
    assert sorted(notes) == sorted(f"Note: removed {p}, left by an interrupted build" for p in (stale, stale_aside))
    assert sorted(p.name for p in cache.iterdir()) == sorted([out.name, recent.name, live.name])

    synth = tmp_path / "synth"
    synth.mkdir()
    left = _old(synth / f".synthetic-0123456789ab.{dead}-abcdef12.tmp", 2 * 3600)
    made = synthetic.ensure_synthetic(synth, **TINY_SYNTH, progress=False)
    assert capsys.readouterr().out.strip() == f"Note: removed {left}, left by an interrupted build"
    assert [p.name for p in synth.iterdir()] == [made.name]
