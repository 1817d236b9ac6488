"""Losses against hand-computed values on a tiny 2x2 example with one masked pixel.

Example (one image, 2x2): logits [[0, ln3], [-ln3, L]], target [[1, 0], [1, T]], the pixel
(1,1) masked out.  sigmoid gives p = 0.5, 0.75, 0.25 on the three valid pixels, so

    BCE      = (ln2 + ln4 + ln4) / 3                         = 5 ln2 / 3
    Dice     = 1 - (2*0.75 + 1) / (1.5 + 2 + 1)              = 4/9
    Tversky  = 1 - (0.75 + 1) / (0.75 + .7*.75 + .3*1.25 + 1) = 0.9 / 2.65
    Focal    = (0.0625 + 0.84375 + 0.28125) ln2 / 3         = 1.1875 ln2 / 3
"""
from __future__ import annotations

import math

import pytest
import torch

from emberformer.training.losses import (
    BCEDiceLoss,
    BCELoss,
    DiceLoss,
    FocalTverskyLoss,
    bce,
    focal,
    soft_dice,
    tversky,
)

LN2 = math.log(2.0)
LN3 = math.log(3.0)


def example(masked_logit: float = 5.0, masked_target: float = 0.0):
    logits = torch.tensor([[[[0.0, LN3], [-LN3, masked_logit]]]])
    target = torch.tensor([[[[1.0, 0.0], [1.0, masked_target]]]])
    mask = torch.tensor([[[[True, True], [True, False]]]])
    return logits, target, mask


EXPECTED = {
    "bce": 5 * LN2 / 3,
    "dice": 4 / 9,
    "tversky": 0.9 / 2.65,
    "focal": 1.1875 * LN2 / 3,
}
FUNCS = {"bce": bce, "dice": soft_dice, "tversky": tversky, "focal": focal}


@pytest.mark.parametrize("name", sorted(FUNCS))
def test_hand_computed_value(name):
    value = FUNCS[name](*example())
    assert value.item() == pytest.approx(EXPECTED[name], rel=1e-5)


@pytest.mark.parametrize("name", sorted(FUNCS))
@pytest.mark.parametrize("masked_logit,masked_target", [(-7.0, 1.0), (12.0, 1.0), (0.3, 0.0)])
def test_masked_pixel_does_not_change_value(name, masked_logit, masked_target):
    value = FUNCS[name](*example(masked_logit, masked_target))
    assert value.item() == pytest.approx(EXPECTED[name], rel=1e-5)


def test_masked_pixel_would_change_value_if_unmasked():
    """Sanity check that the example actually exercises the mask."""
    logits, target, mask = example(masked_logit=-7.0, masked_target=1.0)
    full = torch.ones_like(mask)
    assert bce(logits, target, full).item() != pytest.approx(EXPECTED["bce"], rel=1e-3)
    assert soft_dice(logits, target, full).item() != pytest.approx(EXPECTED["dice"], rel=1e-3)


def test_tversky_alpha_beta_and_focal_gamma_arguments():
    logits, target, mask = example()
    # alpha=beta=0.5 is Dice: 1 - (0.75+1)/(0.75 + 0.375 + 0.625 + 1) = 1 - 1.75/2.75
    assert tversky(logits, target, mask, 0.5, 0.5).item() == pytest.approx(1 - 1.75 / 2.75, rel=1e-5)
    # gamma=0, alpha=0.5 is half the BCE
    assert focal(logits, target, mask, 0.5, 0.0).item() == pytest.approx(0.5 * 5 * LN2 / 3, rel=1e-5)


def test_dice_of_empty_target_and_empty_prediction_is_zero():
    logits = torch.full((1, 1, 3, 3), -60.0)
    target = torch.zeros(1, 1, 3, 3)
    mask = torch.ones(1, 1, 3, 3, dtype=torch.bool)
    assert soft_dice(logits, target, mask).item() == pytest.approx(0.0, abs=1e-6)
    assert tversky(logits, target, mask).item() == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------- pos_weight


def test_bce_pos_weight_number():
    # positives (0,0) and (1,0) weighted by 2: (2 ln2 + ln4 + 2 ln4) / 3 = 8 ln2 / 3
    assert bce(*example(), pos_weight=2.0).item() == pytest.approx(8 * LN2 / 3, rel=1e-5)
    loss = BCELoss(pos_weight=2)
    assert loss.pos_weight == 2.0
    assert loss(*example())["bce"].item() == pytest.approx(8 * LN2 / 3, rel=1e-5)


def test_bce_pos_weight_auto_uses_valid_pixels_of_batch():
    logits = torch.zeros(1, 1, 2, 2)  # p = 0.5: every pixel's CE is ln2
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    full = torch.ones(1, 1, 2, 2, dtype=torch.bool)
    # 1 positive, 3 negatives -> pos_weight 3: (3 ln2 + 3 ln2) / 4
    assert bce(logits, target, full, "auto").item() == pytest.approx(1.5 * LN2, rel=1e-5)
    # masking one negative -> 2 negatives -> pos_weight 2: (2 ln2 + 2 ln2) / 3
    mask = torch.tensor([[[[True, True], [True, False]]]])
    assert bce(logits, target, mask, "auto").item() == pytest.approx(4 * LN2 / 3, rel=1e-5)
    assert BCELoss(pos_weight="auto")(logits, target, mask)["loss"].item() == pytest.approx(
        4 * LN2 / 3, rel=1e-5)


