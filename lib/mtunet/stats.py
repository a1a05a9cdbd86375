"""Statistics for comparing runs: the paper's paired t-test and its "mean ± std over 3 runs".

The paper (text under Table 2) reports that "under the paired t-test at 10% significance level,
the improvement of MTUnet over LinkNet is statistically significant". It does not say what is
paired; with three runs per network the natural pairs are runs sharing a seed, or the 27 test
images scored by both networks. :func:`paired_ttest` takes whichever two aligned arrays the
caller pairs and wraps :func:`scipy.stats.ttest_rel`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as _sps

ALTERNATIVES = ("two-sided", "greater", "less")


@dataclass(frozen=True)
class TTestResult:
    """Result of a paired t-test of ``a`` against ``b`` (differences are ``a - b``).

    ``pvalue`` is NaN when the test is undefined; ``reason`` then says why (fewer than two
    pairs, or all differences identical so the standard error is zero).
    """

    statistic: float
    pvalue: float
    df: float
    n: int
    mean_diff: float
    alternative: str = "two-sided"
    reason: str = ""

    def significant_at(self, level: float) -> bool:
        """True when ``pvalue < level`` (the paper's: ``paper.SIGNIFICANCE_LEVEL``); False when
        the p-value is NaN (undefined test)."""
        return bool(np.isfinite(self.pvalue) and self.pvalue < level)


def paired_ttest(a, b, alternative: str = "two-sided") -> TTestResult:
    """Paired t-test of ``a`` vs ``b`` via :func:`scipy.stats.ttest_rel`.

    ``alternative="greater"`` tests mean(a - b) > 0 (e.g. a = MTUnet, b = LinkNet).
    Pairs where either value is NaN are dropped. Never raises on degenerate input: with fewer
    than two pairs, or zero variance of the differences, the p-value is NaN and ``reason`` says
    why (scipy would warn and return NaN or ±inf).
    """
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired samples need equal lengths, got {a.size} and {b.size}")
    keep = np.isfinite(a) & np.isfinite(b)
    diff = a[keep] - b[keep]
    n = int(diff.size)
    mean_diff = float(diff.mean()) if n else math.nan
    nan = math.nan
    if n < 2:
        return TTestResult(nan, nan, nan, n, mean_diff, alternative,
                           reason=f"needs at least 2 pairs, got {n}")
    if np.ptp(diff) == 0:
        return TTestResult(nan, nan, float(n - 1), n, mean_diff, alternative,
                           reason="all paired differences are equal (zero variance): "
                                  "the t statistic is undefined")
    res = _sps.ttest_rel(a[keep], b[keep], alternative=alternative)
    return TTestResult(float(res.statistic), float(res.pvalue), float(res.df), n, mean_diff,
                       alternative)


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) of ``values``, NaNs dropped.

    ddof=1 because the paper's ± summarises three runs as a sample from the distribution of
    training runs (the paper does not say; with n=3 ddof=0 would be 18 % smaller). One value
    gives std NaN; no values give (NaN, NaN).
    """
    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan
    std = float(np.std(v, ddof=1)) if v.size > 1 else math.nan
    return float(np.mean(v)), std


def format_mean_std(mean: float, std: float, digits: int = 2) -> str:
    """``"75.15 ± 0.78"``; a NaN std prints the mean alone, a NaN mean prints ``"n/a"``."""
    if mean is None or not np.isfinite(mean):
        return "n/a"
    if std is None or not np.isfinite(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"
