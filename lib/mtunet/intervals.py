"""Confidence intervals of the metrics in :mod:`mtunet.metrics`: bootstrap (percentile or BCa,
over images, stratified by grade where a grade is rare) and DeLong's for ROC AUC, of one run or the
mean of several runs scored on the same images. scipy does the bootstrap."""
from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Callable

import numpy as np
from scipy import stats as _sps

from mtunet.metrics import (_check_grading, _dice_from_counts, _nanmean, group_mask,  # noqa: F401
                            overlap_counts, roc_auc_grade)


# --------------------------------------------------------------------------------------------
# Bootstrap intervals
# --------------------------------------------------------------------------------------------

class Interval(tuple):
    """A (low, high) confidence interval; ``reason`` says why it is NaN when it is."""

    def __new__(cls, low: float, high: float, reason: str = ""):
        self = super().__new__(cls, (float(low), float(high)))
        self.reason = reason
        return self

    @property
    def low(self) -> float:
        return self[0]

    @property
    def high(self) -> float:
        return self[1]

    def __repr__(self) -> str:
        extra = f", reason={self.reason!r}" if self.reason else ""
        return f"Interval(low={self[0]!r}, high={self[1]!r}{extra})"


def bootstrap_ci(statistic: Callable[..., float], *arrays, n_resamples: int = 1000,
                 confidence: float = 0.95, seed: int = 0, method: str = "percentile"
                 ) -> Interval:
    """Bootstrap interval of ``statistic(*arrays)``, resampling the first axis jointly.

    Wraps ``scipy.stats.bootstrap`` (``paired=True`` in effect: the same resampled indexes are
    applied to every array, so an image's prediction stays with its truth). ``method`` is
    ``"percentile"`` (default) or ``"BCa"``.

    Returns an :class:`Interval` (a 2-tuple ``(low, high)``). It is ``(NaN, NaN)`` with a
    ``reason`` when fewer than 2 samples are given, or when the statistic is undefined (NaN or
    an exception) on some resample — e.g. a ROC AUC whose resample holds one class only, or a
    per-image Dice whose resample holds no image with that lesion. Dropping those resamples
    would bias the interval towards easy resamples, so we report no interval rather than a
    wrong one.
    """
    if method not in ("percentile", "BCa"):
        raise ValueError(f"method must be 'percentile' or 'BCa', got {method!r}")
    arrays = [np.asarray(a) for a in arrays]
    if not arrays:
        raise ValueError("bootstrap_ci needs at least one array")
    n = arrays[0].shape[0]
    if any(a.shape[0] != n for a in arrays):
        raise ValueError(f"arrays differ in length: {[a.shape[0] for a in arrays]}")
    if n < 2:
        return Interval(math.nan, math.nan, f"needs at least 2 samples, got {n}")

    def on_indexes(idx):
        idx = np.asarray(idx).astype(int)
        try:
            return float(statistic(*(a[idx] for a in arrays)))
        except (ValueError, ZeroDivisionError, FloatingPointError):
            return math.nan

    if not np.isfinite(on_indexes(np.arange(n))):
        return Interval(math.nan, math.nan, "the statistic is undefined on the full sample")
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's DegenerateDataWarning: handled below
        res = _sps.bootstrap((np.arange(n),), on_indexes, n_resamples=n_resamples,
                             confidence_level=confidence, method=method,
                             vectorized=False, random_state=np.random.default_rng(seed))
    n_bad = int((~np.isfinite(res.bootstrap_distribution)).sum())
    if n_bad:
        return Interval(math.nan, math.nan,
                        f"the statistic is undefined on {n_bad} of {n_resamples} resamples "
                        "(e.g. a resample with one class only)")
    low, high = res.confidence_interval
    if not (np.isfinite(low) and np.isfinite(high)):
        return Interval(math.nan, math.nan, f"{method} interval is degenerate "
                                            "(constant bootstrap distribution)")
    return Interval(low, high)


def auc_ci(y_true, prob, grade: int, **kwargs) -> Interval:
    """Bootstrap interval of the one-vs-rest ROC AUC of ``grade``, resampling images."""
    y, p = _check_grading(y_true, prob)
    return bootstrap_ci(lambda yy, pp: roc_auc_grade(yy, pp, grade), y, p, **kwargs)


