"""Epoch-level pixel metrics, growth metrics, and histogram average precision."""
from __future__ import annotations

import pytest
import torch

from emberformer.scoring.metrics import AP_BINS, PixelMetrics, average_precision, ratios


def test_ratios_known_counts():
    r = ratios(tp=3, fp=1, fn=2, tn=4)
    assert r == pytest.approx({"prec": 0.75, "rec": 0.6, "f1": 6 / 9, "iou": 0.5, "acc": 0.7})


def test_ratios_nothing_to_find_and_nothing_predicted_is_perfect():
    assert ratios(0, 0, 0, 5) == {"prec": 1.0, "rec": 1.0, "f1": 1.0, "iou": 1.0, "acc": 1.0}
    assert ratios(0, 0, 0, 0) == {"prec": 1.0, "rec": 1.0, "f1": 1.0, "iou": 1.0, "acc": 1.0}


def test_ratios_zero_denominator_with_errors_is_zero():
    # predicted fire where there was none: precision 0, and recall (0/0) 0 because fp > 0
    r = ratios(0, 2, 0, 3)
    assert r["prec"] == 0.0 and r["rec"] == 0.0 and r["f1"] == 0.0 and r["iou"] == 0.0
    assert r["acc"] == pytest.approx(0.6)
    # missed all fire, predicted none: precision 0/0 -> 0, recall 0
    r = ratios(0, 0, 4, 1)
    assert r["prec"] == 0.0 and r["rec"] == 0.0 and r["acc"] == pytest.approx(0.2)


def _t(rows):
    return torch.tensor(rows, dtype=torch.float32)[None, None]


def growth_example():
    prob = _t([[0.9, 0.9, 0.2], [0.1, 0.8, 0.7]])
    target = _t([[1, 1, 1], [0, 1, 0]])
    mask = _t([[1, 1, 1], [1, 1, 0]]).bool()    # (1,2): a false positive if it counted
    last = _t([[1, 1, 0], [0, 0, 0]]).bool()
    return prob, target, mask, last


def test_counts_growth_and_mask():
    m = PixelMetrics()
    m.update(*growth_example())
    # all valid: (0,0) tp, (0,1) tp, (0,2) fn, (1,0) tn, (1,1) tp; growth: (0,2) fn, (1,0) tn, (1,1) tp
    assert m.counts.tolist() == [3, 0, 1, 1, 1, 0, 1, 1]
    out = m.compute()
    assert out["prec"] == 1.0
    assert out["rec"] == pytest.approx(0.75)
    assert out["f1"] == pytest.approx(6 / 7)
    assert out["iou"] == pytest.approx(0.75)
    assert out["acc"] == pytest.approx(0.8)
    assert out["growth_prec"] == 1.0
    assert out["growth_rec"] == pytest.approx(0.5)
    assert out["growth_f1"] == pytest.approx(2 / 3)
    assert out["growth_iou"] == pytest.approx(0.5)
    assert out["growth_acc"] == pytest.approx(2 / 3)
    assert set(out) == {"prec", "rec", "f1", "iou", "acc", "growth_prec", "growth_rec",
                        "growth_f1", "growth_iou", "growth_acc", "ap", "brier"}
    # valid pixels only: (0.1^2 + 0.1^2 + 0.8^2 + 0.1^2 + 0.2^2) / 5; (1,2) is outside the frame
    assert out["brier"] == pytest.approx(0.71 / 5)


def test_copy_last_scores_zero_growth_recall():
    prob, target, mask, last = growth_example()
    m = PixelMetrics()
    m.update(last.float(), target, mask, last)
    out = m.compute()
    assert out["prec"] == 1.0
    assert out["growth_rec"] == 0.0
    assert out["growth_f1"] == 0.0


def test_threshold_is_strictly_greater():
    m = PixelMetrics(threshold=0.5)
    prob = _t([[0.5, 0.51]])
    target = _t([[1, 1]])
    ones = torch.ones_like(prob, dtype=torch.bool)
    m.update(prob, target, ones, ~ones)
    assert m.counts[:4].tolist() == [1, 0, 1, 0]


def test_epoch_level_not_mean_of_batches():
    m = PixelMetrics()
    ones = torch.ones(1, 1, 1, 4, dtype=torch.bool)
    no_last = ~ones
    # batch 1: tp 1 (f1 = 1); batch 2: tp 1, fp 3 (f1 = 0.4); per-batch mean would be 0.7
    m.update(_t([[0.9, 0.1, 0.1, 0.1]]), _t([[1, 0, 0, 0]]), ones, no_last)
    m.update(_t([[0.9, 0.9, 0.9, 0.9]]), _t([[1, 0, 0, 0]]), ones, no_last)
    assert m.compute()["f1"] == pytest.approx(4 / 7)


def test_several_updates_equal_one_update_of_concatenation():
    g = torch.Generator().manual_seed(0)
    batches = []
    for n in (2, 3, 1):
        prob = torch.rand(n, 1, 5, 7, generator=g)
        target = (torch.rand(n, 1, 5, 7, generator=g) > 0.6).float()
        mask = torch.rand(n, 1, 5, 7, generator=g) > 0.2
        last = torch.rand(n, 1, 5, 7, generator=g) > 0.7
        batches.append((prob, target, mask, last))
    many = PixelMetrics()
    for b in batches:
        many.update(*b)
    one = PixelMetrics()
    one.update(*(torch.cat([b[i] for b in batches]) for i in range(4)))
    assert torch.equal(many.counts, one.counts)
    assert torch.equal(many.pos_hist, one.pos_hist)
    assert torch.equal(many.neg_hist, one.neg_hist)
    assert many.compute() == one.compute()
    # and the counts are those of the valid pixels only
    mask_total = sum(int(b[2].sum()) for b in batches)
    assert many.counts[:4].sum().item() == mask_total
    assert many.pos_hist.sum().item() + many.neg_hist.sum().item() == mask_total


