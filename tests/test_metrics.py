"""Evaluation metrics against hand-computed cases and scikit-learn."""
import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from mtunet import metrics as M


def test_group_mask_names_and_indexes():
    cm = np.array([[0, 1, 2], [3, 4, 5]])
    assert M.group_mask(cm, "red").tolist() == [[False, True, True], [False, False, False]]
    assert M.group_mask(cm, "yellow").tolist() == [[False, False, False], [True, True, False]]
    assert M.group_mask(cm, "SE").sum() == 1
    assert M.group_mask(cm, (1, 4)).sum() == 2
    with pytest.raises(ValueError):
        M.group_mask(cm, "blue")


def test_dice_perfect_and_disjoint():
    t = np.zeros((2, 4, 4), bool)
    t[0, :2, :2] = True
    t[1, 3, 3] = True
    assert M.dice_pooled(t, t) == 1.0
    assert np.allclose(M.dice_per_image(t, t), 1.0)
    other = np.zeros_like(t)
    other[:, 2, 0] = True
    assert M.dice_pooled(other, t) == 0.0
    assert np.allclose(M.dice_per_image(other, t), 0.0)
    assert math.isnan(M.dice_pooled(np.zeros_like(t), np.zeros_like(t)))


def test_dice_hand_value():
    p = np.array([[1, 1, 0, 0]], bool)
    t = np.array([[0, 1, 1, 1]], bool)
    assert M.dice_pooled(p, t) == pytest.approx(2 * 1 / 5)


def _empty_truth_case():
    """Image 0: truth 4 px, pred 2 of them. Image 1: empty truth, empty pred.
    Image 2: empty truth, pred 1 px (a false alarm)."""
    t = np.zeros((3, 4, 4), bool)
    p = np.zeros((3, 4, 4), bool)
    t[0, :2, :2] = True
    p[0, 0, :2] = True
    p[2, 3, 3] = True
    return p, t


@pytest.mark.parametrize("rule, want", [("skip", [2 / 3, np.nan, np.nan]),
                                        ("one", [2 / 3, 1.0, 0.0]),
                                        ("zero", [2 / 3, 0.0, 0.0])])
def test_dice_per_image_empty_rules(rule, want):
    p, t = _empty_truth_case()
    np.testing.assert_allclose(M.dice_per_image(p, t, empty=rule), want)


def test_dice_per_image_default_is_skip_and_bad_rule_raises():
    p, t = _empty_truth_case()
    assert np.nanmean(M.dice_per_image(p, t)) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        M.dice_per_image(p, t, empty="ignore")


def test_pooled_and_per_image_differ():
    # A large lesion segmented perfectly and a tiny one missed: pooled ~ 1, per image 0.5.
    t = np.zeros((2, 10, 10), bool)
    t[0, :9, :9] = True
    t[1, 0, 0] = True
    p = t.copy()
    p[1] = False
    assert M.dice_pooled(p, t) == pytest.approx(2 * 81 / (81 + 82))
    assert np.nanmean(M.dice_per_image(p, t)) == pytest.approx(0.5)


def test_segmentation_scores_flat_dict():
    true = np.zeros((2, 4, 4), int)
    true[0, 0, :2] = 1   # MA
    true[0, 1, :2] = 3   # EX
    true[1, 2, 2] = 2    # HE
    pred = true.copy()
    pred[0, 1, :2] = 4   # EX predicted as SE: yellow still right, EX and SE wrong
    s = M.segmentation_scores(pred, true)
    assert all(isinstance(v, float) for v in s.values())
    assert s["red_dice_pooled"] == 1.0 and s["red_dice_per_image"] == 1.0
    assert s["yellow_dice_pooled"] == 1.0 and s["yellow_n_images"] == 1.0
    assert s["EX_dice_pooled"] == 0.0
    assert s["SE_dice_pooled"] == 0.0 and math.isnan(s["SE_dice_per_image"])
    assert s["MA_n_images"] == 1.0 and s["HE_dice_per_image"] == 1.0
    # "one": image 0 false SE alarm scores 0, image 1 (no SE anywhere) scores 1
    assert M.segmentation_scores(pred, true, empty="one")["SE_dice_per_image"] == 0.5


def test_aupr_matches_sklearn_without_subsampling():
    rng = np.random.default_rng(0)
    true = rng.integers(0, 5, size=(2, 6, 6))
    prob = rng.dirichlet(np.ones(5), size=(2, 6, 6))
    got = M.aupr_per_lesion(prob, true)
    want = average_precision_score((true == 1).ravel(), prob[..., 1].ravel())
    assert got["MA"] == pytest.approx(want)
    red = average_precision_score(np.isin(true, (1, 2)).ravel(), prob[..., 1:3].sum(-1).ravel())
    assert got["red"] == pytest.approx(red)


