"""Faults of issue 18 in the data reader and at the command line (items 4, 9 and 10).

* item 4: frames are ordered by their number whatever the zero padding; two frames or two
  sequence folders with one number are an error naming both;
* item 10: NaN terrain cells do not move the min-max range of their band (and bands without them
  come out exactly as before); a blank line inside WeatherHistory.csv is refused, never shifted;
* item 9: an unreadable indices.json, a run folder Hydra cannot create, a key copy-last does not
  have, and Ctrl-C during the built-in data's simulation (or the decoding of real data) are one line
  each (exit 2; 130 for Ctrl-C), with the user's files and any finished data untouched.

The data set is test_reader's: sequences 7 (Weather1.csv, 3 frames of 4x5) and 12
(Weather2.csv, 4 frames of 5x6), with a 12-line WeatherHistory.csv.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import tifffile
from hydra.errors import ConfigCompositionException

from conftest import compose_config, one_line_error, run_app, run_module
from emberformer.cli.checks import missing_key_message
from emberformer.cli.errors import user_errors
from emberformer.data import cache as cache_mod
from emberformer.data import reader, synthetic
from emberformer.data.cache import build_cache, read_index
from emberformer.data.reader import DataError
from test_data_faults import TINY_SYNTH, dataset  # noqa: F401 (dataset: the fixture of a tiny real-layout folder)
from test_reader import FOLDERS, make_dataset, make_masks, make_raster, render, write_png



def tree_hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def unpacked(out: Path, name: str, width: int) -> np.ndarray:
    return np.unpackbits(np.load(out / name), axis=-1)[..., :width].astype(bool)


def train_args(root: Path, cache: Path, *extra: str) -> list[str]:
    return ["data=deep_crown", f"data.root={root}", f"data.cache_dir={cache}", "data.progress=false",
            "logger=none", "hardware=cpu", *extra]


# ---------------------------------------------------------------- item 4: frame and folder numbers


def _unpadded_sequence_7(root: Path, n: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Sequence 7 again with n frames named fire_0.png ... fire_11.png (no zero padding)."""
    fire, iso = make_masks(70, n, (4, 5)), make_masks(170, n, (4, 5))
    rng = np.random.default_rng(0)
    for kind, arr in (("fire", fire), ("iso", iso)):
        folder = root / ("fire_frames" if kind == "fire" else "isochrones") / FOLDERS[7]
        for p in folder.iterdir():
            p.unlink()
        for t, m in enumerate(arr):
            write_png(folder / f"{kind}_{t}.png", render(m, rgba=False, rng=rng))
    rows = "".join(f"{t},{90 + t},20,{t + 1}\n" for t in range(n))
    (root / "landscape" / "Weathers" / "Weather1.csv").write_text("Time,WD,Temp,WS\n" + rows)
    return fire, iso


def test_unpadded_frames_are_read_in_the_order_of_their_numbers(dataset, tmp_path):
    root, _ = dataset
    fire, iso = _unpadded_sequence_7(root)
    seq = {s.seq_id: s for s in reader.list_sequences(root)}[7]
    assert [p.name for p in seq.fire_frames] == [f"fire_{t}.png" for t in range(12)]  # not fire_0, fire_1, fire_10
    assert [p.name for p in seq.iso_frames] == [f"iso_{t}.png" for t in range(12)]
    out = build_cache(root, tmp_path / "cache", progress=False)
    np.testing.assert_array_equal(unpacked(out, "7_fire.npy", 5), fire)
    np.testing.assert_array_equal(unpacked(out, "7_iso.npy", 5), iso)


def test_zero_padded_frames_keep_their_order(dataset):
    root, _ = dataset
    seq = {s.seq_id: s for s in reader.list_sequences(root)}[12]
    assert [p.name for p in seq.fire_frames] == [f"fire_{t:03d}.png" for t in range(4)]


def test_two_frames_with_one_number_are_an_error_naming_both(dataset, tmp_path, capsys):
    root, _ = dataset
    folder = root / "fire_frames" / FOLDERS[12]
    (folder / "fire_2.png").write_bytes((folder / "fire_002.png").read_bytes())
    with pytest.raises(DataError) as e:
        reader.list_sequences(root)
    assert str(e.value) == (f"sequence 12: {folder / 'fire_002.png'} and {folder / 'fire_2.png'} are the same "
                            "frame (the same number, padded differently); remove one of them")
    out = build_cache(root, tmp_path / "cache", on_bad_sequence="skip", progress=False)
    assert f"WARNING: skipping {e.value}" in capsys.readouterr().out
    assert list(read_index(out).sequences) == [7]


