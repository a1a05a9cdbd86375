"""Figures of the study: lesion overlays (the paper's Fig. 6), data balance, training curves,
grading diagnostics (ROC, confusion, calibration), ablations and paper-versus-ours comparisons.

Every plotting function builds and returns a matplotlib ``Figure``; none calls ``plt.show``,
so the module works headless (Agg) and in notebooks alike. :func:`save` writes a PNG and
closes the figure. :func:`overlay` and :func:`error_map_rgb` are pure numpy/OpenCV and return
uint8 RGB arrays, so the prediction CLI can use them without matplotlib.

Conventions, so that each figure reads at a glance: titles name the data set, the metric and its
unit; axes and legends use readable names (:func:`readable`), never column names; DR grades are
categories (integer ticks with their names, :func:`grade_ticks`); overlay legends list only the
classes drawn; predictions outside the fundus are not painted (scoring ignores them too).

Seaborn styling is applied per figure (a context manager), never globally.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import cv2
import numpy as np
import pandas as pd

from mtunet.config import (CLASS_COLOURS, CLASS_NAMES_WITH_OD, CLASS_INDEX, GRADE_NAMES, LESION_GROUPS,
                     LESION_NAMES, group_classes)

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
# Pure-array helpers (no matplotlib)
# --------------------------------------------------------------------------------------------

def _as_rgb_uint8(image) -> np.ndarray:
    """uint8 (H, W, 3) copy of an RGB image; accepts grey (H, W), RGBA, or floats in [0, 1]."""
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ValueError(f"image must be (H, W), (H, W, 3) or (H, W, 4), got {img.shape}")
    img = img[..., :3]
    if img.dtype != np.uint8:
        img = img.astype(float)
        if img.size and np.nanmax(img) <= 1.0:
            img = img * 255.0
        img = np.clip(np.nan_to_num(img), 0, 255).round().astype(np.uint8)
    return np.ascontiguousarray(img)


def _fit_map(class_map, shape: tuple[int, int]) -> np.ndarray:
    """Class map resized (nearest neighbour) to ``shape`` = (H, W) when it differs."""
    cm = np.asarray(class_map)
    if cm.ndim == 3 and cm.shape[-1] == 1:
        cm = cm[..., 0]
    if cm.ndim != 2:
        raise ValueError(f"class map must be (H, W) of class indexes, got {cm.shape}")
    cm = cm.astype(np.uint8)
    if cm.shape != tuple(shape):
        cm = cv2.resize(cm, (int(shape[1]), int(shape[0])), interpolation=cv2.INTER_NEAREST)
    return cm


def fundus_fov(image) -> np.ndarray:
    """Field of view of a fundus image, bool (H, W): the data layer's
    :func:`~mtunet.data.preprocess.fundus_mask`, so an overlay hides exactly the pixels the
    scoring ignores (a prediction on the black border is not a lesion anyone counts)."""
    from mtunet.data.preprocess import fundus_mask

    return fundus_mask(_as_rgb_uint8(image))


def _inside(class_map, fov) -> np.ndarray:
    """``class_map`` with every pixel outside ``fov`` (bool, same shape) set to background."""
    cm = np.asarray(class_map)
    return cm if fov is None else np.where(np.asarray(fov, bool), cm, 0).astype(cm.dtype)


def present_classes(class_maps: Iterable, include_od: bool = True) -> set[int]:
    """Lesion classes (indexes > 0, OD only with ``include_od``) found in any of the maps
    (``None`` maps skipped): what an overlay legend may list, and nothing else."""
    found: set[int] = set()
    for cm in class_maps:
        if cm is not None:
            found.update(int(v) for v in np.unique(np.asarray(cm)))
    found.discard(0)
    if not include_od:
        found.discard(_OD_INDEX)
    return {i for i in found if 0 < i < len(CLASS_NAMES_WITH_OD)}


def _group_label(group) -> str:
    if isinstance(group, str) and group in LESION_GROUPS:
        names = "+".join(CLASS_NAMES_WITH_OD[i] for i in LESION_GROUPS[group])
        return f"{group} lesions ({names})"
    return "lesions " + "+".join(CLASS_NAMES_WITH_OD[i] for i in group_classes(group))


def overlay(image, class_map, alpha: float = 0.55, include_od: bool = True,
            dilate: int = 0, fov=None) -> np.ndarray:
    """Image with lesion pixels painted in their ``CLASS_COLOURS`` (as in the paper's Fig. 6).

    Red family for MA/HE, yellow family for EX/SE, purple for the optic disc (class 5, skipped
    when ``include_od`` is False). Pixel = (1 - alpha) * image + alpha * colour; background
    (class 0) and unknown indexes are left unchanged. A class map of another size than the
    image is resized to it with nearest-neighbour interpolation. ``dilate`` > 0 grows each
    lesion by that many pixels (display only: microaneurysms of a few pixels vanish when a
    full-resolution fundus is shown a few inches wide). ``fov`` (bool (H, W), e.g.
    :func:`fundus_fov`) leaves every pixel outside it unpainted, dilated ones included.
    Returns uint8 RGB (H, W, 3).
    """
    img = _as_rgb_uint8(image)
    cm = _inside(_fit_map(class_map, img.shape[:2]), fov)
    out = img.astype(np.float32)
    a = float(np.clip(alpha, 0.0, 1.0))
    order = [_OD_INDEX] + [i for i in range(1, len(CLASS_NAMES_WITH_OD)) if i != _OD_INDEX]
    for idx in order:  # optic disc first, so (dilated) lesions are painted on top of it
        name = CLASS_NAMES_WITH_OD[idx]
        if name not in CLASS_COLOURS or (idx == _OD_INDEX and not include_od):
            continue
        mask = cm == idx
        if dilate and dilate > 0 and mask.any():
            kernel = np.ones((2 * int(dilate) + 1,) * 2, np.uint8)
            mask = cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)
            if fov is not None:
                mask &= np.asarray(fov, bool)
        if mask.any():
            colour = np.asarray(CLASS_COLOURS[name], np.float32)
            out[mask] = (1.0 - a) * out[mask] + a * colour
    return np.clip(out.round(), 0, 255).astype(np.uint8)


def _error_masks(pred_map, truth_map, shape, group, fov=None):
    classes = list(group_classes(group))
    pred = np.isin(_fit_map(pred_map, shape), classes)
    true = np.isin(_fit_map(truth_map, shape), classes)
    if fov is not None:
        pred &= np.asarray(fov, bool)
        true &= np.asarray(fov, bool)
    return {"TP": pred & true, "FP": pred & ~true, "FN": ~pred & true}


def error_map_rgb(image, pred_map, truth_map, group="red", alpha: float = 1.0,
                  grey_background: bool = True, fov=None) -> np.ndarray:
    """Per-pixel segmentation errors of one lesion group, painted on the image (uint8 RGB).

    TP green, FP blue, FN magenta (``ERROR_COLOURS``), colours chosen to differ from the lesion
    colours. The image is shown in grey (``grey_background``) so the error colours stand out;
    true-negative pixels are left as that grey image. Maps are resized (nearest) to the image;
    pixels outside ``fov`` (bool (H, W)) count as neither error, as in the scoring.
    """
    img = _as_rgb_uint8(image)
    if grey_background:
        grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        img = np.stack([grey] * 3, axis=-1)
    out = img.astype(np.float32)
    a = float(np.clip(alpha, 0.0, 1.0))
    for key, mask in _error_masks(pred_map, truth_map, img.shape[:2], group, fov).items():
        if mask.any():
            out[mask] = (1.0 - a) * out[mask] + a * np.asarray(ERROR_COLOURS[key], np.float32)
    return np.clip(out.round(), 0, 255).astype(np.uint8)


def _error_counts(pred_map, truth_map, shape, group, fov=None) -> dict[str, int]:
    return {k: int(m.sum()) for k, m in _error_masks(pred_map, truth_map, shape, group, fov).items()}


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


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------

@_styled
def class_balance(summary, lesion_fractions=None, normalise: bool = True, title: str =
                  "Class balance: DR grades per data role and lesion pixels"):
    """Grade distribution per data role (and lesion pixel fractions): shows how skewed the
    grading labels are (No DR dominates Kaggle) and how rare lesion pixels are, which is why
    the paper reports per-grade ROC AUC and lesion Dice rather than accuracy.

    ``summary``: columns ``role, grade_0 .. grade_4`` (counts); roles without graded images
    are left out. ``normalise`` plots the share
    of each role's images (legend gives n) so roles of very different sizes compare; counts
    are written above the bars. ``lesion_fractions``: columns ``lesion, fraction`` (fraction
    of pixels, 0-1), drawn in the lesion colours, log-scaled when they span > 20x.
    """
    plt = _plt()
    grade_cols = sorted([c for c in summary.columns if str(c).startswith("grade_")],
                        key=lambda c: int(str(c).split("_")[1]))
    # roles without graded images (IDRiD-S, an absent external set) have no grade distribution
    summary = summary[summary[grade_cols].fillna(0).sum(axis=1) > 0]
    n_panels = 2 if lesion_fractions is not None else 1
    fig, axes = plt.subplots(1, n_panels, figsize=(7.5 + 4.5 * (n_panels - 1), 4.4),
                             gridspec_kw={"width_ratios": [5, 3][:n_panels]}, squeeze=False)
    ax = axes[0, 0]
    grades = [int(str(c).split("_")[1]) for c in grade_cols]
    names = _grade_names(max(grades) + 1 if grades else 0)
    roles = list(summary["role"]) if "role" in summary.columns else list(summary.index)
    x = np.arange(len(grade_cols))
    width = 0.8 / max(len(roles), 1)
    palette = plt.get_cmap("tab10")
    for i, (_, row) in enumerate(summary.iterrows()):
        counts = np.array([float(row[c]) if not _isnan(row[c]) else 0.0 for c in grade_cols])
        total = counts.sum()
        values = 100.0 * counts / total if (normalise and total > 0) else counts
        role = roles[i]
        bars = ax.bar(x - 0.4 + width * (i + 0.5), values, width, color=palette(i % 10),
                      label=f"{role} (n={int(total)})", edgecolor="white", linewidth=0.5)
        if len(roles) * len(grade_cols) <= 30:
            for bar, c in zip(bars, counts):
                ax.annotate(f"{int(c)}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                            ha="center", va="bottom", fontsize=7, xytext=(0, 1),
                            textcoords="offset points")
    ax.set_xticks(x)
    ax.set_xticklabels([f"{g} {names[g]}" for g in grades])
    ax.set_xlabel("DR grade")
    ax.set_ylabel("% of the role's images" if normalise else "images")
    ax.set_title("DR grades per data role (% of the role's images; counts on the bars)"
                 if normalise else "DR grades per data role (images)")
    if roles:
        ax.legend(title="data role (images)", loc="upper center", bbox_to_anchor=(0.5, -0.18),
                  ncol=min(len(roles), 4), frameon=False)
    ax.margins(y=0.12)

    if lesion_fractions is not None:
        ax2 = axes[0, 1]
        labels = [str(v) for v in lesion_fractions["lesion"]]
        frac = np.asarray(lesion_fractions["fraction"], dtype=float) * 100.0
        bars = ax2.bar(labels, np.nan_to_num(frac), color=[_lesion_colour(v) for v in labels],
                       edgecolor="k", linewidth=0.5)
        positive = frac[np.isfinite(frac) & (frac > 0)]
        if positive.size and positive.max() / positive.min() > 20:
            ax2.set_yscale("log")
        for bar, f in zip(bars, frac):
            if np.isfinite(f) and f > 0:
                ax2.annotate(f"{f:.3g}%", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                             ha="center", va="bottom", fontsize=8, xytext=(0, 1),
                             textcoords="offset points")
        ax2.set_xlabel("lesion type")
        ax2.set_ylabel("% of pixels" + (" (log scale)" if ax2.get_yscale() == "log" else ""))
        ax2.set_title("Lesion pixels (% of all pixels)")
        ax2.margins(y=0.15)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _isnan(v) -> bool:
    try:
        return bool(np.isnan(float(v)))
    except (TypeError, ValueError):
        return True


@_styled
def sample_grid(images: Sequence, class_maps: Sequence, titles: Sequence[str], ncols: int = 4,
                title: str = "Samples and their lesion masks", include_od: bool = True,
                dilate: int = 0, inside_fundus: bool = False):
    """Each sample's image beside its lesion overlay: a quick visual check that images and
    masks are aligned, oriented and coloured as expected before anything is trained.

    ``ncols`` counts panels per row and is rounded up to an even number (image + overlay per
    sample). A ``None`` class map shows "no mask" instead of the overlay. ``inside_fundus``
    paints only inside each image's field of view (for predicted masks; annotations and the
    pseudo masks a network trains on are shown as they are). The legend lists the classes drawn.
    """
    plt = _plt()
    n = len(images)
    ncols = max(2, int(ncols) + (int(ncols) % 2))
    per_row = ncols // 2
    nrows = max(1, math.ceil(n / per_row))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 3.1 * nrows + 0.6),
                             squeeze=False)
    present: set[int] = set()
    for k in range(nrows * per_row):
        ax_img, ax_ov = axes[k // per_row, 2 * (k % per_row)], axes[k // per_row, 2 * (k % per_row) + 1]
        if k >= n:
            ax_img.axis("off")
            ax_ov.axis("off")
            continue
        img = _as_rgb_uint8(images[k])
        name = titles[k] if k < len(titles) else f"sample {k}"
        _image_axis(ax_img, img, str(name))
        cm = class_maps[k] if k < len(class_maps) else None
        if cm is None:
            _image_axis(ax_ov, img, "no mask")
        else:
            fov = fundus_fov(img) if inside_fundus else None
            cm = _inside(_fit_map(cm, img.shape[:2]), fov)
            present |= present_classes([cm], include_od)
            _image_axis(ax_ov, overlay(img, cm, include_od=include_od, dilate=dilate, fov=fov),
                        "+ lesion overlay")
    handles = _lesion_handles(include_od, present)
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False,
                   bbox_to_anchor=(0.5, 0.0))
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06 if handles else 0, 1, 1), h_pad=1.2)
    return fig




@_styled
def lesion_area_by_grade(by_grade, title: str = "Pseudo masks: predicted lesion area per DR grade"):
    """Mean predicted lesion area per grade, one bar per lesion type in its overlay colour: if
    the seed segmenter is any good, lesions grow with the grade (grade 0 is zero by
    construction). Grades are categories (integer ticks with names and image counts).

    ``by_grade``: columns ``grade``, ``<LESION>_fraction`` (% of the pixels, mean over images)
    and optionally ``images``. The y axis is logarithmic when the non-zero values span more
    than 100x (a zero bar is then marked "0" on the axis).
    """
    plt = _plt()
    data = by_grade.sort_values("grade")
    grades = [int(g) for g in data["grade"]]
    columns = [c for c in data.columns if str(c).endswith("_fraction")]
    fig, ax = plt.subplots(figsize=(max(6.5, 1.5 * len(grades) + 2.5), 4.4))
    width = 0.8 / max(len(columns), 1)
    values = data[columns].to_numpy(dtype=float)
    positive = values[np.isfinite(values) & (values > 0)]
    log = bool(positive.size) and positive.max() / positive.min() > 100
    if log:
        ax.set_yscale("log")
        ax.set_ylim(positive.min() / 3, positive.max() * 3)
    for k, col in enumerate(columns):
        xs = np.asarray(grades, float) - 0.4 + width * (k + 0.5)
        ys = values[:, k]
        ax.bar(xs, np.where(np.isfinite(ys) & (ys > 0), ys, np.nan), width,
               color=_lesion_colour(col), edgecolor="k", linewidth=0.5,
               label=f"{str(col).split('_')[0]} – {readable(col)}")
        for xv, yv in zip(xs, ys):
            if np.isfinite(yv) and yv == 0:
                ax.annotate("0", (xv, 0), xycoords=("data", "axes fraction"), ha="center",
                            va="bottom", fontsize=7, color="dimgrey", xytext=(0, 2),
                            textcoords="offset points")
    counts = list(data["images"]) if "images" in data.columns else None
    grade_ticks(ax, grades, counts=counts, label="DR grade (n = images)" if counts else "DR grade")
    ax.grid(axis="x", visible=False)
    ax.set_ylabel("predicted lesion pixels, % of the image" + (" (log scale)" if log else ""))
    ax.set_title(title)
    ax.legend(title="lesion type", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    return fig
# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------

def _history_column(columns, metric: str):
    """`metric` itself, or the one output-prefixed column naming it (Keras logs a multi-output
    model's metric as "seg_red_dice", a single-output one's as "red_dice")."""
    if metric in columns:
        return metric
    matches = [c for c in columns if str(c).endswith("_" + metric) and not str(c).startswith("val_")]
    return matches[0] if len(matches) == 1 else metric


def _run_parts(key) -> tuple[str, object]:
    """(network, seed) of a history key: a (network, seed) tuple, or a plain label (seed None)."""
    if isinstance(key, tuple) and len(key) == 2:
        return str(key[0]), key[1]
    return str(key), None


def _is_percent_metric(base: str) -> bool:
    return base.endswith("dice") or base.endswith("acc")


def _history_ylabel(base: str) -> str:
    if _is_percent_metric(base):
        return f"{readable(base)} on training batches (%)"
    return readable(base)


@_styled
def training_curves(histories: Mapping[object, "object"], metrics: Sequence[str] = ("loss",),
                    title: str = "Training curves", ncols: int = 3):
    """Per-epoch metrics of each run, one panel per metric (solid = training, dashed = the
    ``val_`` column, same colour): shows convergence, over-fitting and whether the runs of a
    comparison trained comparably.

    ``histories`` maps a run to a Keras-history-like DataFrame; a key is a label or a
    ``(network, seed)`` tuple (colour per network, marker per seed). The x axis is the
    ``epoch`` column (1-based, integer ticks) when present, else 1..n. A metric matches its
    own column or the one output-prefixed column (``red_dice`` finds ``seg_red_dice``); Dice
    and accuracy are drawn in %. Missing or all-empty columns (no validation data) are
    skipped; an empty panel says so. One legend for all panels, under them.
    """
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    plt = _plt()
    bases = list(dict.fromkeys(m[4:] if m.startswith("val_") else m for m in metrics))
    ncols = max(1, min(int(ncols), len(bases)))
    nrows = math.ceil(len(bases) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.4 * nrows + 1.2), squeeze=False)
    runs = [(key, frame) for key, frame in histories.items() if frame is not None and len(frame)]
    networks = list(dict.fromkeys(_run_parts(k)[0] for k, _ in runs))
    seeds = list(dict.fromkeys(_run_parts(k)[1] for k, _ in runs))
    palette = plt.get_cmap("tab10")
    colour = {net: palette(i % 10) for i, net in enumerate(networks)}
    marker = {s: "osD^v<>p"[i % 8] for i, s in enumerate(seeds)}
    run_handles: dict[str, object] = {}
    styles_used: set[str] = set()
    most_epochs = 0
    # one epoch per run: spread the runs sideways around epoch 1 so equal values stay visible
    spread = (0.6 / len(runs) if len(runs) > 1 and max(len(f) for _, f in runs) <= 1 else 0.0)
    for ax, base in zip(axes.ravel(), bases):
        drawn = 0
        for k, (key, frame) in enumerate(runs):
            network, seed = _run_parts(key)
            x = (np.asarray(pd.to_numeric(frame["epoch"], errors="coerce"), dtype=float)
                 if "epoch" in frame.columns else np.arange(len(frame), dtype=float))
            x = x + 1 if "epoch" not in frame.columns or (x.size and np.nanmin(x) == 0) else x
            x = x + spread * (k - (len(runs) - 1) / 2)
            column = _history_column(frame.columns, base)
            for col, style, kind in ((column, "-", "training"), ("val_" + str(column), "--", "validation")):
                if col not in frame.columns:
                    continue
                y = np.asarray(pd.to_numeric(frame[col], errors="coerce"), dtype=float)
                if not np.isfinite(y).any():
                    continue
                y = 100 * y if _is_percent_metric(base) else y
                label = network if seed is None else f"{network} · seed {seed}"
                ax.plot(x, y, style, color=colour[network], marker=marker[seed],
                        markersize=5 if len(y) <= 15 else 0, lw=1.6, label=f"{label} ({kind})")
                run_handles.setdefault(label, Line2D([], [], color=colour[network], marker=marker[seed],
                                                     lw=1.6, label=label))
                styles_used.add(kind)
                most_epochs = max(most_epochs, int(round(np.nanmax(x))))
                drawn += 1
        ax.set_title(readable(base))
        ax.set_xlabel("epoch")
        ax.set_ylabel(_history_ylabel(base))
        if not drawn:
            ax.text(0.5, 0.5, f"{readable(base)}: not logged by any run", transform=ax.transAxes,
                    ha="center", va="center", color="grey")
    for ax in axes.ravel()[len(bases):]:
        fig.delaxes(ax)
    for ax in axes.ravel()[:len(bases)]:   # epochs are whole numbers: never a tick at 1.5
        if most_epochs <= 12:
            ax.set_xticks(range(1, max(most_epochs, 1) + 1))
            ax.set_xlim(0.5, max(most_epochs, 1) + 0.5)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    handles = list(run_handles.values())
    if "validation" in styles_used:
        handles += [Line2D([], [], color="k", ls="-", label="training"),
                    Line2D([], [], color="k", ls="--", label="validation")]
    bottom = _legend_below(fig, handles, ncol=min(len(handles), 5) if handles else None)
    notes = []
    if runs and most_epochs <= 1:
        notes.append("one epoch per run: single points, no curve" + ("; runs spread sideways" if spread else ""))
    if runs and "validation" not in styles_used:
        notes.append("training batches only: these runs hold out no validation images")
    fig.suptitle(title + (f"\n({'; '.join(notes)})" if notes else ""))
    fig.tight_layout(rect=(0, bottom, 1, 1))
    return fig


# --------------------------------------------------------------------------------------------
# Segmentation
# --------------------------------------------------------------------------------------------

def _overlay_grid(img, truth_map, rows: Sequence[tuple[str, Sequence[tuple[str, object]]]],
                  title: str, include_od: bool, dilate: int, inside_fundus: bool, note: str = ""):
    """The overlay figure behind :func:`overlay_comparison` and :func:`segmentation_overlays`:
    first row the image and its ground truth, then each ``(row label, [(panel title, predicted
    class map)])`` row. Predictions are painted inside the fundus only (``inside_fundus``); the
    legend lists only the classes painted in some panel."""
    plt = _plt()
    fov = fundus_fov(img) if inside_fundus else None
    paint = functools.partial(overlay, include_od=include_od, dilate=dilate)
    truth = None if truth_map is None else _fit_map(truth_map, img.shape[:2])
    grid = [("", [("Original", img, False),
                  ("Ground truth", None if truth is None else paint(img, truth), truth is None)])]
    shown = [truth]
    for label, panels in rows:
        cells = []
        for name, pred in panels:
            pm = _inside(_fit_map(pred, img.shape[:2]), fov)
            shown.append(pm)
            cells.append((str(name), paint(img, pm), False))
        grid.append((label, cells))
    if len(grid) == 2 and not grid[1][0] and len(grid[1][1]) <= 3:   # a few unlabelled panels: one row
        grid = [("", grid[0][1] + grid[1][1])]
    ncols = max(len(cells) for _, cells in grid)
    aspect = img.shape[0] / max(img.shape[1], 1)
    panel = 3.1 if ncols > 3 else 3.4
    fig, axes = plt.subplots(len(grid), ncols,
                             figsize=(panel * ncols, (panel * aspect + 0.75) * len(grid) + 1.0),
                             squeeze=False)
    for r, (label, cells) in enumerate(grid):
        for c in range(ncols):
            ax = axes[r, c]
            if c >= len(cells):
                ax.axis("off")
                continue
            name, arr, missing = cells[c]
            _image_axis(ax, img if arr is None else arr, name)
            if missing:
                ax.text(0.5, 0.5, "no ground truth", transform=ax.transAxes, ha="center",
                        va="center", color="white", fontsize=10,
                        bbox={"facecolor": "black", "alpha": 0.6})
        if label:
            axes[r, 0].set_ylabel(label, fontsize=11, fontweight="bold")
    handles = _lesion_handles(include_od, present_classes(shown, include_od))
    if not handles:
        from matplotlib.patches import Patch
        handles = [Patch(facecolor="none", edgecolor="none",
                         label="no lesion in the truth or any prediction")]
    if inside_fundus:
        note = (note + " " if note else "") + "Predictions outside the fundus are not drawn (nor scored)."
    spare = ncols - len(grid[0][1])
    if len(grid) > 1 and spare >= 2:   # the legend and the note fill the first row's empty panels
        import textwrap

        holder = axes[0, len(grid[0][1])]
        legend = holder.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.04, 0.92),
                               frameon=False, title="Lesion classes drawn", fontsize=9.5,
                               title_fontsize=10, alignment="left")
        legend.set_in_layout(False)   # it spills into the next empty panels; keep the images' size
        if note:
            holder.text(0.06, 0.32, textwrap.fill(note, 36 * spare), transform=holder.transAxes,
                        ha="left", va="top", fontsize=9, color="dimgrey").set_in_layout(False)
        bottom = 0.0
    else:
        bottom = _legend_below(fig, handles, ncol=min(len(handles), 5))
        if note:
            fig.text(0.5, bottom, note, ha="center", va="bottom", fontsize=8.5, color="dimgrey",
                     wrap=True)
            bottom += 0.3 / fig.get_figheight()
    fig.suptitle(title)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    return fig


@_styled
def overlay_comparison(image, truth_map, predictions: Mapping[str, np.ndarray],
                       title: str = "Lesion segmentation by model", include_od: bool = True,
                       max_cols: int = 4, dilate: int = 0, captions: Mapping[str, str] | None = None,
                       inside_fundus: bool = True):
    """The paper's Fig. 6: original image, ground-truth overlay, then one overlay per model,
    so missed red lesions (the paper's point about ResNet/Inception encoders) can be seen.

    ``truth_map`` may be ``None`` (panel says "no ground truth"). Model panels wrap after
    ``max_cols`` per row; ``captions`` (model -> text) go under a panel's name (e.g. its Dice).
    Predictions are drawn inside the fundus only; one legend lists the classes drawn;
    ``dilate`` is passed to :func:`overlay` (thicker lesions, for display only).
    """
    img = _as_rgb_uint8(image)
    captions = captions or {}
    names = list(predictions)
    per_row = max(1, int(max_cols))
    rows = []
    for start in range(0, len(names), per_row):
        chunk = names[start:start + per_row]
        rows.append(("", [(n if n not in captions else f"{n}\n{captions[n]}", predictions[n])
                          for n in chunk]))
    return _overlay_grid(img, truth_map, rows, title, include_od, dilate, inside_fundus)


def _dice_caption(evaluation, index: int) -> str:
    """"Dice red 12 % · yellow 45 %" of one test image (per-image Dice, NaN = no lesion in
    the truth: "–")."""
    parts = []
    for group in LESION_GROUPS:
        values = getattr(evaluation, "per_image", {}).get(group)
        value = _num(values[index]) if values is not None and index < len(values) else math.nan
        parts.append(f"{group} {100 * value:.0f} %" if np.isfinite(value) else f"{group} –")
    return "Dice " + " · ".join(parts)


@_styled
def segmentation_overlays(image, truth_map, rows: Mapping[str, Mapping[str, object]], index: int,
                          title: str = "Lesion segmentation of one test image",
                          include_od: bool = True, dilate: int = 0):
    """Fig. 6 with the Table 2 baselines: one row of overlays per group of models (e.g. "Table 2
    networks", "MTUnet encoders"), each panel titled with the model and its per-image red and
    yellow Dice on this image, so what the eye sees and what the table counts agree.

    ``rows``: {row label: {model label: evaluation}}; an evaluation has ``pred_maps`` (N, S, S)
    and ``per_image[group]`` (N,) Dice fractions (a ``SegmentationEval``); ``index`` is the
    image's position in them. Predictions are drawn inside the fundus only.
    """
    img = _as_rgb_uint8(image)
    grid = [(label, [(f"{name}\n{_dice_caption(ev, index)}", ev.pred_maps[index])
                     for name, ev in models.items()])
            for label, models in rows.items() if models]
    note = "Dice: per-image Dice on this image, scored at the masks' own size; – : no such lesion in the truth."
    return _overlay_grid(img, truth_map, grid, title, include_od, dilate, True, note)


@_styled
def lesion_error_map(image, pred_map, truth_map, group="red", title: str | None = None,
                     inside_fundus: bool = True, subject: str = ""):
    """Where a model's lesion mask is right (TP), spurious (FP) or missing (FN) for one group:
    explains a Dice number (tiny MAs missed vs. haemorrhage borders) beyond the score itself.

    Left: the image; right: :func:`error_map_rgb` with pixel counts and Dice in the legend,
    inside the fundus only (``inside_fundus``), as the scoring counts them. The default title
    names ``subject`` (model and image) and the Dice of this image at display size.
    """
    from matplotlib.patches import Patch
    plt = _plt()
    img = _as_rgb_uint8(image)
    fov = fundus_fov(img) if inside_fundus else None
    rgb = error_map_rgb(img, pred_map, truth_map, group, fov=fov)
    counts = _error_counts(pred_map, truth_map, img.shape[:2], group, fov)
    denom = 2 * counts["TP"] + counts["FP"] + counts["FN"]
    dice = 2 * counts["TP"] / denom if denom else math.nan
    aspect = img.shape[0] / max(img.shape[1], 1)
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 4.0 * aspect + 1.1))
    _image_axis(axes[0], img, "Image")
    _image_axis(axes[1], rgb, f"Errors: {_group_label(group)}"
                + ("\n(inside the fundus, at display size)" if inside_fundus else "\n(at display size)"))
    handles = [Patch(facecolor=np.asarray(ERROR_COLOURS[k]) / 255.0, edgecolor="k",
                     linewidth=0.5, label=f"{k} – {ERROR_LABELS[k]}: {counts[k]:,} px")
               for k in ("TP", "FP", "FN")]
    fig.legend(handles=handles, loc="lower center", ncol=3, frameon=False,
               bbox_to_anchor=(0.5, 0.0))
    dice_txt = "undefined (no lesion in either mask)" if math.isnan(dice) else f"{100 * dice:.1f} %"
    heading = title or f"{subject + chr(10) if subject else ''}{group}-lesion errors, Dice {dice_txt}"
    fig.suptitle(heading)
    top = 1 - (0.3 * (heading.count("\n") + 1) + 0.1) / fig.get_figheight()   # room for the title
    fig.tight_layout(rect=(0, 0.08, 1, top))
    return fig


# --------------------------------------------------------------------------------------------
# Grading
# --------------------------------------------------------------------------------------------

@_styled
def roc_curves(y_true, prob, title: str = "One-vs-rest ROC per DR grade"):
    """One-vs-rest ROC per grade with its AUC (the paper's Tables 3-4 numbers as curves).

    A grade absent from ``y_true`` (or the grade of every sample) has no ROC curve; it is
    listed in the legend as "no image of this grade" / "every image is this grade".
    """
    from sklearn.metrics import roc_curve

    from mtunet.metrics import roc_auc_grade

    plt = _plt()
    y = np.asarray(y_true).astype(int).ravel()
    p = np.asarray(prob, dtype=float)
    if p.ndim != 2 or p.shape[0] != y.size:
        raise ValueError(f"prob must be (N, n_grades) with N = {y.size}, got {p.shape}")
    fig, ax = plt.subplots(figsize=(5.6, 5.0))
    palette = plt.get_cmap("viridis")
    names = _grade_names(p.shape[1])
    for g in range(p.shape[1]):
        colour = palette(g / max(p.shape[1] - 1, 1) * 0.9)
        positive = y == g
        if not positive.any() or positive.all():
            why = "no image of this grade" if not positive.any() else "every image is this grade"
            ax.plot([], [], color=colour, linestyle=":", label=f"{names[g]}: {why}, no curve")
            continue
        fpr, tpr, _ = roc_curve(positive, p[:, g])
        ax.plot(fpr, tpr, color=colour, lw=2,
                label=f"{names[g]}: AUC {100 * roc_auc_grade(y, p, g):.1f} %, n={int(positive.sum())}")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", lw=1, label="chance")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate (1 − specificity)")
    ax.set_ylabel("true positive rate (sensitivity)")
    ax.set_title(title)
    ax.legend(loc="lower right", title="grade: ROC AUC, positive images", title_fontsize=8)
    fig.tight_layout()
    return fig


@_styled
def confusion_matrix_plot(y_true, y_pred, title: str = "Confusion matrix of DR grades",
                          n_classes: int | None = None):
    """Grade confusion (rows true, columns predicted): shows whether errors are to adjacent
    grades (what quadratic kappa forgives) or collapse onto "No DR".

    Cells are coloured by the row-normalised share (% of that true grade) and annotated with
    the count and that percentage, so rare grades stay visible.
    """
    import seaborn as sns

    from mtunet.metrics import confusion

    plt = _plt()
    yt = np.asarray(y_true).astype(int).ravel()
    yp = np.asarray(y_pred).astype(int).ravel()
    n = n_classes or max(len(GRADE_NAMES), int(max(yt.max(initial=0), yp.max(initial=0))) + 1)
    cm = confusion(yt, yp, n)
    rows = cm.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        pct = np.where(rows > 0, 100.0 * cm / np.maximum(rows, 1), np.nan)
    annot = np.array([[f"{cm[i, j]}\n{pct[i, j]:.0f}%" if rows[i, 0] else "0"
                       for j in range(n)] for i in range(n)])
    names = _grade_names(n)
    fig, ax = plt.subplots(figsize=(1.2 * n + 2.4, 1.0 * n + 1.6))
    sns.heatmap(np.nan_to_num(pct), annot=annot, fmt="", cmap="Blues", vmin=0, vmax=100,
                cbar_kws={"label": "% of the true grade (row)"}, linewidths=0.5,
                linecolor="white", square=True, ax=ax, xticklabels=names, yticklabels=names,
                annot_kws={"fontsize": 9})
    ax.set_xlabel("predicted grade")
    ax.set_ylabel("true grade")
    ax.set_yticklabels(ax.get_yticklabels(), rotation=0)
    ax.set_xticklabels(ax.get_xticklabels(), rotation=30, ha="right")
    accuracy = np.trace(cm) / cm.sum() if cm.sum() else math.nan
    ax.set_title(f"{title}\n(n={int(cm.sum())}, accuracy {accuracy:.1%})")
    fig.tight_layout()
    return fig


def _grade_colours(n: int):
    palette = _plt().get_cmap("viridis")
    return [palette(g / max(n - 1, 1) * 0.9) for g in range(n)]


def _y_prob(evaluation):
    """(y_true, prob) of a GradingEval-like object or a (y_true, prob) pair."""
    if isinstance(evaluation, tuple):
        y, p = evaluation
    else:
        y, p = evaluation.y_true, evaluation.prob
    return np.asarray(y).astype(int).ravel(), np.asarray(p, dtype=float)


@_styled
def roc_by_network(evaluations: Mapping[str, object], title: str = "One-vs-rest ROC per DR grade",
                   ncols: int = 3):
    """One ROC panel per grader (curves per grade, AUC in each panel's legend), so every
    grader of Tables 3-4 can be judged by its curves, not MTUnet alone. A grader that gives
    every image the same grade is flagged in its panel title (its AUCs come from ties only).

    ``evaluations``: {network label: GradingEval (``y_true``, ``prob``) or (y_true, prob)}.
    """
    from matplotlib.lines import Line2D
    from sklearn.metrics import roc_curve

    from mtunet.metrics import roc_auc_grade

    plt = _plt()
    items = [(str(name), _y_prob(ev)) for name, ev in evaluations.items()]
    n_grades = max((p.shape[1] for _, (_, p) in items), default=len(GRADE_NAMES))
    names, colours = _grade_names(n_grades), _grade_colours(n_grades)
    ncols = max(1, min(int(ncols), len(items)))
    nrows = max(1, math.ceil(len(items) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.9 * ncols, 4.0 * nrows + 1.0), squeeze=False)
    for k, (ax, (name, (y, p))) in enumerate(zip(axes.ravel(), items)):
        for g in range(p.shape[1]):
            positive = y == g
            if not positive.any() or positive.all():
                ax.plot([], [], color=colours[g], ls=":", label=f"{names[g]}: no curve")
                continue
            fpr, tpr, _ = roc_curve(positive, p[:, g])
            ax.plot(fpr, tpr, color=colours[g], lw=1.8,
                    label=f"{names[g]}: {100 * roc_auc_grade(y, p, g):.1f}")
        ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=0.8)
        one_class = len(np.unique(p.argmax(axis=1))) <= 1
        ax.set_title(name + ("\n(one grade for every image)" if one_class else ""),
                     color="firebrick" if one_class else "black")
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(-0.01, 1.01)
        ax.set_aspect("equal")
        ax.legend(loc="lower right", fontsize=7, title="ROC AUC (%)", title_fontsize=7,
                  handlelength=1.2, borderpad=0.3, labelspacing=0.2)
        if k % ncols == 0:
            ax.set_ylabel("true positive rate")
        if k >= len(items) - ncols:
            ax.set_xlabel("false positive rate")
    for ax in axes.ravel()[len(items):]:
        fig.delaxes(ax)
    grade_handles = [Line2D([], [], color=colours[g], lw=2, label=f"{g} {names[g]}")
                     for g in range(n_grades)]
    grade_handles.append(Line2D([], [], color="grey", ls="--", lw=0.8, label="chance"))
    bottom = _legend_below(fig, grade_handles, ncol=len(grade_handles))
    fig.suptitle(title)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    return fig


@_styled
def reliability_diagram(y_true, prob, n_bins: int = 10,
                        title: str = "Reliability of the grade probabilities"):
    """Top-label confidence vs accuracy per bin with the expected calibration error (ECE):
    whether the softmax grade probabilities can be read as probabilities (a claim the paper
    does not make, so we check it). Lower panel: how many images fall in each bin, written on
    the bars. When only one or two bins hold images (a grader whose outputs are near-uniform,
    or saturated) the ECE says little about calibration: the title and a boxed warning say so.
    """
    from mtunet.metrics import expected_calibration_error, reliability_curve

    plt = _plt()
    conf, acc, counts = reliability_curve(y_true, prob, n_bins)
    ece = expected_calibration_error(y_true, prob, n_bins)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    width = 1.0 / n_bins
    fig, (ax, axn) = plt.subplots(2, 1, figsize=(5.8, 6.6), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1.2]})
    filled = counts > 0
    ax.bar(centres[filled], acc[filled], width=width * 0.95, color="#4c72b0",
           edgecolor="white", label="accuracy in bin")
    gap_lo = np.minimum(acc, conf)[filled]
    gap_hi = np.abs(acc - conf)[filled]
    ax.bar(centres[filled], gap_hi, bottom=gap_lo, width=width * 0.95, color="#dd8452",
           alpha=0.45, hatch="//", edgecolor="#dd8452", label="|accuracy − confidence|")
    ax.plot(conf[filled], acc[filled], "o", color="black", markersize=4,
            label="(mean confidence, accuracy)")
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("accuracy in the bin")
    ece_txt = "n/a" if math.isnan(ece) else f"{ece:.3f}"
    n_filled = int(filled.sum())
    few = n_filled <= 2
    caveat = (f" — only {n_filled} of {n_bins} bins {'holds' if n_filled == 1 else 'hold'} images"
              if few else "")
    ax.set_title(f"{title}\nECE = {ece_txt} ({n_bins} bins, n={int(counts.sum())}){caveat}",
                 color="firebrick" if few else "black")
    ax.legend(loc="upper left")
    if few:
        p = np.asarray(prob, dtype=float)
        spread = f"{p.max(axis=1).min():.2f}–{p.max(axis=1).max():.2f}" if p.size else "n/a"
        top = p.max(axis=1) if p.size else np.array([math.nan])
        kind = ("near-uniform outputs" if np.nanmax(top) < 1.0 / max(p.shape[-1], 1) + 0.1 else
                "saturated outputs" if np.nanmin(top) > 0.9 else "narrow outputs")
        ax.text(0.97, 0.55, f"Caution: all {int(counts.sum())} images fall in {n_filled} "
                f"bin{'s' if n_filled > 1 else ''}\n(top-label confidence {spread}: {kind}).\n"
                "The ECE then compares one or two averages,\nnot a calibration curve: "
                "near-uniform outputs\ngive ECE ≈ 0 without being calibrated.",
                transform=ax.transAxes, ha="right", va="center", fontsize=8.5, color="firebrick",
                bbox={"facecolor": "#fff3f0", "edgecolor": "firebrick", "boxstyle": "round"})
    bars = axn.bar(centres, counts, width=width * 0.95, color="#8c8c8c", edgecolor="white")
    for bar, c in zip(bars, counts):
        axn.annotate(str(int(c)), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                     ha="center", va="bottom", fontsize=7.5, xytext=(0, 1),
                     textcoords="offset points", color="black" if c else "darkgrey")
    axn.set_ylim(0, max(1, counts.max()) * 1.3)
    axn.set_xlabel("top-label confidence (max softmax probability)")
    axn.set_ylabel("images per bin")
    fig.tight_layout()
    return fig


def _grade_order(values) -> list[str]:
    """The table's grades in grade order (No DR … Proliferative), unknown names last."""
    values = list(dict.fromkeys(str(v) for v in values))
    rank = {name: i for i, name in enumerate(GRADE_NAMES)}
    return sorted(values, key=lambda v: rank.get(v, len(rank)))


def _short_test_set(table) -> str:
    """The test set's name from a table's ``test_set`` column (the part before its note)."""
    if "test_set" not in table.columns or not len(table):
        return ""
    return str(table["test_set"].iloc[0]).split(":")[0].strip()


@_styled
def grading_heatmap(table, title: str | None = None, name: str = ""):
    """Tables 3-4 as two network x grade heatmaps, the paper's beside ours, on one colour scale
    centred on chance (AUC 50 %): where a reproduction falls short reads off the colours, and
    each cell keeps its number (ours with its 95 % interval, or ± std over runs).

    ``table``: a grading table (``network, grade, paper_mean, paper_std, ours_mean, ours_std,
    ci_low, ci_high, n_positive, one_class``). Graders flagged ``one_class`` (a run gave every
    image the same grade) are hatched in our panel and named so: their AUCs are not ranked.
    A cell without positives (or not run) is grey and says why. Grade columns carry their
    number of positive test images. The default title names the table (``name``, e.g.
    "Table 3"), the metric and the test set (the table's ``test_set`` column).
    """
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.patches import Rectangle

    plt = _plt()
    grades = _grade_order(table["grade"])
    networks = list(dict.fromkeys(str(v) for v in table["network"]))
    cell = {(str(r["network"]), str(r["grade"])): r for _, r in table.iterrows()}

    def matrix(column):
        return np.array([[_num(cell[(n, g)].get(column)) if (n, g) in cell else math.nan
                          for g in grades] for n in networks])

    paper, paper_std = matrix("paper_mean"), matrix("paper_std")
    ours, ours_std = matrix("ours_mean"), matrix("ours_std")
    low, high, positives = matrix("ci_low"), matrix("ci_high"), matrix("n_positive")
    one_class = {n for n in networks
                 if any(str(cell[(n, g)].get("one_class")).lower() == "true"
                        for g in grades if (n, g) in cell)}
    cmap = plt.get_cmap("RdBu").copy()
    cmap.set_bad("#e0e0e0")
    norm = TwoSlopeNorm(vmin=0, vcenter=50, vmax=100)
    width = 1.15 * len(grades) + 0.6
    fig, axes = plt.subplots(1, 2, figsize=(2 * width + 2.6, 0.8 * len(networks) + 2.6),
                             sharey=True, layout="constrained")
    positive_row = [np.nanmax(positives[:, j]) if np.isfinite(positives[:, j]).any() else math.nan
                    for j in range(len(grades))]
    for ax, values, which in ((axes[0], paper, "paper"), (axes[1], ours, "ours")):
        image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=norm, aspect="auto")
        for i, net in enumerate(networks):
            flagged = which == "ours" and net in one_class
            for j, grade in enumerate(grades):
                v = values[i, j]
                if which == "paper":
                    s = paper_std[i, j]
                    text = f"{v:.1f}" + (f"\n± {s:.1f}" if np.isfinite(s) else "")
                elif np.isfinite(v):
                    lo, hi, s = low[i, j], high[i, j], ours_std[i, j]
                    text = f"{v:.1f}" + (f"\n[{lo:.0f}, {hi:.0f}]" if np.isfinite(lo) and np.isfinite(hi)
                                         else f"\n± {s:.1f}" if np.isfinite(s) else "")
                else:
                    text = "no positive\nimage" if positives[i, j] == 0 else "not run"
                dark = np.isfinite(v) and abs(v - 50) > 28 and not flagged
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="white" if dark else "black",
                        bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none",
                              "boxstyle": "round,pad=0.15"} if flagged else None)
        ax.set_xticks(range(len(grades)))
        ax.set_xticklabels([f"{GRADE_NAMES.index(g) if g in GRADE_NAMES else ''} {g}".strip()
                            + (f"\n{int(n)} pos." if which == "ours" and np.isfinite(n) else "")
                            for g, n in zip(grades, positive_row)], fontsize=8.5)
        counted = which == "ours" and any(np.isfinite(n) for n in positive_row)
        ax.set_xlabel("DR grade (one-vs-rest)" + ("; positive test images" if counted else ""))
        ax.grid(False)
        ax.set_title("Paper (mean ± std over 3 runs)" if which == "paper"
                     else "Ours (mean [95 % interval] or ± std over runs)")
    for i, net in enumerate(networks):
        if net in one_class:
            axes[1].add_patch(Rectangle((-0.5, i - 0.5), len(grades), 1, fill=False, hatch="//",
                                        edgecolor="#333333", alpha=0.35, linewidth=0, zorder=2))
    axes[0].set_yticks(range(len(networks)))
    axes[0].set_yticklabels([n + ("\n(one grade for\nevery image)" if n in one_class else "")
                             for n in networks])
    for label in axes[0].get_yticklabels():
        if label.get_text().split("\n")[0] in one_class:
            label.set_color("firebrick")
    bar = fig.colorbar(image, ax=list(axes), fraction=0.03, pad=0.01)
    bar.set_label("ROC AUC (%) — 50 = chance")
    test_set = _short_test_set(table)
    fig.suptitle(title or f"{name + ': ' if name else ''}one-vs-rest ROC AUC (%) per DR grade, paper vs ours"
                          + (f" — test set {test_set}" if test_set else ""))
    if one_class:
        fig.supxlabel("Hatched: a run of this grader gave every test image the same grade; "
                      "its AUCs come from ties and are not ranked.", fontsize=8.5, color="firebrick")
    return fig


# --------------------------------------------------------------------------------------------
# Paper vs ours
# --------------------------------------------------------------------------------------------

@_styled
def lesion_size_plot(table, title: str = "Lesion size against working resolution (IDRiD-S)"):
    """Left: share of lesions under one pixel across; right: how much the any-overlap resize
    fattens the masks. One line per lesion type, x = working image size (mtunet.study.datasets.lesion_sizes)."""
    plt = _plt()
    data = table[table["image_size"].map(lambda v: str(v).isdigit())].copy()
    data["image_size"] = data["image_size"].astype(int)
    fig, axes = plt.subplots(1, 2, figsize=(10.0, 4.0))
    for lesion, rows in data.groupby("lesion", sort=False):
        rows = rows.sort_values("image_size")
        colour = _lesion_colour(lesion)
        axes[0].plot(rows["image_size"], 100 * rows["share_below_1px"], marker="o", color=colour, label=lesion)
        axes[1].plot(rows["image_size"], rows["mask_inflation"], marker="o", color=colour, label=lesion)
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(data["image_size"].unique()))
        ax.set_xticklabels([str(v) for v in sorted(data["image_size"].unique())])
        ax.set_xlabel("working image size (px)")
    top = 100 * float(np.nanmax(data["share_below_1px"])) if len(data) else 0.0
    upper = max(5.0, 1.15 * top)
    axes[0].set_ylim(-0.03 * upper, upper)               # a share: never a negative tick
    axes[0].set_ylabel("lesions under 1 px across (%)")
    axes[0].set_title("Lesions that vanish below one pixel")
    axes[1].set_ylabel("mask pixels / true lesion area")
    axes[1].set_title("Mask inflation by the any-overlap resize")
    axes[1].axhline(1.0, color="grey", lw=0.8, ls="--")
    axes[0].legend(title="lesion type")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _row_text(ax, x_end: float, x_start: float, y: float, text: str, colour, xmax: float) -> None:
    """A value label right of a marker's whisker, or left of it near the right edge."""
    if x_end + 0.2 * xmax < xmax:
        ax.text(x_end + 0.015 * xmax, y, text, ha="left", va="center", fontsize=7.5, color=colour)
    else:
        ax.text(x_start - 0.015 * xmax, y, text, ha="right", va="center", fontsize=7.5, color=colour)


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


