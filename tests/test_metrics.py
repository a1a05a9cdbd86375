"""Evaluation metrics against hand-computed cases and scikit-learn."""
import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from mtunet import intervals as I
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
    low, high = I.bootstrap_ci(np.mean, x, n_resamples=500)
    assert low < x.mean() < high
    ci = I.bootstrap_ci(np.mean, x, n_resamples=500, method="BCa")
    assert ci.low < x.mean() < ci.high and ci.reason == ""


def test_auc_ci_contains_point_and_nan_when_degenerate():
    y, prob = _grading_toy(n=100)
    ci = I.auc_ci(y, prob, grade=2, n_resamples=300)
    assert ci.low <= M.roc_auc_grade(y, prob, 2) <= ci.high
    # grade 4 appears once in 6 samples: many resamples have no positive -> NaN with a reason
    y6 = np.array([0, 0, 1, 1, 2, 4])
    ci6 = I.auc_ci(y6, prob[:6], grade=4, n_resamples=200)
    assert math.isnan(ci6.low) and math.isnan(ci6.high) and "undefined" in ci6.reason
    assert "at least 2" in I.bootstrap_ci(np.mean, np.ones(1)).reason


def test_dice_ci_contains_point_estimate():
    rng = np.random.default_rng(0)
    true = (rng.random((12, 16, 16)) < 0.1).astype(int)
    pred = np.where(rng.random(true.shape) < 0.8, true, 1 - true)
    point = M.dice_pooled(M.group_mask(pred, "red"), M.group_mask(true, "red"))
    low, high = I.dice_ci(pred, true, "red", n_resamples=300)
    assert low <= point <= high
    per = np.nanmean(M.dice_per_image(M.group_mask(pred, "red"), M.group_mask(true, "red")))
    ci = I.dice_ci(pred, true, "red", kind="per_image", n_resamples=300)
    assert ci.low <= per <= ci.high


# --------------------------------------------------------------------------------------------
# Streaming pixel AUPR (score histograms)
# --------------------------------------------------------------------------------------------

def test_histogram_average_precision_is_sklearns_on_quantised_scores():
    rng = np.random.default_rng(0)
    n = 20_000
    y = rng.random(n) < 0.02
    p = np.clip(np.where(y, rng.beta(2, 5, n), rng.beta(1, 30, n)), 0, 1)
    hist = M.score_histograms(p, y)
    assert hist.shape == (2, M.PR_LEVELS) and hist.sum() == n and hist[1].sum() == y.sum()
    q = M.quantise_scores(p)
    assert M.average_precision_from_histograms(hist) == pytest.approx(
        average_precision_score(y, q), abs=1e-12)
    # 4096 levels of sqrt(p) lose almost nothing against the float scores
    assert M.average_precision_from_histograms(hist) == pytest.approx(
        average_precision_score(y, p), abs=2e-3)
    # histograms of parts add up to the histogram of the whole
    parts = M.score_histograms(p[:7000], y[:7000]) + M.score_histograms(p[7000:], y[7000:])
    np.testing.assert_array_equal(parts, hist)


def test_histogram_average_precision_edge_cases():
    assert math.isnan(M.average_precision_from_histograms(
        M.score_histograms(np.array([0.1, 0.9]), np.array([False, False]))))
    perfect = M.score_histograms(np.array([0.0, 0.01, 0.9, 1.0]),
                                 np.array([False, False, True, True]))
    assert M.average_precision_from_histograms(perfect) == 1.0
    tied = M.score_histograms(np.zeros(10), np.arange(10) < 3)   # every pixel one threshold
    assert M.average_precision_from_histograms(tied) == pytest.approx(0.3)
    q = M.quantise_scores(np.array([-0.5, 0.0, 1e-9, 0.25, 1.0, 2.0]), levels=8)
    assert q.tolist() == [0, 0, 0, 4, 7, 7]
    with pytest.raises(ValueError, match="labels"):
        M.score_histograms(np.zeros(3), np.zeros(4, bool))


def test_scores_from_counts_matches_segmentation_scores_and_area_ratio():
    p, t = _empty_truth_case()
    counts = M.overlap_counts(p, t)
    got, per_image = M.scores_from_counts(*counts)
    want = M.segmentation_scores(p.astype(int), t.astype(int), groups=[1])
    assert got["dice_pooled"] == want["MA_dice_pooled"]
    assert got["dice_per_image"] == want["MA_dice_per_image"]
    assert got["n_images"] == want["MA_n_images"] == 1
    assert got["area_ratio"] == pytest.approx(3 / 4)          # 3 predicted / 4 true pixels
    np.testing.assert_array_equal(per_image, M.dice_per_image(p, t))
    none, _ = M.scores_from_counts([0], [5], [0])
    assert math.isnan(none["area_ratio"]) and math.isnan(none["dice_per_image"])


