"""Evaluation metrics on numpy arrays: lesion Dice, per-grade ROC AUC, calibration, intervals.

What the paper says and what we chose:

- **Dice** (Performance Study): ``Dice(X, Y) = 2|X ∩ Y| / (|X| + |Y|)`` with X the predicted and
  Y the annotated pixels, reported for red lesions (MA ∪ HE) and yellow lesions (EX ∪ SE)
  (Table 2). The paper does not say whether X and Y pool the pixels of all 27 test images or
  whether Dice is averaged per image; we report both (:func:`segmentation_scores`).
- **Per-image Dice and empty truth**: an image with no lesion of a kind makes Dice 0/0 when the
  prediction is also empty. MONAI calls this ``ignore_empty``; we expose it as ``empty``
  (see :func:`dice_per_image`). Default ``"skip"``: in IDRiD-S soft exudates are absent from 13
  of the 27 test images, so scoring those images 1 (or 0) would move the SE and yellow averages
  a lot by a convention, not by segmentation quality.
- **AUPR** per lesion (the IDRiD challenge metric): :func:`aupr_per_lesion` on class maps
  (subsampled negatives), or, for the full-resolution scorer, exact and streaming from
  per-level pixel counts (:func:`score_histograms`, :func:`average_precision_from_histograms`).
- **ROC** (Tables 1, 3, 4): area under the ROC curve per DR grade, one-vs-rest.
- **Intervals** of these metrics (bootstrap, DeLong) are in :mod:`mtunet.intervals`.

scikit-learn / scipy do the maths where they have it (ROC AUC, average precision, kappa,
confusion matrix, bootstrap); only Dice and calibration are written here.
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np
from sklearn.metrics import (average_precision_score, cohen_kappa_score, confusion_matrix,
                             roc_auc_score)

from mtunet.config import CLASS_NAMES, LESIONS, N_GRADES, group_classes

EMPTY_RULES = ("skip", "one", "zero")
# predicted / true lesion pixels outside this band: the Dice beside it rests on a flood or a
# collapse (the report does not rank it, and held-out selection never chooses such an epoch)
SANE_AREA_RATIO = (0.5, 2.0)


# --------------------------------------------------------------------------------------------
# Dice
# --------------------------------------------------------------------------------------------



def group_mask(class_map, group) -> np.ndarray:
    """Boolean mask of the pixels whose class index belongs to ``group``.

    ``class_map`` is an integer array (..., H, W) of class indexes (0 = background, 1-4 =
    MA, HE, EX, SE; see ``config.CLASS_NAMES``). ``group`` is ``"red"`` (MA ∪ HE), ``"yellow"``
    (EX ∪ SE), a class name such as ``"SE"``, an index, or a tuple of indexes.
    """
    return np.isin(np.asarray(class_map), group_classes(group))


def _as_bool_pair(pred, true) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred).astype(bool, copy=False)
    true = np.asarray(true).astype(bool, copy=False)
    if pred.shape != true.shape:
        raise ValueError(f"prediction shape {pred.shape} != ground-truth shape {true.shape}")
    return pred, true


def overlap_counts(pred_bool, true_bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-image |X ∩ Y|, |X|, |Y| (int64 arrays of length N) for masks of shape (N, H, W).

    A single (H, W) mask counts as one image. Dice pooled or per image follows from these
    counts, so bootstrap intervals resample the counts instead of the masks.
    """
    pred, true = _as_bool_pair(pred_bool, true_bool)
    if pred.ndim == 2:
        pred, true = pred[None], true[None]
    axes = tuple(range(1, pred.ndim))
    inter = np.logical_and(pred, true).sum(axis=axes, dtype=np.int64)
    return inter, pred.sum(axis=axes, dtype=np.int64), true.sum(axis=axes, dtype=np.int64)


def _dice_from_counts(inter, psum, tsum, empty: str = "skip") -> np.ndarray:
    if empty not in EMPTY_RULES:
        raise ValueError(f"empty must be one of {EMPTY_RULES}, got {empty!r}")
    inter, psum, tsum = (np.asarray(x, dtype=float) for x in (inter, psum, tsum))
    denom = psum + tsum
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = np.where(denom > 0, 2.0 * inter / np.where(denom > 0, denom, 1.0), np.nan)
    no_truth = tsum == 0
    if empty == "skip":
        dice = np.where(no_truth, np.nan, dice)
    elif empty == "one":
        dice = np.where(no_truth, (psum == 0).astype(float), dice)
    else:  # "zero"
        dice = np.where(no_truth, 0.0, dice)
    return dice