def test_reset_clears_everything():
    m = PixelMetrics()
    m.update(*growth_example())
    m.reset()
    assert m.counts.sum().item() == 0
    assert m.pos_hist.sum().item() == 0 and m.neg_hist.sum().item() == 0
    assert m.pos_hist.shape == (AP_BINS,)


# ---------------------------------------------------------------- average precision


def _ap(pos_probs, neg_probs):
    m = PixelMetrics()
    prob = torch.tensor(pos_probs + neg_probs)[None, None, None]
    target = torch.tensor([1.0] * len(pos_probs) + [0.0] * len(neg_probs))[None, None, None]
    mask = torch.ones_like(prob, dtype=torch.bool)
    m.update(prob, target, mask, ~mask)
    return m.compute()["ap"]


def test_ap_perfect_separation_is_one():
    assert _ap([0.9, 0.8, 0.55], [0.1, 0.3, 0.5]) == pytest.approx(1.0)
    # even when every probability is below the threshold
    assert _ap([0.4, 0.3], [0.2, 0.01]) == pytest.approx(1.0)


def test_ap_known_small_case():
    # ranking P(0.9) N(0.6) P(0.4) N(0.1): precision 1 at recall 0.5, 2/3 at recall 1
    assert _ap([0.9, 0.4], [0.6, 0.1]) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


def test_ap_worst_ranking():
    # N(0.9) N(0.8) P(0.2): precision 1/3 at recall 1
    assert _ap([0.2], [0.9, 0.8]) == pytest.approx(1 / 3)


def test_ap_tied_bin_counts_both():
    assert _ap([0.5], [0.5]) == pytest.approx(0.5)


def test_ap_direct_histograms_and_no_positives():
    pos = torch.zeros(4, dtype=torch.float64)
    neg = torch.zeros(4, dtype=torch.float64)
    pos[3], pos[1] = 1, 1
    neg[2], neg[0] = 1, 1
    assert average_precision(pos, neg) == pytest.approx(5 / 6)
    assert average_precision(torch.zeros(4), neg) == 0.0


def test_copy_last_brier_is_its_error_rate():
    """Copy-last's probabilities are 0 or 1 (sigmoid of +-confidence), so each pixel's squared
    error is (within 1e-4) 0 or 1 and its Brier score is the share of valid pixels it gets wrong: 1 - acc."""
    from emberformer.models.copy_last import CopyLast

    g = torch.Generator().manual_seed(0)
    fire = (torch.rand(3, 2, 9, 7, generator=g) > 0.6).float()
    target = ((torch.rand(3, 1, 9, 7, generator=g) > 0.5) | (fire[:, -1:] > 0.5)).float()
    target[0, 0, :3] = 0  # old fire that went out: copy-last wrong there
    mask = torch.ones(3, 1, 9, 7, dtype=torch.bool)
    mask[1, :, 4:] = False
    prob = torch.sigmoid(CopyLast()(fire=fire, valid_t=torch.ones(3, 2, dtype=torch.bool),
                                    wind=torch.zeros(3, 2, 2), static=torch.zeros(3, 0, 9, 7)))
    m = PixelMetrics()
    m.update(prob, target, mask, fire[:, -1:] > 0.5)
    out = m.compute()
    wrong = ((fire[:, -1:] > 0.5) != (target > 0.5)) & mask
    assert 0 < out["brier"] < 1
    # sigmoid(+-10) is within 4.6e-5 of 1 and 0: each squared error within 1e-4 of 0 or 1
    assert out["brier"] == pytest.approx(float(wrong.sum() / mask.sum()), abs=1e-4)
    assert out["brier"] == pytest.approx(1 - out["acc"], abs=1e-4)


def test_ensemble_brier_by_hand():
    """The ceiling's probability is the share of its runs in which a pixel burns or burned; its
    Brier score, computed by hand on 4 runs of a 1 x 3 grid."""
    from emberformer.scoring.ceiling import ensemble_probability

    runs = torch.zeros(4, 2, 1, 3, dtype=torch.bool)  # [runs, (burning, burned), H, W]
    runs[:, 0, 0, 0] = True                   # pixel 0 burns in all 4 runs: p = 1
    runs[0, 0, 0, 1] = runs[1, 1, 0, 1] = True  # pixel 1 burning in one, burned in another: p = 0.5
    runs[2, 0, 0, 2] = True                   # pixel 2 in one run: p = 0.25
    p = ensemble_probability(runs)
    assert p.tolist() == [[1.0, 0.5, 0.25]]
    target = torch.tensor([[[[1.0, 0.0, 1.0]]]])
    m = PixelMetrics()
    m.update(p[None, None], target, torch.ones(1, 1, 1, 3, dtype=torch.bool), torch.zeros(1, 1, 1, 3, dtype=torch.bool))
    assert m.compute()["brier"] == pytest.approx((0.0 ** 2 + 0.5 ** 2 + 0.75 ** 2) / 3)
