"""Early stopping on scripted metric series."""
from __future__ import annotations

import math

import pytest

from emberformer.training.early_stopping import MONITORABLE, EarlyStopping, check_monitor


def run(es: EarlyStopping, series, key=None):
    """Feed epochs 1.. until should_stop; return (stop epoch or None, is_best flags)."""
    key = key or es.monitor
    flags = []
    for epoch, value in enumerate(series, start=1):
        metrics = value if isinstance(value, dict) else {key: value}
        flags.append(es.step(epoch, metrics))
        if es.should_stop:
            return epoch, flags
    return None, flags


def test_max_mode_patience_3_stops_at_right_epoch():
    es = EarlyStopping(patience=3, monitor="val/f1", mode="max", min_delta=0.0)
    series = [0.1, 0.3, 0.2, 0.4, 0.35, 0.39, 0.38, 0.9, 0.95]
    stop, flags = run(es, series)
    assert stop == 7
    assert flags == [True, True, False, True, False, False, False]
    assert es.best_epoch == 4
    assert es.best_value == 0.4
    assert es.counter == 3
    assert es.stop_reason == "patience"


def test_not_stopped_one_epoch_early():
    es = EarlyStopping(patience=3, min_delta=0.0)
    stop, _ = run(es, [0.5, 0.4, 0.4])
    assert stop is None
    assert not es.should_stop and es.stop_reason is None
    assert es.counter == 2


def test_min_delta_small_improvement_does_not_count():
    es = EarlyStopping(patience=3, monitor="val/f1", mode="max", min_delta=0.001)
    # 0.6005 is better than 0.6 but by less than min_delta
    stop, flags = run(es, [0.5, 0.6, 0.6005, 0.6009, 0.6008, 0.99])
    assert stop == 5
    assert flags == [True, True, False, False, False]
    assert (es.best_epoch, es.best_value) == (2, 0.6)


def test_min_delta_large_enough_improvement_counts():
    es = EarlyStopping(patience=2, min_delta=0.001)
    stop, flags = run(es, [0.5, 0.5015, 0.502, 0.503])
    assert flags == [True, True, False, True]
    assert stop is None
    assert (es.best_epoch, es.best_value) == (4, 0.503)


def test_min_mode():
    es = EarlyStopping(patience=2, monitor="val/loss", mode="min", min_delta=0.02)
    stop, flags = run(es, [1.0, 0.8, 0.85, 0.79, 0.1])
    # 0.79 is not below 0.8 - 0.02
    assert stop == 4
    assert flags == [True, True, False, False]
    assert (es.best_epoch, es.best_value) == (2, 0.8)
    assert es.stop_reason == "patience"


def test_min_mode_initial_best_is_inf():
    es = EarlyStopping(monitor="train/loss", mode="min")
    assert es.best_value == math.inf
    assert EarlyStopping(mode="max").best_value == -math.inf


def test_disabled_never_stops_but_tracks_best():
    es = EarlyStopping(enabled=False, patience=1, monitor="val/iou", mode="max", min_delta=0.0,
                       targets={"val/iou": 0.1})
    stop, flags = run(es, [0.3, 0.7, 0.6, 0.5, 0.4, 0.2, 0.1])
    assert stop is None
    assert es.stop_reason is None and not es.should_stop
    assert (es.best_epoch, es.best_value) == (2, 0.7)
    assert flags == [True, True, False, False, False, False, False]
    assert es.counter == 5
    assert es.describe() == "disabled (best checkpoint by val/iou, max)"


def test_targets_stop_only_when_all_reached():
    es = EarlyStopping(patience=100, monitor="val/f1", targets={"val/f1": 0.8, "val/iou": 0.7})
    series = [
        {"val/f1": 0.85, "val/iou": 0.6},
        {"val/f1": 0.79, "val/iou": 0.75},
        {"val/f1": 0.80, "val/iou": 0.70},   # both reached exactly (>=)
        {"val/f1": 0.99, "val/iou": 0.99},
    ]
    stop, flags = run(es, series)
    assert stop == 3
    assert es.stop_reason == "targets"
    assert flags == [True, False, False]
    assert (es.best_epoch, es.best_value) == (1, 0.85)