def dice_pooled(pred_bool, true_bool) -> float:
    """Dice over all pixels of all images at once: 2 Σ|X∩Y| / (Σ|X| + Σ|Y|).

    This is the paper's formula with X and Y the pixel sets of the whole test set. Large
    lesions dominate it. NaN when prediction and truth are both empty everywhere (0/0).
    """
    inter, psum, tsum = overlap_counts(pred_bool, true_bool)
    denom = psum.sum() + tsum.sum()
    return float(2.0 * inter.sum() / denom) if denom > 0 else math.nan


def dice_per_image(pred_bool, true_bool, empty: str = "skip") -> np.ndarray:
    """Dice of each image (array of length N) for masks of shape (N, H, W).

    Rule for an image whose ground truth has no pixel of this kind (MONAI's ``ignore_empty``):

    - ``"skip"`` (default): NaN, so ``np.nanmean`` leaves the image out. In IDRiD-S soft
      exudates are absent from 13 of the 27 test images; scoring those images by a convention
      would move the SE and yellow averages more than the segmentation does.
    - ``"one"``: 1 if the prediction is empty too, else 0 (a false alarm costs the image).
    - ``"zero"``: 0 whatever the prediction.

    Images whose truth is non-empty get the ordinary Dice.
    """
    return _dice_from_counts(*overlap_counts(pred_bool, true_bool), empty=empty)


def _nanmean(x) -> float:
    x = np.asarray(x, dtype=float)
    return float(np.nanmean(x)) if np.isfinite(x).any() else math.nan


def scores_from_counts(inter, psum, tsum, empty: str = "skip"
                       ) -> tuple[dict[str, float], np.ndarray]:
    """Scores of one lesion group from per-image counts |X ∩ Y|, |X|, |Y| (arrays of length N).

    Returns ``({"dice_pooled", "dice_per_image", "n_images", "area_ratio"}, per_image_dice)``.
    ``area_ratio`` is Σ|X| / Σ|Y|, predicted over true pixels pooled (≫ 1: a flood of lesion
    predictions, which can still score a non-zero Dice; ~0: a collapse), NaN without true
    pixels. Per-image Dice follows ``empty`` (:func:`dice_per_image`).
    """
    inter, psum, tsum = (np.asarray(x, dtype=np.int64) for x in (inter, psum, tsum))
    per_image = _dice_from_counts(inter, psum, tsum, empty=empty)
    denom = psum.sum() + tsum.sum()
    return {"dice_pooled": float(2.0 * inter.sum() / denom) if denom else math.nan,
            "dice_per_image": _nanmean(per_image),
            "n_images": float(np.isfinite(per_image).sum()),
            "area_ratio": float(psum.sum() / tsum.sum()) if tsum.sum() else math.nan}, per_image


def segmentation_scores(pred_class_maps, true_class_maps, empty: str = "skip",
                        groups: Iterable = ("red", "yellow") + LESIONS) -> dict[str, float]:
    """Dice of red / yellow lesions and of each lesion kind, pooled and averaged per image.

    ``pred_class_maps`` and ``true_class_maps`` are integer class-index maps (N, H, W), e.g.
    the argmax of the softmax map. Returns one flat dict of floats (fractions, not percent)::

        {"red_dice_pooled", "red_dice_per_image", "red_n_images", "yellow_...", "MA_...", ...}

    ``*_n_images`` is the number of images that entered the per-image mean (under ``"skip"``
    the images with that kind of lesion in the ground truth).
    """
    pred = np.asarray(pred_class_maps)
    true = np.asarray(true_class_maps)
    if pred.shape != true.shape:
        raise ValueError(f"prediction shape {pred.shape} != ground-truth shape {true.shape}")
    scores: dict[str, float] = {}
    for g in groups:
        name = g if isinstance(g, str) else "+".join(CLASS_NAMES[i] for i in group_classes(g))
        inter, psum, tsum = overlap_counts(group_mask(pred, g), group_mask(true, g))
        denom = psum.sum() + tsum.sum()
        per_image = _dice_from_counts(inter, psum, tsum, empty=empty)
        scores[f"{name}_dice_pooled"] = float(2.0 * inter.sum() / denom) if denom else math.nan
        scores[f"{name}_dice_per_image"] = _nanmean(per_image)
        scores[f"{name}_n_images"] = float(np.isfinite(per_image).sum())
    return scores