def test_bce_pos_weight_auto_is_clamped_to_1_and_100():
    logits = torch.zeros(1, 1, 1, 201)
    target = torch.zeros(1, 1, 1, 201)
    target[..., 0] = 1.0
    mask = torch.ones_like(target, dtype=torch.bool)
    # 200 negatives / 1 positive -> clamped to 100
    assert bce(logits, target, mask, "auto").item() == pytest.approx(300 * LN2 / 201, rel=1e-5)
    # more positives than negatives: 3/1 would give 1/3, clamped up to 1 -> plain BCE ln2
    t2 = torch.tensor([[[[1.0, 1.0], [1.0, 0.0]]]])
    m2 = torch.ones(1, 1, 2, 2, dtype=torch.bool)
    assert bce(torch.zeros(1, 1, 2, 2), t2, m2, "auto").item() == pytest.approx(LN2, rel=1e-5)


# ---------------------------------------------------------------- weighted sums


def test_bce_dice_loss_default_is_half_and_half_exactly():
    loss = BCEDiceLoss()
    parts = loss(*example())
    assert set(parts) == {"loss", "bce", "dice"}
    assert parts["bce"].item() == pytest.approx(EXPECTED["bce"], rel=1e-5)
    assert parts["dice"].item() == pytest.approx(EXPECTED["dice"], rel=1e-5)
    assert torch.equal(parts["loss"], 0.5 * parts["bce"] + 0.5 * parts["dice"])


def test_bce_dice_loss_custom_weights_and_pos_weight():
    loss = BCEDiceLoss(bce_weight=2.0, dice_weight=0.25, pos_weight=2.0)
    parts = loss(*example())
    assert parts["bce"].item() == pytest.approx(8 * LN2 / 3, rel=1e-5)
    assert parts["loss"].item() == pytest.approx(2.0 * 8 * LN2 / 3 + 0.25 * 4 / 9, rel=1e-5)
    assert loss.describe() == "BCE (2) + Dice (0.25)"


def test_bce_dice_loss_zero_weight_term_still_reported():
    parts = BCEDiceLoss(bce_weight=0.0, dice_weight=1.0)(*example())
    assert parts["loss"].item() == pytest.approx(4 / 9, rel=1e-5)
    assert parts["bce"].item() == pytest.approx(EXPECTED["bce"], rel=1e-5)


def test_focal_tversky_loss_keys_and_value():
    parts = FocalTverskyLoss()(*example())
    assert set(parts) == {"loss", "focal", "tversky"}
    assert parts["focal"].item() == pytest.approx(EXPECTED["focal"], rel=1e-5)
    assert parts["tversky"].item() == pytest.approx(EXPECTED["tversky"], rel=1e-5)
    assert parts["loss"].item() == pytest.approx(
        0.7 * EXPECTED["focal"] + 0.3 * EXPECTED["tversky"], rel=1e-5)


def test_single_term_losses():
    assert set(BCELoss()(*example())) == {"loss", "bce"}
    assert BCELoss()(*example())["loss"].item() == pytest.approx(EXPECTED["bce"], rel=1e-5)
    parts = DiceLoss()(*example())
    assert set(parts) == {"loss", "dice"}
    assert parts["loss"].item() == pytest.approx(EXPECTED["dice"], rel=1e-5)


def test_loss_is_differentiable_wrt_logits():
    logits, target, mask = example()
    logits.requires_grad_(True)
    BCEDiceLoss()(logits, target, mask)["loss"].backward()
    # the masked pixel gets no gradient, the valid ones do
    assert logits.grad[0, 0, 1, 1].item() == 0.0
    assert (logits.grad[0, 0][mask[0, 0]] != 0).all()


@pytest.mark.parametrize("loss,text", [
    (BCEDiceLoss(), "BCE (0.5) + Dice (0.5)"),
    (BCEDiceLoss(0.3, 0.7), "BCE (0.3) + Dice (0.7)"),
    (FocalTverskyLoss(), "Focal (0.7) + Tversky (0.3)"),
    (BCELoss(), "BCE (1)"),
    (DiceLoss(), "Dice (1)"),
])
def test_describe(loss, text):
    assert loss.describe() == text


# ---------------------------------------------------------------- validation


def test_negative_weight_names_the_key():
    with pytest.raises(ValueError, match=r"loss\.bce_weight must be >= 0, got -0\.1"):
        BCEDiceLoss(bce_weight=-0.1)
    with pytest.raises(ValueError, match=r"loss\.tversky_weight must be >= 0"):
        FocalTverskyLoss(tversky_weight=-1)


def test_all_zero_weights_rejected():
    with pytest.raises(ValueError, match=r"loss\.bce_weight, loss\.dice_weight are all zero"):
        BCEDiceLoss(0, 0)
    with pytest.raises(ValueError, match=r"loss\.focal_weight, loss\.tversky_weight are all zero"):
        FocalTverskyLoss(0.0, 0.0)


@pytest.mark.parametrize("bad", ["foo", 0, 0.0, -2, "0", [1]])
def test_bad_pos_weight_rejected(bad):
    with pytest.raises(ValueError, match=r"loss\.pos_weight must be null, \"auto\" or a number > 0"):
        BCEDiceLoss(pos_weight=bad)
    with pytest.raises(ValueError, match=r"loss\.pos_weight"):
        BCELoss(pos_weight=bad)


def test_pos_weight_error_shows_value():
    with pytest.raises(ValueError, match=r"got 'foo'"):
        BCELoss(pos_weight="foo")


@pytest.mark.parametrize("good,stored", [(None, None), ("auto", "auto"), (3, 3.0), ("2.5", 2.5)])
def test_good_pos_weight_accepted(good, stored):
    assert BCEDiceLoss(pos_weight=good).pos_weight == stored