def test_loss_target_is_upper_bound():
    es = EarlyStopping(patience=100, monitor="val/loss", mode="min",
                       targets={"val/loss": 0.2, "val/f1": 0.5})
    stop, _ = run(es, [{"val/loss": 0.3, "val/f1": 0.9},
                       {"val/loss": 0.2, "val/f1": 0.4},
                       {"val/loss": 0.19, "val/f1": 0.5}])
    assert stop == 3 and es.stop_reason == "targets"


def test_targets_take_precedence_over_patience():
    es = EarlyStopping(patience=1, targets={"val/f1": 0.5})
    stop, _ = run(es, [0.6])  # first epoch is an improvement, targets reached
    assert stop == 1 and es.stop_reason == "targets"
    es = EarlyStopping(patience=1, targets={"val/f1": 0.5})
    stop, _ = run(es, [0.4, 0.3])
    assert stop == 2 and es.stop_reason == "patience"


def test_nan_counts_as_no_improvement():
    es = EarlyStopping(patience=2, min_delta=0.0)
    stop, flags = run(es, [0.5, math.nan, math.nan])
    assert flags == [True, False, False]
    assert stop == 3
    assert es.best_value == 0.5


def test_describe_enabled():
    es = EarlyStopping(patience=3, monitor="val/f1", targets={"val/f1": 0.8, "val/iou": 0.7})
    assert es.describe() == "enabled (patience=3, monitor=val/f1) targets val/f1=0.8, val/iou=0.7"
    assert EarlyStopping(patience=5).describe() == "enabled (patience=5, monitor=val/f1)"


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("key", ["val/foo", "test/f1", "f1", "val/", "val/growth_ap"])
def test_unknown_monitor_rejected(key):
    with pytest.raises(ValueError, match=rf"early_stopping\.monitor={key!r} is not a known metric"):
        EarlyStopping(monitor=key)


def test_unknown_target_key_rejected():
    with pytest.raises(ValueError, match=r"early_stopping\.targets key='val/bar' is not a known metric"):
        EarlyStopping(targets={"val/f1": 0.5, "val/bar": 1.0})


def test_error_lists_allowed_metrics():
    with pytest.raises(ValueError) as e:
        check_monitor("val/nope")
    for m in MONITORABLE:
        assert f"val/{m}" in str(e.value)


@pytest.mark.parametrize("key", [f"{s}/{m}" for s in ("train", "val") for m in MONITORABLE])
def test_all_known_monitors_accepted(key):
    assert check_monitor(key) == key
    assert EarlyStopping(monitor=key).monitor == key


def test_bad_mode_rejected():
    with pytest.raises(ValueError, match=r"early_stopping\.mode must be 'min' or 'max', got 'maximum'"):
        EarlyStopping(mode="maximum")


@pytest.mark.parametrize("patience", [0, -1])
def test_bad_patience_rejected(patience):
    with pytest.raises(ValueError, match=rf"early_stopping\.patience must be >= 1, got {patience}"):
        EarlyStopping(patience=patience)


def test_negative_min_delta_rejected():
    with pytest.raises(ValueError, match=r"early_stopping\.min_delta must be >= 0, got -0\.1"):
        EarlyStopping(min_delta=-0.1)


# ---------------------------------------------------------------- state


def test_state_dict_round_trip_resumes_identically():
    series = [0.2, 0.5, 0.45, 0.44, 0.43, 0.6]
    a = EarlyStopping(patience=3, min_delta=0.0)
    run(a, series[:3])
    state = a.state_dict()
    assert state == {"best_value": 0.5, "best_epoch": 2, "counter": 1, "stop_reason": None}

    b = EarlyStopping(patience=3, min_delta=0.0)
    b.load_state_dict(state)
    assert b.state_dict() == state
    for epoch in (4, 5):
        assert a.step(epoch, {"val/f1": series[epoch - 1]}) == b.step(epoch, {"val/f1": series[epoch - 1]})
    assert b.should_stop and b.stop_reason == "patience"
    assert a.state_dict() == b.state_dict() == {
        "best_value": 0.5, "best_epoch": 2, "counter": 3, "stop_reason": "patience"}


def test_state_dict_is_a_copy_not_a_view():
    a = EarlyStopping(patience=3)
    a.step(1, {"val/f1": 0.4})
    state = a.state_dict()
    a.step(2, {"val/f1": 0.9})
    assert state["best_value"] == 0.4 and state["best_epoch"] == 1