def dice_ci(pred_class_maps, true_class_maps, group, kind: str = "pooled",
            empty: str = "skip", **kwargs) -> Interval:
    """Bootstrap interval of a group's Dice, resampling test images.

    ``kind`` is ``"pooled"`` or ``"per_image"`` (then ``empty`` applies, see
    :func:`dice_per_image`). Resamples the per-image overlap counts, so it is cheap even for
    full-size images.
    """
    if kind not in ("pooled", "per_image"):
        raise ValueError(f"kind must be 'pooled' or 'per_image', got {kind!r}")
    counts = np.stack(overlap_counts(group_mask(pred_class_maps, group),
                                     group_mask(true_class_maps, group)), axis=1)

    def stat(c):
        inter, psum, tsum = c[:, 0], c[:, 1], c[:, 2]
        if kind == "pooled":
            denom = psum.sum() + tsum.sum()
            return 2.0 * inter.sum() / denom if denom else math.nan
        return _nanmean(_dice_from_counts(inter, psum, tsum, empty=empty))

    return bootstrap_ci(stat, counts, **kwargs)


# --------------------------------------------------------------------------------------------
# ROC AUC intervals (Table 1's ROC column, Tables 3 and 4)
# --------------------------------------------------------------------------------------------
#
# Per grade: DeLong's interval (DeLong, DeLong & Clarke-Pearson 1988; the fast algorithm of Sun &
# Xu 2014), the default of pROC. It needs no resampling, so a grade with few positives still gets
# one (from 2 positives and 2 negatives on), and it extends to the mean of several runs scored on
# the same images through the covariance of their AUCs. The mean over grades (Table 1's "ROC")
# mixes AUCs of different positive sets, which DeLong's covariance does not cover: there we use a
# bootstrap over images, stratified by true grade so every resample keeps each grade's count
# (no resample loses the rare grades, whose AUC would then be undefined).

@dataclasses.dataclass(frozen=True)
class AucEstimate:
    """A ROC AUC (fraction; the mean over runs when several) with its interval.

    grade:      the one-vs-rest grade, or None for the mean over grades (Table 1's ROC).
    n_positive: images of that grade (for the mean: the fewest positives of the grades averaged).
    reason:     why ``low``/``high`` are NaN (too few positives or negatives, ...).
    """

    grade: int | None
    auc: float
    low: float
    high: float
    n_positive: int
    n_negative: int
    n_runs: int
    method: str
    reason: str = ""


def _stack_runs(y_true, probs) -> tuple[np.ndarray, np.ndarray]:
    """(y (N,), P (k, N, G)) from one (N, G) array or a sequence of them (one per run)."""
    if isinstance(probs, np.ndarray):
        arrays = [probs] if probs.ndim == 2 else list(probs)
    else:
        arrays = list(probs)
        if arrays and np.ndim(arrays[0]) == 1:      # one run given as nested lists of rows
            arrays = [np.asarray(arrays)]
    if not arrays:
        raise ValueError("no predictions given")
    checked = [_check_grading(y_true, p) for p in arrays]
    shapes = {p.shape for _, p in checked}
    if len(shapes) != 1:
        raise ValueError(f"runs differ in shape: {sorted(shapes)}")
    return checked[0][0], np.stack([p for _, p in checked])


def delong_covariance(positive, scores) -> tuple[np.ndarray, np.ndarray]:
    """AUCs (k,) of k scorers of the same images and their DeLong covariance (k, k).

    ``positive`` (N,) bool; ``scores`` (k, N) or (N,). Ties count one half (midranks). The
    covariance is NaN with fewer than 2 positives or 2 negatives.
    """
    positive = np.asarray(positive, dtype=bool).ravel()
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    m, n = int(positive.sum()), int((~positive).sum())
    if m == 0 or n == 0:
        raise ValueError("ROC AUC needs at least one positive and one negative image")
    pos, neg = scores[:, positive], scores[:, ~positive]
    tx = _sps.rankdata(pos, axis=1)
    ty = _sps.rankdata(neg, axis=1)
    tz = _sps.rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    aucs = tz[:, :m].sum(axis=1) / (m * n) - (m + 1.0) / (2.0 * n)
    k = scores.shape[0]
    if m < 2 or n < 2:
        return aucs, np.full((k, k), math.nan)
    v01 = (tz[:, :m] - tx) / n               # structural components of the positives
    v10 = 1.0 - (tz[:, m:] - ty) / m         # ... and of the negatives
    cov = np.atleast_2d(np.cov(v01)) / m + np.atleast_2d(np.cov(v10)) / n
    return aucs, cov