def test_two_sequence_folders_with_one_number_are_an_error_naming_both(dataset, tmp_path, capsys):
    root, _ = dataset
    for top in ("fire_frames", "isochrones"):
        src = root / top / FOLDERS[7]
        dst = root / top / "sequence_7"
        dst.mkdir()
        for p in src.iterdir():
            (dst / p.name).write_bytes(p.read_bytes())
    with pytest.raises(DataError) as e:
        reader.list_sequences(root)
    assert str(e.value) == (f"sequence 7: folders sequence_007 and sequence_7 in {root / 'fire_frames'} are both "
                            "sequence 7 (the same number, padded differently); remove one of them")
    out = build_cache(root, tmp_path / "cache", on_bad_sequence="skip", progress=False)
    assert f"WARNING: skipping {e.value}" in capsys.readouterr().out
    assert list(read_index(out).sequences) == [12]


# ---------------------------------------------------------------- item 10: NaN terrain cells


def landscape_as_before(raster: np.ndarray) -> np.ndarray:
    """What the reader made of a raster without NaN cells before issue 18 (the original rule):
    -9999 -> -1, {0,1} and {-1,1} bands kept, every other band min-max scaled."""
    r = raster.astype(np.float32).copy()
    r[r == -9999.0] = -1.0
    for b in range(r.shape[0]):
        band = r[b]
        if set(np.unique(band).tolist()) in ({0.0, 1.0}, {-1.0, 1.0}):
            continue
        lo, hi = float(band.min()), float(band.max())
        r[b] = (band - lo) / (hi - lo) if hi > lo else 0.0
    return r


def _write_tif(root: Path, raster: np.ndarray) -> None:
    tifffile.imwrite(root / "landscape" / "Input_Geotiff.tif", raster, photometric="minisblack",
                     planarconfig="separate")


def test_nan_cells_do_not_move_the_range_of_the_real_values(tmp_path, capsys):
    root = tmp_path / "data"
    make_dataset(root)
    raster = make_raster()
    raster[0, 0, 0] = 2.0            # band 1 without its -9999: real values 2 .. 85.5
    raster[0, 3, 4] = raster[0, 5, 6] = np.nan
    raster[1, 2, 2] = np.inf         # the {0,1} band
    _write_tif(root, raster)
    r = reader.read_landscape(root)
    assert capsys.readouterr().out.strip().splitlines() == [
        f"Note: {root / 'landscape' / 'Input_Geotiff.tif'}: missing (NaN/infinite) values in band 1 of 3: "
        "2 cell(s); band 2 of 3: 1 cell(s); left out of each band's normalisation and set to its lowest value"]
    real = np.isfinite(raster[0])
    np.testing.assert_allclose(r[0][real], (raster[0][real] - 2.0) / 83.5, rtol=1e-6, atol=1e-7)
    assert r[0][real].min() == 0.0 and r[0][real].max() == 1.0   # the real values span [0, 1] (was [0.5, 1])
    assert r[0, 3, 4] == r[0, 5, 6] == 0.0                         # filled after, with the band's lowest value
    assert set(np.unique(r[1]).tolist()) == {0.0, 1.0} and r[1, 2, 2] == 0.0  # still a {0,1} band
    np.testing.assert_array_equal(r[2], landscape_as_before(raster[2:])[0])   # the band without NaN: as before


def test_bands_without_nan_come_out_exactly_as_before(tmp_path, capsys):
    root = tmp_path / "data"
    make_dataset(root)
    np.testing.assert_array_equal(reader.read_landscape(root), landscape_as_before(make_raster()))
    # seed 0 and a 256-pixel raster: the terrain of the default built-in data set (README's figures)
    synth = synthetic.ensure_synthetic(tmp_path / "synth", **TINY_SYNTH, progress=False)
    raw = tifffile.imread(synth / "landscape" / "Input_Geotiff.tif")
    assert np.isfinite(raw).all()
    np.testing.assert_array_equal(reader.read_landscape(synth), landscape_as_before(raw))  # bit for bit
    assert "Note:" not in capsys.readouterr().out


def test_a_band_of_nan_only_is_zero(tmp_path):
    root = tmp_path / "data"
    make_dataset(root)
    raster = make_raster()
    raster[1] = np.nan
    _write_tif(root, raster)
    r = reader.read_landscape(root)
    assert (r[1] == 0).all() and np.isfinite(r).all()


# ---------------------------------------------------------------- item 10: blank lines in WeatherHistory.csv


def _history_with_blank_line(root: Path) -> Path:
    """Line 11 names Weather1.csv, line 12 (sequence 12's) Weather2.csv; then a blank line
    goes in as line 3, so that lines 4 .. 13 hold what lines 3 .. 12 held."""
    path = root / "landscape" / "WeatherHistory.csv"
    lines = path.read_text().splitlines()
    lines[10] = "Weathers/Weather1.csv"
    lines.insert(2, "")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("mode", ["error", "skip"])
