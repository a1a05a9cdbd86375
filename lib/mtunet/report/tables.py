"""Result tables: our numbers beside the paper's, written as CSV and Markdown.

Every table row holds the paper's published value (from `mtunet.paper`, never retyped), ours
(mean ± std over runs, plus a bootstrap interval where one was computed) and the difference.
Numbers are percentages, as in the paper.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from mtunet.stats import format_mean_std, mean_std


def write_table(frame: pd.DataFrame, results_dir: Path, name: str, title: str | None = None,
                note: str | None = None) -> Path:
    """`<name>.csv` (full precision) and `<name>.md` (rounded, for reading); returns the CSV path."""
    from mtunet.files import atomic_path, write_text

    csv_path = Path(results_dir) / f"{name}.csv"
    with atomic_path(csv_path) as tmp:
        frame.to_csv(tmp, index=False)
    write_text(csv_path.with_suffix(".md"), to_markdown(frame, title, note))
    return csv_path


def read_table(results_dir: Path, name: str) -> pd.DataFrame | None:
    """`<name>.csv` written by :func:`write_table`, or None when it is missing or empty."""
    path = Path(results_dir) / f"{name}.csv"
    try:
        return pd.read_csv(path) if path.exists() else None
    except pd.errors.EmptyDataError:
        return None


def to_markdown(frame: pd.DataFrame, title: str | None = None, note: str | None = None) -> str:
    parts = [f"### {title}\n"] if title else []
    parts.append(frame.to_markdown(index=False, floatfmt=".2f", missingval="–"))
    if note:
        parts.append(f"\n{note}")
    return "\n".join(parts) + "\n"


def compare_with_paper(ours: pd.DataFrame, paper: pd.DataFrame, key: str = "metric",
                       intervals: pd.DataFrame | None = None,
                       models: Sequence[str] = ()) -> pd.DataFrame:
    """One row per (network, key): paper mean/std, ours mean/std over runs, n runs, difference.

    ours:      long form, columns network, <key>, seed, value (percent)
    paper:     mtunet.paper.tableN_frame() (model, network, <key>, paper_mean, paper_std)
    intervals: optional, columns network, <key>, ci_low, ci_high (bootstrap over test images)
    models:    the registry names behind `ours`; a smaller stand-in (NASNetMobile for NASNet)
               is compared with the row of the model it stands in for, under its own name.
    A paper row with no run of ours stays in the table with empty "ours" cells and the reason
    in `status`, so a missing experiment is visible rather than silently dropped.
    """
    from mtunet.models.registry import MODELS, label

    stand_ins = {label(m): label(MODELS[m].paper_model) for m in models if MODELS[m].stands_in_for}
    paper = paper.drop(columns="model")
    for ours_label, paper_label in stand_ins.items():
        paper = paper.replace({"network": {paper_label: ours_label}})
    rows = []
    for (network, item), group in ours.groupby(["network", key], sort=False):
        mean, std = mean_std(group["value"].to_numpy(dtype=float))
        rows.append({"network": network, key: item, "ours_mean": mean, "ours_std": std,
                     "n_runs": int(group["value"].notna().sum())})
    reproduced = pd.DataFrame(rows, columns=["network", key, "ours_mean", "ours_std", "n_runs"])
    table = paper.merge(reproduced, on=["network", key], how="outer")
    if intervals is not None and len(intervals):
        table = table.merge(intervals, on=["network", key], how="left")
    else:
        table["ci_low"] = np.nan
        table["ci_high"] = np.nan
    table["difference"] = table["ours_mean"] - table["paper_mean"]
    table["paper"] = [_cell(m, s) for m, s in zip(table["paper_mean"], table["paper_std"])]
    table["ours"] = [_cell(m, s) for m, s in zip(table["ours_mean"], table["ours_std"])]
    table["status"] = [_status(m, p, n) for m, p, n in
                       zip(table["ours_mean"], table["paper_mean"], table["n_runs"])]
    order = ["network", key, "paper", "ours", "difference", "ci_low", "ci_high", "n_runs",
             "paper_mean", "paper_std", "ours_mean", "ours_std", "status"]
    return table[order]


def _status(ours_mean: float, paper_mean: float, n_runs: float) -> str:
    if pd.isna(n_runs):
        return "not run"
    if pd.isna(ours_mean):
        return "undefined in every run (e.g. a grade absent from the test set)"
    return "no paper value" if pd.isna(paper_mean) else ""


def interval_cell(mean: float, std: float, low: float, high: float) -> str:
    """"mean ± std [low, high]" (an interval, e.g. DeLong's for an AUC, after the run-to-run
    spread); without a defined interval, the plain mean ± std cell."""
    cell = _cell(mean, std)
    if not cell or pd.isna(low) or pd.isna(high):
        return cell
    return f"{cell} [{low:.2f}, {high:.2f}]"


def _cell(mean: float, std: float) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return ""
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean:.2f}"
    return format_mean_std(mean, std)
