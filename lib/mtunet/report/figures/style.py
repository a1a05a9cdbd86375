"""The style every figure of the study shares: its colours, readable names, fonts, how a figure
is saved, and the small helpers several figures use (lesion legends, DR-grade ticks, a legend
under the panels, number formatting, the predicted/true area beside a Dice).

Conventions, so that each figure reads at a glance: titles name the data set, the metric and its
unit; axes and legends use readable names (:func:`readable`), never column names; DR grades are
categories (integer ticks with their names, :func:`grade_ticks`).

Seaborn styling is applied per figure (:func:`_styled`, a context manager), never globally;
matplotlib and seaborn are imported on first use, so importing this module needs neither.
:func:`save` writes a PNG and closes the figure.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from mtunet.config import CLASS_COLOURS, CLASS_NAMES_WITH_OD, CLASS_INDEX, GRADE_NAMES, LESION_NAMES


# Colours of the error map: chosen away from the lesion colours (reds, yellows, orange, purple).
ERROR_COLOURS = {"TP": (0, 200, 0), "FP": (0, 110, 255), "FN": (255, 0, 255)}
ERROR_LABELS = {"TP": "true positive", "FP": "false positive", "FN": "false negative (missed)"}

# Paper vs ours: the same two colours in every comparison figure.
PAPER_COLOUR = "#7f7f7f"
OURS_COLOUR = "#1f5fa8"

# Readable names of the study's metric and column names (axis labels, legends, panel titles).
METRIC_LABELS = {
    "loss": "training loss", "seg_loss": "segmentation loss", "grade_loss": "grading loss",
    "red_dice": "red-lesion Dice", "yellow_dice": "yellow-lesion Dice", "dice": "Dice",
    "acc": "grade accuracy", "roc": "mean ROC AUC", "kappa": "quadratic kappa",
    "red": "red lesions (MA + HE)", "yellow": "yellow lesions (EX + SE)",
}
# Segmentation losses (mtunet.losses.SEGMENTATION_LOSSES) as a reader names them.
LOSS_LABELS = {"bce": "binary cross-entropy", "dice": "Dice", "generalized_dice": "generalised Dice",
               "bce_dice": "BCE + Dice", "focal": "focal", "weighted_dice": "weighted Dice",
               "dice_focal": "Dice + focal", "ce_dice": "cross-entropy + Dice"}

_OD_INDEX = CLASS_INDEX["OD"]


def readable(name) -> str:
    """A reader's name for a metric or column ("red_dice" -> "red-lesion Dice", "HE_fraction" ->
    "Haemorrhages"), so no figure shows a raw column name."""
    key = str(name)
    if key in METRIC_LABELS:
        return METRIC_LABELS[key]
    if key.startswith("val_"):
        return readable(key[4:]) + " (validation)"
    if key.endswith("_fraction") and key[: -len("_fraction")] in LESION_NAMES:
        return LESION_NAMES[key[: -len("_fraction")]]
    if key in LOSS_LABELS:
        return LOSS_LABELS[key]
    return key.replace("_", " ")


# --------------------------------------------------------------------------------------------
# Matplotlib plumbing
# --------------------------------------------------------------------------------------------

def _plt():
    import matplotlib.pyplot as plt  # imported lazily: overlay() users need no matplotlib
    return plt


def _styled(func):
    """Build the figure inside a light seaborn style, without touching global rcParams."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        import seaborn as sns
        plt = _plt()
        with sns.axes_style("whitegrid"), plt.rc_context(
                {"axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 9,
                 "ytick.labelsize": 9, "legend.fontsize": 8.5, "figure.titlesize": 13,
                 "figure.titleweight": "bold"}):
            return func(*args, **kwargs)
    return wrapper


def save(fig, path) -> Path:
    """Write ``fig`` as a PNG (dpi 120, tight bounding box), creating the folder; close it."""
    from mtunet.files import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    _plt().close(fig)
    return path


def save_and_show(fig, path) -> None:
    """Save ``fig`` (see :func:`save`) and display the PNG in a notebook, the way a reader sees it."""
    from IPython.display import Image, display

    display(Image(filename=str(save(fig, path))))