@_styled
def paper_vs_ours(table, panels: Mapping[str, str], xlabels: Mapping[str, str] | str = "value (%)",
                  title: str = "Paper vs. ours", key: str = "network", metric_col: str = "metric"):
    """Paper and ours as paired dots per network, one panel per metric (e.g. Dice, ROC AUC):
    the reproduction verdict at a glance, with the spread that qualifies it.

    ``table``: a comparison table (``compare_with_paper``: ``paper_mean, paper_std, ours_mean,
    ours_std, n_runs``; ``ci_low, ci_high`` where it has intervals). ``panels``: {metric value:
    panel title}; ``xlabels``: one label or {metric: label}. Paper: grey diamond ± its published
    std; ours: blue dot, thick bar ± std over runs, thin line the 95 % interval where the table
    has one. Values are written beside the dots, with the predicted/true lesion area where the
    table has it; a Dice resting on a flood or a collapse is drawn hollow (the claims do not rank
    it). "not run" / "not reported" where missing. An AUC panel carries the chance line (50 %).
    """
    from matplotlib.lines import Line2D

    plt = _plt()
    networks = list(dict.fromkeys(str(v) for v in table[key]))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels) + 1.8, 0.75 * len(networks) + 2.4),
                             sharey=True, squeeze=False)
    drew = {"std": False, "ci": False, "paper_std": False, "unsound": False}
    runs: dict[str, float] = {}
    for ax, (metric, panel_title) in zip(axes[0], panels.items()):
        rows = {str(r[key]): r for _, r in table[table[metric_col] == metric].iterrows()}
        values = [v for r in rows.values() for v in (_num(r.get("paper_mean")), _num(r.get("ours_mean")),
                                                      _num(r.get("ci_high")))]
        finite = [v for v in values if np.isfinite(v)]
        xmax = 100.0 if not finite or max(finite) <= 100 else 1.1 * max(finite)
        for i, net in enumerate(networks):
            r = rows.get(net)
            yp, yo = i - 0.18, i + 0.18
            if r is None:
                ax.text(0.01 * xmax, i, "not in this table", va="center", fontsize=7.5, color="grey")
                continue
            runs[net] = _num(r.get("n_runs"))
            p, ps = _num(r.get("paper_mean")), _num(r.get("paper_std"))
            if np.isfinite(p):
                ax.errorbar(p, yp, xerr=ps if np.isfinite(ps) else None, fmt="D", color=PAPER_COLOUR,
                            ms=6, capsize=3, lw=1.4, zorder=3)
                drew["paper_std"] |= bool(np.isfinite(ps))
                e = ps if np.isfinite(ps) else 0.0
                _row_text(ax, p + e, p - e, yp, _fmt(p) + (f" ± {_fmt(ps)}" if np.isfinite(ps) else ""),
                          "dimgrey", xmax)
            else:
                ax.text(0.01 * xmax, yp, "paper: not reported", va="center", fontsize=7.5, color="grey")
            o, os_ = _num(r.get("ours_mean")), _num(r.get("ours_std"))
            lo, hi = _num(r.get("ci_low")), _num(r.get("ci_high"))
            if not np.isfinite(o):
                ax.text(0.01 * xmax, yo, "ours: not run", va="center", fontsize=7.5, color=OURS_COLOUR)
                continue
            ends = [o]
            if np.isfinite(lo) and np.isfinite(hi):
                ax.errorbar(o, yo, xerr=[[max(o - lo, 0)], [max(hi - o, 0)]], fmt="none",
                            ecolor=OURS_COLOUR, elinewidth=1.0, capsize=3, zorder=2)
                ends += [lo, hi]
                drew["ci"] = True
            if np.isfinite(os_) and os_ > 0:
                ax.plot([o - os_, o + os_], [yo, yo], color=OURS_COLOUR, lw=5, alpha=0.45,
                        solid_capstyle="butt", zorder=2)
                ends += [o - os_, o + os_]
                drew["std"] = True
            area, unsound = _area_label(r)
            drew["unsound"] |= unsound
            ax.plot(o, yo, "o", color=OURS_COLOUR, ms=7, zorder=4,
                    **({"mfc": "white", "mec": OURS_COLOUR, "mew": 1.5} if unsound
                       else {"mec": "white", "mew": 0.8}))
            _row_text(ax, max(ends), min(ends), yo,
                      _fmt(o) + (f" ± {_fmt(os_)}" if np.isfinite(os_) else "") + area, OURS_COLOUR, xmax)
        if "roc" in str(metric).lower() or "auc" in str(panel_title).lower():
            ax.axvline(50, color="grey", ls=":", lw=1)
            ax.text(50, -0.62, "chance", ha="center", va="bottom", fontsize=7.5, color="grey")
        ax.set_xlim(-0.02 * xmax, xmax)
        ax.set_ylim(len(networks) - 0.5, -0.75)
        ax.set_title(panel_title)
        ax.set_xlabel(xlabels.get(metric, "value (%)") if isinstance(xlabels, Mapping) else xlabels)
        ax.grid(axis="y", visible=False)
    axes[0, 0].set_yticks(range(len(networks)))
    axes[0, 0].set_yticklabels([net + (f"\n({int(runs[net])} run{'s' if runs[net] != 1 else ''})"
                                       if np.isfinite(runs.get(net, math.nan)) else "")
                                for net in networks])
    handles = [Line2D([], [], color=PAPER_COLOUR, marker="D", ls="-" if drew["paper_std"] else "",
                      label="paper" + (" (± std over its runs, where published)" if drew["paper_std"] else "")),
               Line2D([], [], color=OURS_COLOUR, marker="o", ls="", label="ours: mean over runs")]
    if drew["unsound"]:
        handles.append(Line2D([], [], color=OURS_COLOUR, marker="o", mfc="white", mew=1.5, ls="",
                              label="ours: a flood or a collapse (area outside ½–2× the truth; not ranked)"))
    if drew["std"]:
        handles.append(Line2D([], [], color=OURS_COLOUR, lw=5, alpha=0.45, label="ours: ± std over runs"))
    if drew["ci"]:
        handles.append(Line2D([], [], color=OURS_COLOUR, lw=1, marker="|", ms=8,
                              label="ours: 95 % interval (test images)"))
    bottom = _legend_below(fig, handles, ncol=len(handles))
    fig.suptitle(title)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    return fig