def test_a_blank_line_in_weather_history_is_refused_not_shifted(dataset, tmp_path, mode):
    root, _ = dataset
    path = _history_with_blank_line(root)
    # before: sequence 7 (line 7: a missing file) was skipped and sequence 12 silently given
    # Weather1.csv, the file of line 11
    with pytest.raises(DataError) as e:
        build_cache(root, tmp_path / "cache", on_bad_sequence=mode, progress=False)
    assert str(e.value) == (f"{path}: line 3 is blank but later lines name weather files; line k names the "
                            "weather file of sequence k, so a blank line would shift the weather of every later "
                            "sequence: delete it, or name the weather file of sequence 3 on it")
    assert not (tmp_path / "cache").exists() or list((tmp_path / "cache").iterdir()) == []


def test_blank_lines_at_the_end_and_crlf_are_read(dataset):
    root, _ = dataset
    path = root / "landscape" / "WeatherHistory.csv"
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n") + b"\r\n  \r\n")
    seqs = {s.seq_id: s.weather_file.name for s in reader.list_sequences(root)}
    assert seqs == {7: "Weather1.csv", 12: "Weather2.csv"}


def test_a_form_feed_does_not_split_a_line(dataset):
    root, _ = dataset
    path = root / "landscape" / "WeatherHistory.csv"
    lines = path.read_text().splitlines()
    lines[2] = "Weathers/Unused3.csv\x0c"  # str.splitlines would make this two lines
    path.write_text("\n".join(lines) + "\n")
    assert {s.seq_id: s.weather_file.name for s in reader.list_sequences(root)}[12] == "Weather2.csv"


def test_cli_blank_history_line_with_skip_is_one_line_exit_2(tmp_path):
    root = tmp_path / "data"
    make_dataset(root)
    path = _history_with_blank_line(root)
    before = tree_hashes(root)
    proc = run_app("train", train_args(root, tmp_path / "cache", "data.on_bad_sequence=skip"), tmp_path / "run")
    assert one_line_error(proc).startswith(f"Error: {path}: line 3 is blank but later lines name weather files;")
    assert tree_hashes(root) == before


# ---------------------------------------------------------------- item 9: one line, not a traceback


def without_root_powers() -> Callable[[], None] | None:
    """A preexec_fn under which file permissions bind a child run by root too.

    Root reads a chmod 000 file and writes into a chmod 555 folder (CAP_DAC_OVERRIDE), so a
    chmod test would pass without testing anything. The child drops CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH from its capability bounding set before exec (prctl PR_CAPBSET_DROP),
    so the python it execs has neither. Not root: nothing to drop (None).
    """
    if os.geteuid() != 0:
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def drop() -> None:
        for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
            if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")
    return drop


def run_unprivileged(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    """``python ARGS`` without root's file powers (a real process: the capabilities are the point)."""
    return run_module(None, args, env, cwd, timeout=240, preexec_fn=without_root_powers())


def check_really_denied(code: str, env: dict, cwd: Path) -> None:
    """The mechanism works here: the same child gets PermissionError from ``code``."""
    try:
        probe = run_unprivileged(["-c", code], env, cwd)
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"cannot take root's file powers away here ({e})")
    assert "PermissionError" in probe.stderr, probe.stderr


@pytest.mark.slow
def test_cli_unreadable_indices_json_is_one_line_naming_it(tmp_path, run_env):
    root = tmp_path / "data"
    make_dataset(root)
    indices = root / "landscape" / "indices.json"
    indices.chmod(0)
    check_really_denied(f"open({str(indices)!r}).read()", run_env, tmp_path)
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    proc = run_unprivileged(["-m", "emberformer.train", *train_args(root, tmp_path / "cache")], run_env,
                            tmp_path / "run")
    indices.chmod(0o644)
    assert one_line_error(proc) == f"Error: cannot read {indices}: Permission denied"
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before
    assert not (tmp_path / "cache").exists() or list((tmp_path / "cache").iterdir()) == []


@pytest.mark.slow
def test_cli_run_folder_in_a_read_only_folder_is_one_line_naming_it(tmp_path, run_env):
    ro = tmp_path / "read_only"
    ro.mkdir()
    ro.chmod(0o555)
    check_really_denied(f"import os; os.mkdir({str(ro / 'probe')!r})", run_env, tmp_path)
    proc = run_unprivileged(["-m", "emberformer.train", "debug=fast", "logger=none",
                             f"hydra.run.dir={ro / 'run'}"], run_env, tmp_path / "cwd")
    ro.chmod(0o755)
    assert one_line_error(proc) == (f"Error: hydra.run.dir {ro / 'run'}: cannot create the run folder there "
                                    f"(Permission denied); give a folder you can write to")
    assert list(ro.iterdir()) == []