def auc_delong(y_true, probs, grade: int, confidence: float = 0.95) -> AucEstimate:
    """One-vs-rest ROC AUC of ``grade`` with DeLong's interval; with several runs (a sequence of
    (N, G) arrays on the same images) the AUC is their mean and the interval accounts for their
    correlation. Interval: AUC ± z·SE, clipped to [0, 1]."""
    y, P = _stack_runs(y_true, probs)
    positive = y == grade
    m, n, k = int(positive.sum()), int((~positive).sum()), P.shape[0]
    if m == 0 or n == 0:
        return AucEstimate(grade, math.nan, math.nan, math.nan, m, n, k, "DeLong",
                           "no positive image" if m == 0 else "no negative image")
    aucs, cov = delong_covariance(positive, P[:, :, grade])
    auc = float(aucs.mean())
    var = float(cov.sum()) / k ** 2
    if not np.isfinite(var):
        return AucEstimate(grade, auc, math.nan, math.nan, m, n, k, "DeLong",
                           f"{m} positive / {n} negative images: DeLong needs at least 2 of each")
    z = float(_sps.norm.ppf(0.5 + confidence / 2))
    half = z * math.sqrt(max(var, 0.0))
    reason = "zero variance (the scores separate the classes perfectly)" if var <= 0 else ""
    return AucEstimate(grade, auc, max(0.0, auc - half), min(1.0, auc + half), m, n, k, "DeLong",
                       reason)


def stratified_indexes(y, n_resamples: int, seed: int = 0) -> np.ndarray:
    """(n_resamples, N) bootstrap indexes drawn within each class of ``y``: column j holds an
    image of the same class in every resample (so each class keeps its count)."""
    y = np.asarray(y).ravel()
    rng = np.random.default_rng(seed)
    columns = []
    for c in np.unique(y):
        where = np.flatnonzero(y == c)
        columns.append(where[rng.integers(0, where.size, size=(n_resamples, where.size))])
    return np.concatenate(columns, axis=1)


def _rank_auc(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Row-wise ROC AUC of scores (B, N) against one label vector (N,), midranks for ties."""
    m, n = int(positive.sum()), int((~positive).sum())
    ranks = _sps.rankdata(scores, axis=1)
    return (ranks[:, positive].sum(axis=1) - m * (m + 1) / 2.0) / (m * n)


def mean_auc_interval(y_true, probs, confidence: float = 0.95, n_resamples: int = 2000,
                      seed: int = 0) -> AucEstimate:
    """Mean over grades of the one-vs-rest AUC (Table 1's ROC; grades absent from ``y_true``
    skipped, as :func:`mean_roc_auc`), averaged over runs, with a percentile interval from a
    bootstrap over images stratified by true grade (the same resamples for every run)."""
    y, P = _stack_runs(y_true, probs)
    grades = [g for g in range(P.shape[2]) if 0 < int((y == g).sum()) < y.size]
    k = P.shape[0]
    if not grades:
        return AucEstimate(None, math.nan, math.nan, math.nan, 0, y.size, k,
                           "stratified bootstrap", "fewer than two grades in the test set")
    point = float(np.mean([roc_auc_grade(y, p, g) for p in P for g in grades]))
    idx = stratified_indexes(y, n_resamples, seed)
    y_res = y[idx[0]]
    stats = np.zeros(n_resamples)
    for p in P:
        for g in grades:
            stats += _rank_auc(p[:, g][idx], y_res == g)
    stats /= k * len(grades)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha])
    counts = [int((y == g).sum()) for g in grades]
    return AucEstimate(None, point, float(low), float(high), min(counts), y.size - min(counts), k,
                       "stratified bootstrap")


def auc_intervals(y_true, probs, confidence: float = 0.95, n_resamples: int = 2000,
                  seed: int = 0) -> list[AucEstimate]:
    """Per grade (DeLong, :func:`auc_delong`) and, last, the mean over grades (stratified
    bootstrap, :func:`mean_auc_interval`), for one run or the mean of several on the same images."""
    _, P = _stack_runs(y_true, probs)
    return [*(auc_delong(y_true, probs, g, confidence) for g in range(P.shape[2])),
            mean_auc_interval(y_true, probs, confidence, n_resamples, seed)]