def _ablation_areas(data, column: str) -> list[str]:
    """Per row, "area 3.2×\\n(a flood)" for a red/yellow Dice column whose table carries the
    predicted/true area ratio (``red_area_ratio``), else "": every lesion Dice with its area."""
    from mtunet.report.claims import area_text

    ratio_column = column.replace("_dice", "_area_ratio")
    if not column.endswith("_dice") or ratio_column not in data.columns:
        return [""] * len(data)
    return [area_text(r, sep="\n") if np.isfinite(_num(r)) else "" for r in data[ratio_column]]


@_styled
def ablation_plot(frame, parameter: str, title: str, paper_choice=None, grading_test: str = ""):
    """An ablation of MTUnet: Dice (mean, red and yellow, %) and mean ROC AUC (%) in separate
    panels against the parameter. ``parameter`` "alpha": α on a log axis with a tick at each
    value tried (α weighs the grading loss, Eq. 3), points joined by lines; otherwise (e.g.
    "seg_loss") the values are categories with readable names, drawn as grouped bars with their
    values. ``paper_choice`` (the paper's best α, or its loss) is marked; ``grading_test`` names
    the ROC panel's test set. ``n_runs`` per value, when present, is written under the title;
    ``red_area_ratio`` / ``yellow_area_ratio``, when present, beside the red and yellow Dice.
    """
    plt = _plt()
    numeric = parameter == "alpha"
    data = frame.sort_values(parameter) if numeric else frame
    values = list(data[parameter])
    if numeric:
        x = np.asarray(values, dtype=float)
        labels = [f"{v:g}" for v in x]
        xlabel = "α — weight of the grading loss (L = L_seg + α·L_grade), log scale"
    else:
        x = np.arange(len(values), dtype=float)
        labels = [readable(v) + ("\n(paper's loss)" if v == paper_choice else "") for v in values]
        xlabel = "segmentation loss" if parameter == "seg_loss" else readable(parameter)
    fig, (ax_dice, ax_roc) = plt.subplots(1, 2, figsize=(11.5, 5.2))
    series = [(c, lab, colour, marker) for c, lab, colour, marker in
              (("dice", "mean of red and yellow", "#333333", "o"),
               ("red_dice", readable("red"), _lesion_colour("HE"), "s"),
               ("yellow_dice", readable("yellow"), "#e0b000", "^")) if c in data.columns]
    roc = [("roc", "mean ROC AUC over the grades", OURS_COLOUR, "o")] if "roc" in data.columns else []
    for ax, group in ((ax_dice, series), (ax_roc, roc)):
        width = 0.8 / max(len(group), 1)
        for k, (col, label, colour, marker) in enumerate(group):
            y = np.asarray(data[col], dtype=float)
            areas = _ablation_areas(data, col)
            if numeric:
                ax.plot(x, y, marker=marker, color=colour, label=label, ms=7, lw=1.5)
                for xv, v, area in zip(x, y, areas):
                    if area:
                        ax.annotate(area, (xv, v), ha="center", va="bottom", fontsize=7, color=colour,
                                    xytext=(0, 5), textcoords="offset points")
                continue
            xs = x - 0.4 + width * (k + 0.5)
            bars = ax.bar(xs, np.nan_to_num(y), width, color=colour, label=label, edgecolor="white")
            for bar, v, area in zip(bars, y, areas):
                ax.annotate(_fmt(v) + (f"\n{area}" if area else ""),
                            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                            ha="center", va="bottom", fontsize=7.5, xytext=(0, 1),
                            textcoords="offset points")
    ax_roc.axhline(50, color="grey", ls=":", lw=1, label="chance")
    roc_title = "Grading: mean ROC AUC (%)" + (f", {grading_test}" if grading_test else "")
    for ax, ylabel, panel in ((ax_dice, "Dice (%)", "Lesion Dice (%), IDRiD-S test"),
                              (ax_roc, "mean ROC AUC (%)", roc_title)):
        if numeric:
            ax.set_xscale("log")
            ax.set_xlim(x.min() / 1.6, x.max() * 1.6)
            if paper_choice is not None:
                ax.axvline(float(paper_choice), color=PAPER_COLOUR, ls="--", lw=1,
                           label=f"paper's best α = {float(paper_choice):g}")
        else:
            ax.set_xlim(-0.6, len(x) - 0.4)
            ax.grid(axis="x", visible=False)
        ax.set_xticks(x)
        ax.set_xticklabels(labels)
        ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(panel)
        top = np.nanmax([np.nanmax(np.asarray(data[c], dtype=float)) for c, *_ in series] or [1.0])
        ax.set_ylim(0, 100 if ax is ax_roc else (top * 1.3 if np.isfinite(top) and top > 0 else 1.0))
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    runs = sorted({int(v) for v in data["n_runs"] if np.isfinite(_num(v))}) if "n_runs" in data.columns else []
    note = f"\n({' / '.join(map(str, runs))} run{'s' if runs != [1] else ''} per value)" if runs else ""
    fig.suptitle(title + note)
    fig.tight_layout()
    return fig


__all__ = ["ERROR_COLOURS", "ablation_plot", "class_balance", "confusion_matrix_plot", "error_map_rgb",
           "fundus_fov", "grade_ticks", "grading_heatmap", "lesion_area_by_grade", "lesion_error_map",
           "lesion_size_plot", "overlay", "overlay_comparison", "paper_vs_ours", "present_classes",
           "readable", "reliability_diagram", "roc_by_network", "roc_curves", "sample_grid", "save",
           "segmentation_overlays", "training_curves"]