def test_cli_run_folder_under_a_file_is_one_line_naming_it(tmp_path):
    (tmp_path / "a_file").write_text("x")
    proc = run_app("train", ["debug=fast", "logger=none", f"hydra.run.dir={tmp_path / 'a_file' / 'run'}"],
                   tmp_path / "cwd")
    assert one_line_error(proc) == (f"Error: hydra.run.dir {tmp_path / 'a_file' / 'run'}: cannot create the run "
                                    "folder there (Not a directory); give a folder you can write to")
    assert (tmp_path / "a_file").read_text() == "x"


def test_cli_key_copy_last_does_not_have_lists_its_settings(tmp_path):
    proc = run_app("train", ["model=copy_last", "model.d_model=32", "logger=none"], tmp_path)
    assert one_line_error(proc) == ("Error: model.d_model is not a setting of model=copy_last; its settings: "
                                    "confidence (+model.confidence=...: not in its config file, so with a "
                                    "leading +)")
    assert list(tmp_path.iterdir()) == []  # refused before Hydra made a run folder


def test_missing_key_messages_in_process():
    """The same message for other nodes, and the one for a setting the YAML file leaves out."""
    def message(*overrides: str) -> str | None:
        with pytest.raises(ConfigCompositionException) as e:
            compose_config(*overrides)
        return missing_key_message(e.value, list(overrides), "train")

    assert message("model=copy_last", "model.confidence=3") == (
        "model.confidence is a setting of model=copy_last that its config file leaves out: add it with "
        "+model.confidence=3")
    assert message("trainer.epoch=3") == (
        "trainer.epoch is not a setting of trainer; its settings: ceiling_samples, epochs, evaluate_test, "
        "limit_batches, log_metrics_every, pred_thresh, preview_samples, progress, seed")
    assert message("data.sizee=4").startswith("data.sizee is not a setting of data=synthetic; its settings: "
                                              "cache_dir, max_frames, max_history, num_sequences,")


@pytest.mark.slow
def test_cli_ctrl_c_during_the_simulation_is_one_line_exit_130(tmp_path, run_env):
    cache = tmp_path / "cache"
    done = synthetic.ensure_synthetic(cache, **TINY_SYNTH, progress=False)  # a finished data set
    before = tree_hashes(cache)
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "emberformer.train", "data.num_sequences=400", f"data.cache_dir={cache}",
         "data.progress=false", "logger=none", "hardware=cpu", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as from a shell, whatever pytest's state
    try:
        deadline = time.time() + 180
        while not list(cache.glob(".synthetic-*.tmp/fire_frames/sequence_*")):  # simulating
            assert proc.poll() is None and time.time() < deadline, "the simulation did not start"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err + out and "KeyboardInterrupt" not in err + out
    assert err.strip().splitlines() == [
        "Interrupted while generating the built-in data set; nothing was harmed: the partly built copy was "
        f"removed, the finished data sets in {cache} are as they were (the next run generates it again)"]
    assert sorted(p.name for p in cache.iterdir()) == [done.name]  # the partly built copy is gone
    assert tree_hashes(cache) == before
    assert '"status": "stopped"' in (run_dir / "result.json").read_text()


def test_ctrl_c_while_decoding_real_data_is_one_line_exit_130(dataset, tmp_path, monkeypatch, capsys):
    root, _ = dataset
    cache = tmp_path / "cache"
    done = build_cache(root, cache, progress=False)
    (root / "landscape" / "Weathers" / "Weather3.csv").write_text("WS,WD\n1,2\n")  # a new cache is due
    before = tree_hashes(cache)
    real_save = np.save

    def interrupted(path, arr, *a, **k):
        if str(path).endswith("12_fire.npy"):
            raise KeyboardInterrupt  # what Ctrl-C raises in the middle of the decoding
        return real_save(path, arr, *a, **k)

    monkeypatch.setattr(cache_mod.np, "save", interrupted)
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        with user_errors():
            build_cache(root, cache, progress=False)
    assert e.value.code == 130
    assert capsys.readouterr().err.strip().splitlines() == [
        f"Interrupted while decoding {root} into the cache; nothing was harmed: the partly built cache was "
        f"removed, {root} and the finished caches in {cache} are as they were (the next run decodes it again)"]
    assert [p.name for p in cache.iterdir()] == [done.name] and tree_hashes(cache) == before