def test_aupr_subsampled_close_and_nan_for_absent():
    rng = np.random.default_rng(1)
    true = (rng.random((4, 50, 50)) < 0.05).astype(int)  # MA only
    prob = np.zeros(true.shape + (5,))
    prob[..., 1] = np.clip(true * 0.3 + rng.random(true.shape) * 0.7, 0, 1)
    prob[..., 0] = 1 - prob[..., 1]
    full = M.aupr_per_lesion(prob, true)["MA"]
    sub = M.aupr_per_lesion(prob, true, max_negatives=3000)["MA"]
    assert sub == pytest.approx(full, abs=0.03)
    assert math.isnan(M.aupr_per_lesion(prob, true)["SE"])


def _grading_toy(n=60, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 5
    logits = rng.normal(size=(n, 5)) + 2.0 * np.eye(5)[y]
    prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, prob


def test_roc_auc_per_grade_matches_sklearn():
    y, prob = _grading_toy()
    got = M.roc_auc_per_grade(y, prob)
    want = [roc_auc_score(y == g, prob[:, g]) for g in range(5)]
    np.testing.assert_allclose(got, want)
    ovr = roc_auc_score(y, prob, multi_class="ovr", average=None)
    np.testing.assert_allclose(got, ovr)
    assert M.mean_roc_auc(y, prob) == pytest.approx(np.mean(want))


def test_roc_auc_nan_for_absent_grade():
    y, prob = _grading_toy()
    keep = y != 3
    got = M.roc_auc_per_grade(y[keep], prob[keep])
    assert math.isnan(got[3]) and np.isfinite(np.delete(got, 3)).all()
    assert math.isnan(M.roc_auc_grade(np.zeros(4, int), np.full((4, 5), 0.2), 0))


def test_kappa_and_confusion():
    assert M.quadratic_kappa([0, 1, 2, 3, 4], [0, 1, 2, 3, 4]) == pytest.approx(1.0)
    cm = M.confusion([0, 0, 4], [0, 1, 4])
    assert cm.shape == (5, 5) and cm[0, 0] == 1 and cm[0, 1] == 1 and cm[4, 4] == 1


def test_ece_zero_when_perfectly_calibrated():
    prob = np.tile([0.75, 0.25, 0, 0, 0], (4, 1))
    y = np.array([0, 0, 0, 1])  # 75 % right at confidence 0.75
    assert M.expected_calibration_error(y, prob) == pytest.approx(0.0)
    assert M.expected_calibration_error(np.zeros(3, int), np.eye(5)[[0, 0, 0]]) == 0.0


def test_ece_and_reliability_hand_value():
    prob = np.array([[0.9, 0.1, 0, 0, 0], [0.9, 0.1, 0, 0, 0],
                     [0.3, 0.6, 0.1, 0, 0], [0.3, 0.6, 0.1, 0, 0]])
    y = np.array([0, 1, 1, 1])  # bin (.8,.9]: acc .5 conf .9; bin (.5,.6]: acc 1 conf .6
    conf, acc, counts = M.reliability_curve(y, prob, n_bins=10)
    assert counts[8] == 2 and counts[5] == 2 and counts.sum() == 4
    assert acc[8] == pytest.approx(0.5) and conf[5] == pytest.approx(0.6)
    assert math.isnan(acc[0])
    assert M.expected_calibration_error(y, prob) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)


def test_bootstrap_ci_contains_point_estimate():
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 1.0, 40)
    low, high = M.bootstrap_ci(np.mean, x, n_resamples=500)
    assert low < x.mean() < high
    ci = M.bootstrap_ci(np.mean, x, n_resamples=500, method="BCa")
    assert ci.low < x.mean() < ci.high and ci.reason == ""


def test_auc_ci_contains_point_and_nan_when_degenerate():
    y, prob = _grading_toy(n=100)
    ci = M.auc_ci(y, prob, grade=2, n_resamples=300)
    assert ci.low <= M.roc_auc_grade(y, prob, 2) <= ci.high
    # grade 4 appears once in 6 samples: many resamples have no positive -> NaN with a reason
    y6 = np.array([0, 0, 1, 1, 2, 4])
    ci6 = M.auc_ci(y6, prob[:6], grade=4, n_resamples=200)
    assert math.isnan(ci6.low) and math.isnan(ci6.high) and "undefined" in ci6.reason
    assert "at least 2" in M.bootstrap_ci(np.mean, np.ones(1)).reason


def test_dice_ci_contains_point_estimate():
    rng = np.random.default_rng(0)
    true = (rng.random((12, 16, 16)) < 0.1).astype(int)
    pred = np.where(rng.random(true.shape) < 0.8, true, 1 - true)
    point = M.dice_pooled(M.group_mask(pred, "red"), M.group_mask(true, "red"))
    low, high = M.dice_ci(pred, true, "red", n_resamples=300)
    assert low <= point <= high
    per = np.nanmean(M.dice_per_image(M.group_mask(pred, "red"), M.group_mask(true, "red")))
    ci = M.dice_ci(pred, true, "red", kind="per_image", n_resamples=300)
    assert ci.low <= per <= ci.high