# --------------------------------------------------------------------------------------------
# Pixel-level precision-recall
# --------------------------------------------------------------------------------------------

def aupr_per_lesion(prob_maps, true_class_maps, max_negatives: int = 2_000_000,
                    seed: int = 0, groups: Iterable = LESIONS + ("red", "yellow")
                    ) -> dict[str, float]:
    """Area under the pixel-level precision-recall curve (average precision) per lesion.

    ``prob_maps`` is the softmax map (N, H, W, C); a group's score is the sum of its channels'
    probabilities. Uses ``sklearn.metrics.average_precision_score`` on flattened pixels.

    Memory: 27 IDRiD images at full size are ~3e8 pixels. All positive pixels of a lesion are
    kept; when there are more than ``max_negatives`` negative pixels, each image contributes a
    uniform sample (seeded ``numpy`` rng) of its negatives in proportion to its share, and each
    sampled negative carries the weight ``n_negatives_of_image / n_sampled_of_image``
    (``sample_weight``). Precision is then an unbiased estimate of the full-data precision at
    every threshold, rare lesions (MA) keep every positive, and at most one image's pixels are
    indexed at a time. NaN for a lesion with no positive pixel in the ground truth.
    """
    prob = np.asarray(prob_maps)
    true = np.asarray(true_class_maps)
    if prob.shape[:-1] != true.shape:
        raise ValueError(f"probability maps {prob.shape} do not match class maps {true.shape}")
    if true.ndim == 2:
        prob, true = prob[None], true[None]
    rng = np.random.default_rng(seed)
    pixels = int(np.prod(true.shape[1:]))
    out: dict[str, float] = {}
    for g in groups:
        name = g if isinstance(g, str) else "+".join(CLASS_NAMES[i] for i in group_classes(g))
        idx = list(group_classes(g))
        n_pos = np.array([np.isin(t, idx).sum() for t in true], dtype=np.int64)
        n_neg = pixels - n_pos
        if n_pos.sum() == 0:
            out[name] = math.nan
            continue
        if n_neg.sum() > max_negatives:
            take = np.maximum(np.floor(max_negatives * n_neg / n_neg.sum()), 1).astype(np.int64)
            take = np.minimum(take, n_neg)
        else:
            take = n_neg
        scores, labels, weights = [], [], []
        for i in range(true.shape[0]):
            positive = np.isin(true[i], idx).ravel()
            score = prob[i].reshape(pixels, -1)[:, idx].sum(axis=1)
            neg = np.flatnonzero(~positive)
            if take[i] < neg.size:
                neg = rng.choice(neg, size=int(take[i]), replace=False)
            scores += [score[positive], score[neg]]
            labels += [np.ones(n_pos[i], bool), np.zeros(neg.size, bool)]
            weights += [np.ones(n_pos[i]), np.full(neg.size, n_neg[i] / max(neg.size, 1))]
        out[name] = float(average_precision_score(np.concatenate(labels),
                                                  np.concatenate(scores),
                                                  sample_weight=np.concatenate(weights)))
    return out


PR_LEVELS = 4096


def quantise_scores(prob, levels: int = PR_LEVELS) -> np.ndarray:
    """Probabilities in [0, 1] -> integer levels 0..levels-1 on a square-root scale.

    ``floor(sqrt(p) * levels)``: monotone, so the ranking of pixels is kept wherever two pixels
    fall in different levels; the steps are fine near 0 (p < 1/levels**2 shares level 0 —
    6e-8 at the default 4096) where a rare lesion's probabilities live, and ~2/levels near 1.
    """
    p = np.clip(np.asarray(prob, dtype=np.float64), 0.0, 1.0)
    return np.minimum((np.sqrt(p) * levels).astype(np.int64), levels - 1)


def score_histograms(prob, positive, levels: int = PR_LEVELS) -> np.ndarray:
    """Pixel counts per score level, split by truth: int64 (2, levels), row 0 negatives, row 1
    positives (``hist[label, level]``). Histograms of several images add up; the exact average
    precision of the quantised scores follows from their sum
    (:func:`average_precision_from_histograms`), so pixel-level AUPR streams over a test set of
    any size in constant memory, with no subsampling of negatives."""
    q = quantise_scores(prob, levels).ravel()
    label = np.asarray(positive, dtype=bool).ravel()
    if q.size != label.size:
        raise ValueError(f"{q.size} scores but {label.size} labels")
    return np.bincount(q + levels * label, minlength=2 * levels).reshape(2, levels).astype(np.int64)


