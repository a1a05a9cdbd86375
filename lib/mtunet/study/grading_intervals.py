"""Intervals of grading scores over a network's runs, shared by Table 1's ROC column and Tables 3-4."""
from __future__ import annotations

from typing import Mapping, Sequence

import pandas as pd

CONFIDENCE = 0.95                    # every interval of the grading tables


def same_images(runs: Sequence) -> None:
    """Runs averaged into one interval must have been scored on the same test images."""
    first = list(runs[0].image_ids)
    for ev in runs[1:]:
        if list(ev.image_ids) != first:
            raise ValueError("runs of one model were scored on different test images")


def mean_auc_intervals(runs_by_network: Mapping[str, Sequence], metric: str = "roc") -> pd.DataFrame:
    """Table 1's ROC column: per network, the 95 % interval of the mean over grades of the
    one-vs-rest AUC, averaged over its runs (:func:`mtunet.intervals.mean_auc_interval`, a bootstrap
    over images stratified by grade). `runs_by_network`: {network label: [GradingEval per seed]},
    all scored on the same images. Returns network, metric, ci_low, ci_high (percent), n_test —
    the `intervals` argument of :func:`mtunet.report.tables.compare_with_paper`."""
    from mtunet.intervals import mean_auc_interval

    rows = []
    for network, runs in runs_by_network.items():
        runs = list(runs)
        if not runs:
            continue
        same_images(runs)
        est = mean_auc_interval(runs[0].y_true, [ev.prob for ev in runs], CONFIDENCE)
        rows.append({"network": network, "metric": metric, "ci_low": 100 * est.low,
                     "ci_high": 100 * est.high, "n_test": len(runs[0].y_true)})
    return pd.DataFrame(rows, columns=["network", "metric", "ci_low", "ci_high", "n_test"])