# --- AUC intervals: DeLong per grade, stratified bootstrap for the mean over grades ----------------

def test_delong_matches_a_hand_computed_case():
    # positives 0.9, 0.8, 0.4; negatives 0.7, 0.3, 0.2, 0.1: AUC 11/12; per-positive shares of
    # negatives below (1, 1, 3/4), per-negative shares of positives above (2/3, 1, 1, 1):
    # var = var(1, 1, .75)/3 + var(2/3, 1, 1, 1)/4 = 0.0208333/3 + 0.0277778/4 = 0.0138889
    positive = np.array([1, 1, 1, 0, 0, 0, 0], bool)
    scores = np.array([0.9, 0.8, 0.4, 0.7, 0.3, 0.2, 0.1])
    aucs, cov = I.delong_covariance(positive, scores)
    assert aucs[0] == pytest.approx(11 / 12) and cov[0, 0] == pytest.approx(0.0138889, rel=1e-5)
    y = np.where(positive, 1, 0)
    prob = np.stack([1 - scores, scores], axis=1)
    est = I.auc_delong(y, prob, grade=1)
    half = 1.959964 * math.sqrt(0.0138889)
    assert est.low == pytest.approx(11 / 12 - half, rel=1e-4) and est.high == 1.0   # clipped
    assert (est.n_positive, est.n_negative, est.n_runs, est.method) == (3, 4, 1, "DeLong")


def test_delong_auc_equals_sklearn_with_ties_and_agrees_with_the_bootstrap():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 5, 300)
    prob = np.round(rng.random((300, 5)) + 0.4 * np.eye(5)[y], 1)        # many ties
    for g in range(5):
        est = I.auc_delong(y, prob, g)
        assert est.auc == pytest.approx(roc_auc_score(y == g, prob[:, g]))
        boot = I.auc_ci(y, prob, g, n_resamples=1000)
        assert abs((est.high - est.low) / (boot.high - boot.low) - 1) < 0.25


def test_delong_mean_over_runs():
    y, prob = _grading_toy(n=120)
    one = I.auc_delong(y, prob, 2)
    same = I.auc_delong(y, [prob, prob, prob], 2)          # identical runs: the same interval
    assert (same.auc, same.low, same.high, same.n_runs) == pytest.approx((one.auc, one.low, one.high, 3))
    rng = np.random.default_rng(0)
    other = np.clip(prob + rng.normal(0, 0.3, prob.shape), 0, None)
    mean = I.auc_delong(y, [prob, other], 2)
    assert mean.auc == pytest.approx((M.roc_auc_grade(y, prob, 2) + M.roc_auc_grade(y, other, 2)) / 2)


def test_delong_says_why_there_is_no_interval():
    y = np.array([0, 0, 0, 1, 1, 2])
    prob = np.eye(5)[y] * 0.5 + 0.1
    one_positive = I.auc_delong(y, prob, 2)
    assert one_positive.auc == 1.0 and math.isnan(one_positive.low)
    assert "1 positive" in one_positive.reason and "at least 2" in one_positive.reason
    absent = I.auc_delong(y, prob, 4)
    assert math.isnan(absent.auc) and absent.reason == "no positive image" and absent.n_positive == 0
    with pytest.raises(ValueError, match="runs differ"):
        I.auc_delong(y, [prob, prob[:, :4]], 1)


def test_stratified_indexes_keep_every_class_count():
    y = np.array([0] * 50 + [1] * 3 + [4] * 7)
    idx = I.stratified_indexes(y, 200, seed=0)
    assert idx.shape == (200, 60)
    assert (y[idx] == y[idx[0]]).all()                     # column j: the same class everywhere
    assert sorted(y[idx[0]].tolist()) == sorted(y.tolist())


def test_mean_auc_interval():
    y, prob = _grading_toy(n=150)
    est = I.mean_auc_interval(y, prob, n_resamples=500)
    assert est.auc == pytest.approx(M.mean_roc_auc(y, prob))
    assert est.low < est.auc < est.high and est.grade is None and est.method == "stratified bootstrap"
    # a grade with 2 positives keeps them in every resample: still an interval
    y2 = y.copy()
    y2[y2 == 4] = 3
    y2[:2] = 4
    rare = I.mean_auc_interval(y2, prob, n_resamples=300)
    assert np.isfinite([rare.low, rare.high]).all() and rare.n_positive == 2
    runs = I.mean_auc_interval(y, [prob, prob], n_resamples=500)
    assert (runs.low, runs.high) == pytest.approx((est.low, est.high))
    every = I.auc_intervals(y, prob, n_resamples=200)
    assert [e.grade for e in every] == [0, 1, 2, 3, 4, None]