def average_precision_from_histograms(hist) -> float:
    """Average precision (area under the precision-recall curve) from :func:`score_histograms`.

    ``AP = Σ_n (R_n - R_{n-1}) P_n`` over the levels from the highest down, each level one
    threshold — exactly ``sklearn.metrics.average_precision_score`` on the quantised scores (tied
    pixels share a threshold). NaN when there is no positive pixel.
    """
    hist = np.asarray(hist, dtype=np.int64)
    neg, pos = hist[0, ::-1], hist[1, ::-1]
    tp, fp = np.cumsum(pos), np.cumsum(neg)
    n_pos = tp[-1] if tp.size else 0
    if n_pos == 0:
        return math.nan
    step = pos > 0
    precision = tp[step] / (tp[step] + fp[step])
    return float(np.sum(pos[step] / n_pos * precision))


# --------------------------------------------------------------------------------------------
# Grading
# --------------------------------------------------------------------------------------------

def _check_grading(y_true, prob) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(int).ravel()
    p = np.asarray(prob, dtype=float)
    if p.ndim != 2 or p.shape[0] != y.size:
        raise ValueError(f"prob must be (N, n_grades) with N = {y.size}, got {p.shape}")
    return y, p


def roc_auc_grade(y_true, prob, grade: int) -> float:
    """One-vs-rest ROC AUC of ``grade`` (``prob[:, grade]`` scores "is this grade").

    NaN when the grade is absent from ``y_true`` or is every sample's grade: with one class
    the ROC curve is undefined (sklearn raises; we return NaN so a table can still be made).
    """
    y, p = _check_grading(y_true, prob)
    positive = y == grade
    if positive.all() or not positive.any():
        return math.nan
    return float(roc_auc_score(positive, p[:, grade]))


def roc_auc_per_grade(y_true, prob) -> np.ndarray:
    """Per-grade one-vs-rest ROC AUC (Tables 3 and 4), shape (n_grades,), fractions.

    ``y_true`` holds integer grades 0..4, ``prob`` the softmax output (N, 5). A grade absent
    from ``y_true`` (or present in every sample) gets NaN, see :func:`roc_auc_grade`.
    """
    y, p = _check_grading(y_true, prob)
    return np.array([roc_auc_grade(y, p, g) for g in range(p.shape[1])])


def mean_roc_auc(y_true, prob) -> float:
    """Mean of the defined per-grade AUCs: our reading of Table 1's single "ROC (%)"."""
    return _nanmean(roc_auc_per_grade(y_true, prob))


def quadratic_kappa(y_true, y_pred) -> float:
    """Quadratic-weighted Cohen's kappa (the Kaggle DR competition metric), via sklearn."""
    return float(cohen_kappa_score(np.asarray(y_true).ravel(), np.asarray(y_pred).ravel(),
                                   weights="quadratic"))


def confusion(y_true, y_pred, n_classes: int = N_GRADES) -> np.ndarray:
    """Confusion matrix (rows = true grade, columns = predicted), all ``n_classes`` labels."""
    return confusion_matrix(np.asarray(y_true).ravel(), np.asarray(y_pred).ravel(),
                            labels=list(range(n_classes)))


def reliability_curve(y_true, prob, n_bins: int = 10
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-label reliability diagram data: (mean confidence, accuracy, count) per bin.

    Confidence is ``max(prob)``, the prediction its argmax. Bins are equal-width on [0, 1],
    right-closed ((m-1)/M, m/M] as in Guo et al. 2017 (confidence 0 falls in the first).
    Empty bins give NaN confidence and accuracy and count 0.
    """
    y, p = _check_grading(y_true, prob)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(float)
    bins = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(bins, weights=conf, minlength=n_bins) / counts
        accuracy = np.bincount(bins, weights=correct, minlength=n_bins) / counts
    return mean_conf, accuracy, counts


def expected_calibration_error(y_true, prob, n_bins: int = 10) -> float:
    """Top-label ECE: Σ_bins (n_b / N) |accuracy_b - confidence_b| (Guo et al. 2017)."""
    conf, acc, counts = reliability_curve(y_true, prob, n_bins)
    filled = counts > 0
    if not filled.any():
        return math.nan
    return float(np.sum(counts[filled] * np.abs(acc[filled] - conf[filled])) / counts.sum())
