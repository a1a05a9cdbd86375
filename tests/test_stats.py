"""Paired t-test and mean ± std, against scipy and on degenerate input."""
import math

import numpy as np
import pytest
from scipy import stats as sps

from mtunet.stats import TTestResult, format_mean_std, mean_std, paired_ttest


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_paired_ttest_matches_scipy(alternative):
    a = np.array([75.1, 76.0, 74.3, 75.9, 74.8])
    b = np.array([73.5, 74.1, 73.9, 73.0, 74.2])
    r = paired_ttest(a, b, alternative=alternative)
    ref = sps.ttest_rel(a, b, alternative=alternative)
    assert isinstance(r, TTestResult)
    assert r.statistic == pytest.approx(ref.statistic) and r.pvalue == pytest.approx(ref.pvalue)
    assert r.df == 4 and r.n == 5 and r.mean_diff == pytest.approx(np.mean(a - b))
    assert r.reason == ""


def test_paired_ttest_n2_works_and_significance():
    r = paired_ttest([75.0, 76.0], [73.0, 73.5], alternative="greater")
    ref = sps.ttest_rel([75.0, 76.0], [73.0, 73.5], alternative="greater")
    assert r.pvalue == pytest.approx(ref.pvalue) and r.df == 1
    assert r.significant_at(0.10) == (ref.pvalue < 0.10)
    assert r.significant_at(1.0)


def test_paired_ttest_degenerate_inputs_give_nan_with_reason():
    one = paired_ttest([1.0], [0.5])
    assert math.isnan(one.pvalue) and "at least 2" in one.reason and not one.significant_at(0.10)
    flat = paired_ttest([3.0, 4.0, 5.0], [2.0, 3.0, 4.0])  # all differences equal 1
    assert math.isnan(flat.pvalue) and "zero variance" in flat.reason
    assert flat.mean_diff == 1.0 and flat.n == 3
    nan_pair = paired_ttest([1.0, np.nan, 3.0, 2.5], [0.5, 1.0, 2.0, 2.4])
    assert nan_pair.n == 3
    with pytest.raises(ValueError):
        paired_ttest([1, 2], [1, 2, 3])
    with pytest.raises(ValueError):
        paired_ttest([1, 2], [1, 2], alternative="bigger")


def test_mean_std_ddof1_and_format():
    m, s = mean_std([74.5, 75.2, 75.75])
    assert m == pytest.approx(np.mean([74.5, 75.2, 75.75]))
    assert s == pytest.approx(np.std([74.5, 75.2, 75.75], ddof=1))
    assert math.isnan(mean_std([1.0])[1]) and math.isnan(mean_std([])[0])
    assert format_mean_std(75.15, 0.778) == "75.15 ± 0.78"
    assert format_mean_std(75.15, 0.778, digits=3) == "75.150 ± 0.778"
    assert format_mean_std(75.15, float("nan")) == "75.15"
    assert format_mean_std(float("nan"), 1.0) == "n/a"