def _image_axis(ax, img, title: str | None = None) -> None:
    ax.imshow(img, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    if title:
        ax.set_title(title)


def _lesion_handles(include_od: bool = True, present: Iterable[int] | None = None):
    from matplotlib.patches import Patch
    keep = None if present is None else set(int(i) for i in present)
    handles = []
    for idx, name in enumerate(CLASS_NAMES_WITH_OD):
        if idx == 0 or name not in CLASS_COLOURS or (idx == _OD_INDEX and not include_od):
            continue
        if keep is not None and idx not in keep:
            continue
        handles.append(Patch(facecolor=np.asarray(CLASS_COLOURS[name]) / 255.0, edgecolor="k",
                             linewidth=0.5, label=f"{name} – {LESION_NAMES.get(name, name)}"))
    return handles


def _grade_names(n: int) -> list[str]:
    return [GRADE_NAMES[i] if i < len(GRADE_NAMES) else f"grade {i}" for i in range(n)]


def grade_ticks(ax, grades: Sequence[int], axis: str = "x", counts: Sequence | None = None,
                label: str = "DR grade") -> None:
    """Put the DR grades on ``axis`` as categories: one integer tick per grade, labelled
    "0 No DR" … "4 Proliferative" (with "n=…" under it when ``counts`` is given), limits half a
    grade beyond the ends. A grade is a class, so an axis must never show 0.5 or 2.5."""
    grades = [int(g) for g in grades]
    names = _grade_names(max(grades) + 1 if grades else 0)
    labels = [f"{g} {names[g]}" + (f"\nn={int(counts[k])}" if counts is not None else "")
              for k, g in enumerate(grades)]
    set_ticks, set_labels, set_lim, set_label = (
        (ax.set_xticks, ax.set_xticklabels, ax.set_xlim, ax.set_xlabel) if axis == "x" else
        (ax.set_yticks, ax.set_yticklabels, ax.set_ylim, ax.set_ylabel))
    set_ticks(grades)
    set_labels(labels)
    if grades:
        set_lim(min(grades) - 0.5, max(grades) + 0.5)
    set_label(label)


def _lesion_colour(label) -> tuple[float, float, float]:
    key = str(label)
    if key.endswith("_fraction"):
        key = key[: -len("_fraction")]
    for abbr, full in LESION_NAMES.items():
        if key.strip().lower() in (abbr.lower(), full.lower()):
            key = abbr
            break
    rgb = CLASS_COLOURS.get(key)
    return tuple(np.asarray(rgb) / 255.0) if rgb else (0.5, 0.5, 0.5)


def _num(value) -> float:
    """float(value), NaN for anything missing or not a number (table cells may be "" or None)."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


def _fmt(value: float) -> str:
    """A table value for a label: two decimals under 10 (so 0.35 is not "0.3"), one above."""
    if not np.isfinite(value):
        return "n/a"
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


def _legend_below(fig, handles, ncol: int | None = None, fontsize: float | None = None) -> float:
    """A figure-level legend under the panels; returns the share of the figure height it takes
    (the ``rect`` bottom for ``tight_layout``)."""
    if not handles:
        return 0.0
    ncol = ncol or min(len(handles), 4)
    rows = math.ceil(len(handles) / ncol)
    fig.legend(handles=handles, loc="lower center", ncol=ncol, frameon=False,
               bbox_to_anchor=(0.5, 0.0), fontsize=fontsize)
    return min(0.45, (0.24 * rows + 0.15) / fig.get_figheight())


def _isnan(v) -> bool:
    try:
        return bool(np.isnan(float(v)))
    except (TypeError, ValueError):
        return True


# --------------------------------------------------------------------------------------------
# Area annotations: every lesion Dice drawn with the predicted/true area it rests on
# --------------------------------------------------------------------------------------------

def _area_label(row) -> tuple[str, bool]:
    """(" · area 0.97×" or " · red area 3.2× (a flood)", whether any ratio is a flood or a
    collapse) for a comparison row carrying area ratios (Table 2: ``area_ratio``; Table 1's Dice:
    ``red_area_ratio`` and ``yellow_area_ratio``): every Dice drawn with the area it rests on."""
    from mtunet.report.claims import area_problem, area_text

    if np.isfinite(_num(row.get("area_ratio"))):
        ratios = {"": _num(row.get("area_ratio"))}
    else:
        ratios = {k[: -len("_area_ratio")]: _num(row.get(k)) for k in row.index
                  if str(k).endswith("_area_ratio") and np.isfinite(_num(row.get(k)))}
    parts = [area_text(v, group) for group, v in ratios.items()]
    return ((" · " + ", ".join(parts)) if parts else "",
            any(area_problem(v) for v in ratios.values()))


def _ablation_areas(data, column: str) -> list[str]:
    """Per row, "area 3.2×\\n(a flood)" for a red/yellow Dice column whose table carries the
    predicted/true area ratio (``red_area_ratio``), else "": every lesion Dice with its area."""
    from mtunet.report.claims import area_text

    ratio_column = column.replace("_dice", "_area_ratio")
    if not column.endswith("_dice") or ratio_column not in data.columns:
        return [""] * len(data)
    return [area_text(r, sep="\n") if np.isfinite(_num(r)) else "" for r in data[ratio_column]]
