"""Figures of the study: lesion overlays (the paper's Fig. 6), data balance, training curves,
grading diagnostics (ROC, confusion, calibration) and paper-versus-ours comparisons.

Every plotting function builds and returns a matplotlib ``Figure``; none calls ``plt.show``,
so the module works headless (Agg) and in notebooks alike. :func:`save` writes a PNG and
closes the figure. :func:`overlay` and :func:`error_map_rgb` are pure numpy/OpenCV and return
uint8 RGB arrays, so the prediction CLI can use them without matplotlib.

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

_OD_INDEX = CLASS_INDEX["OD"]


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




def _group_label(group) -> str:
    if isinstance(group, str) and group in LESION_GROUPS:
        names = "+".join(CLASS_NAMES_WITH_OD[i] for i in LESION_GROUPS[group])
        return f"{group} lesions ({names})"
    return "lesions " + "+".join(CLASS_NAMES_WITH_OD[i] for i in group_classes(group))


def overlay(image, class_map, alpha: float = 0.55, include_od: bool = True,
            dilate: int = 0) -> np.ndarray:
    """Image with lesion pixels painted in their ``CLASS_COLOURS`` (as in the paper's Fig. 6).

    Red family for MA/HE, yellow family for EX/SE, purple for the optic disc (class 5, skipped
    when ``include_od`` is False). Pixel = (1 - alpha) * image + alpha * colour; background
    (class 0) and unknown indexes are left unchanged. A class map of another size than the
    image is resized to it with nearest-neighbour interpolation. ``dilate`` > 0 grows each
    lesion by that many pixels (display only: microaneurysms of a few pixels vanish when a
    full-resolution fundus is shown a few inches wide). Returns uint8 RGB (H, W, 3).
    """
    img = _as_rgb_uint8(image)
    cm = _fit_map(class_map, img.shape[:2])
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
        if mask.any():
            colour = np.asarray(CLASS_COLOURS[name], np.float32)
            out[mask] = (1.0 - a) * out[mask] + a * colour
    return np.clip(out.round(), 0, 255).astype(np.uint8)


def error_map_rgb(image, pred_map, truth_map, group="red", alpha: float = 1.0,
                  grey_background: bool = True) -> np.ndarray:
    """Per-pixel segmentation errors of one lesion group, painted on the image (uint8 RGB).

    TP green, FP blue, FN magenta (``ERROR_COLOURS``), colours chosen to differ from the lesion
    colours. The image is shown in grey (``grey_background``) so the error colours stand out;
    true-negative pixels are left as that grey image. Maps are resized (nearest) to the image.
    """
    img = _as_rgb_uint8(image)
    if grey_background:
        grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        img = np.stack([grey] * 3, axis=-1)
    classes = list(group_classes(group))
    pred = np.isin(_fit_map(pred_map, img.shape[:2]), classes)
    true = np.isin(_fit_map(truth_map, img.shape[:2]), classes)
    out = img.astype(np.float32)
    a = float(np.clip(alpha, 0.0, 1.0))
    for key, mask in (("TP", pred & true), ("FP", pred & ~true), ("FN", ~pred & true)):
        if mask.any():
            out[mask] = (1.0 - a) * out[mask] + a * np.asarray(ERROR_COLOURS[key], np.float32)
    return np.clip(out.round(), 0, 255).astype(np.uint8)


def _error_counts(pred_map, truth_map, shape, group) -> dict[str, int]:
    classes = list(group_classes(group))
    pred = np.isin(_fit_map(pred_map, shape), classes)
    true = np.isin(_fit_map(truth_map, shape), classes)
    return {"TP": int((pred & true).sum()), "FP": int((pred & ~true).sum()),
            "FN": int((~pred & true).sum())}


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


def _lesion_colour(label) -> tuple[float, float, float]:
    key = str(label)
    for abbr, full in LESION_NAMES.items():
        if key.strip().lower() in (abbr.lower(), full.lower()):
            key = abbr
            break
    rgb = CLASS_COLOURS.get(key)
    return tuple(np.asarray(rgb) / 255.0) if rgb else (0.5, 0.5, 0.5)


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------

@_styled
def class_balance(summary, lesion_fractions=None, normalise: bool = True, title: str =
                  "Class balance of the data"):
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
    ax.set_xticklabels([names[g] for g in grades])
    ax.set_xlabel("DR grade")
    ax.set_ylabel("% of the role's images" if normalise else "images")
    ax.set_title("Grade distribution per data role")
    if roles:
        ax.legend(title="role", loc="upper right")
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
        ax2.set_xlabel("lesion")
        ax2.set_ylabel("% of pixels")
        ax2.set_title("Lesion pixel fraction")
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
                dilate: int = 0):
    """Each sample's image beside its lesion overlay: a quick visual check that images and
    masks are aligned, oriented and coloured as expected before anything is trained.

    ``ncols`` counts panels per row and is rounded up to an even number (image + overlay per
    sample). A ``None`` class map shows "no mask" instead of the overlay.
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
            present.update(np.unique(np.asarray(cm)).tolist())
            _image_axis(ax_ov, overlay(img, cm, include_od=include_od, dilate=dilate),
                        "+ lesion overlay")
    handles = _lesion_handles(include_od, present or None)
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False,
                   bbox_to_anchor=(0.5, 0.0))
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06 if handles else 0, 1, 1), h_pad=1.2)
    return fig


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------

@_styled
def _history_column(columns, metric: str):
    """`metric` itself, or the one output-prefixed column naming it (Keras logs a multi-output
    model's metric as "seg_red_dice", a single-output one's as "red_dice")."""
    if metric in columns:
        return metric
    matches = [c for c in columns if str(c).endswith("_" + metric) and not str(c).startswith("val_")]
    return matches[0] if len(matches) == 1 else metric


def training_curves(histories: Mapping[str, "object"], metrics: Sequence[str] = ("loss",),
                    title: str = "Training curves"):
    """Per-epoch metrics of each run (solid = train, dashed = ``val_`` column, same colour):
    shows convergence, over-fitting and whether runs of a comparison trained comparably.

    ``histories`` maps a run label to a Keras-history-like DataFrame; the x axis is its
    ``epoch`` column when present, else 1..n. A metric matches its own column or the one
    output-prefixed column (``red_dice`` finds ``seg_red_dice``). Missing or all-empty columns
    (no validation data) are skipped; an empty panel says so.
    """
    plt = _plt()
    bases = []
    for m in metrics:
        base = m[4:] if m.startswith("val_") else m
        if base not in bases:
            bases.append(base)
    fig, axes = plt.subplots(1, len(bases), figsize=(4.8 * len(bases), 3.8), squeeze=False)
    palette = plt.get_cmap("tab10")
    for ax, base in zip(axes[0], bases):
        drawn = 0
        for i, (run, frame) in enumerate(histories.items()):
            if frame is None or len(frame) == 0:
                continue
            x = (np.asarray(frame["epoch"], dtype=float) if "epoch" in frame.columns
                 else np.arange(1, len(frame) + 1))
            if "epoch" in frame.columns and x.size and x.min() == 0:
                x = x + 1
            column = _history_column(frame.columns, base)
            for col, style, suffix in ((column, "-", "train"), ("val_" + str(column), "--", "val")):
                if col in frame.columns and pd.to_numeric(frame[col], errors="coerce").notna().any():
                    y = np.asarray(pd.to_numeric(frame[col], errors="coerce"), dtype=float)
                    ax.plot(x, y, style, color=palette(i % 10), marker="o" if len(y) <= 15 else None,
                            markersize=3, label=f"{run} ({suffix})")
                    drawn += 1
        ax.set_title(base)
        ax.set_xlabel("epoch")
        ax.set_ylabel(base)
        if drawn:
            ax.legend()
        else:
            ax.text(0.5, 0.5, f"no '{base}' in any history", transform=ax.transAxes,
                    ha="center", va="center", color="grey")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# Segmentation
# --------------------------------------------------------------------------------------------

@_styled
def overlay_comparison(image, truth_map, predictions: Mapping[str, np.ndarray],
                       title: str = "Lesion segmentation by model", include_od: bool = True,
                       max_cols: int = 4, dilate: int = 0):
    """The paper's Fig. 6: original image, ground-truth overlay, then one overlay per model,
    so missed red lesions (the paper's point about ResNet/Inception encoders) can be seen.

    ``truth_map`` may be ``None`` (panel says "no ground truth"). Panels wrap after
    ``max_cols`` per row (rows balanced); one legend of the lesion colours is shared;
    ``dilate`` is passed to :func:`overlay` (thicker lesions, for display only).
    """
    plt = _plt()
    img = _as_rgb_uint8(image)
    paint = functools.partial(overlay, include_od=include_od, dilate=dilate)
    panels = [("Original", img),
              ("Ground truth", None if truth_map is None else paint(img, truth_map))]
    panels += [(str(name), paint(img, pm)) for name, pm in predictions.items()]
    nrows = math.ceil(len(panels) / max(1, int(max_cols)))
    ncols = math.ceil(len(panels) / nrows)
    aspect = img.shape[0] / max(img.shape[1], 1)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, (3.4 * aspect + 0.45) * nrows + 0.9),
                             squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        if k >= len(panels):
            ax.axis("off")
            continue
        name, arr = panels[k]
        if arr is None:
            _image_axis(ax, img, name)
            ax.text(0.5, 0.5, "no ground truth", transform=ax.transAxes, ha="center",
                    va="center", color="white", fontsize=10,
                    bbox={"facecolor": "black", "alpha": 0.6})
        else:
            _image_axis(ax, arr, name)
    handles = _lesion_handles(include_od)
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False,
               bbox_to_anchor=(0.5, 0.0))
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.35 / fig.get_figheight(), 1, 1))
    return fig


@_styled
def lesion_error_map(image, pred_map, truth_map, group="red", title: str | None = None):
    """Where a model's lesion mask is right (TP), spurious (FP) or missing (FN) for one group:
    explains a Dice number (tiny MAs missed vs. haemorrhage borders) beyond the score itself.

    Left: the image; right: :func:`error_map_rgb` with pixel counts and Dice in the legend.
    """
    from matplotlib.patches import Patch
    plt = _plt()
    img = _as_rgb_uint8(image)
    rgb = error_map_rgb(img, pred_map, truth_map, group)
    counts = _error_counts(pred_map, truth_map, img.shape[:2], group)
    denom = 2 * counts["TP"] + counts["FP"] + counts["FN"]
    dice = 2 * counts["TP"] / denom if denom else math.nan
    aspect = img.shape[0] / max(img.shape[1], 1)
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 4.0 * aspect + 1.1))
    _image_axis(axes[0], img, "Image")
    _image_axis(axes[1], rgb, f"Errors: {_group_label(group)}")
    handles = [Patch(facecolor=np.asarray(ERROR_COLOURS[k]) / 255.0, edgecolor="k",
                     linewidth=0.5, label=f"{k} – {ERROR_LABELS[k]}: {counts[k]:,} px")
               for k in ("TP", "FP", "FN")]
    fig.legend(handles=handles, loc="lower center", ncol=3, frameon=False,
               bbox_to_anchor=(0.5, 0.0))
    dice_txt = "undefined (no lesion in either mask)" if math.isnan(dice) else f"{dice:.3f}"
    fig.suptitle(title or f"Segmentation errors, {group} lesions — Dice {dice_txt}")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


# --------------------------------------------------------------------------------------------
# Grading
# --------------------------------------------------------------------------------------------

@_styled
def roc_curves(y_true, prob, title: str = "One-vs-rest ROC per DR grade"):
    """One-vs-rest ROC per grade with its AUC (the paper's Tables 3-4 numbers as curves).

    A grade absent from ``y_true`` (or the grade of every sample) has no ROC curve; it is
    listed in the legend as "not in y_true" / "only class" instead.
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
            why = "not in y_true" if not positive.any() else "only class present"
            ax.plot([], [], color=colour, linestyle=":", label=f"{names[g]}: {why}, no curve")
            continue
        fpr, tpr, _ = roc_curve(positive, p[:, g])
        ax.plot(fpr, tpr, color=colour, lw=2,
                label=f"{names[g]} (AUC {roc_auc_grade(y, p, g):.3f}, n={int(positive.sum())})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", lw=1, label="chance")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title)
    ax.legend(loc="lower right")
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


@_styled
def reliability_diagram(y_true, prob, n_bins: int = 10,
                        title: str = "Reliability of the grade probabilities"):
    """Top-label confidence vs accuracy per bin with the expected calibration error (ECE):
    whether the softmax grade probabilities can be read as probabilities (a claim the paper
    does not make, so we check it). Lower panel: how many images fall in each bin.
    """
    from mtunet.metrics import expected_calibration_error, reliability_curve

    plt = _plt()
    conf, acc, counts = reliability_curve(y_true, prob, n_bins)
    ece = expected_calibration_error(y_true, prob, n_bins)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    width = 1.0 / n_bins
    fig, (ax, axn) = plt.subplots(2, 1, figsize=(5.4, 6.0), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1]})
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
    ax.set_ylabel("accuracy")
    ece_txt = "n/a" if math.isnan(ece) else f"{ece:.3f}"
    ax.set_title(f"{title}\nECE = {ece_txt} ({n_bins} bins, n={int(counts.sum())})")
    ax.legend(loc="upper left")
    axn.bar(centres, counts, width=width * 0.95, color="#8c8c8c", edgecolor="white")
    axn.set_xlabel("top-label confidence (max softmax probability)")
    axn.set_ylabel("images")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# Paper vs ours
# --------------------------------------------------------------------------------------------

@_styled
def paper_vs_ours_bars(frame, label_col: str, paper_col: str, ours_col: str,
                       ours_err_col: str | None = None, title: str = "Paper vs. reproduction",
                       ylabel: str = "value"):
    """The paper's reported value next to ours (± ``ours_err_col``, e.g. std over runs) per
    row: the at-a-glance reproduction verdict for Tables 1-3. A missing paper value is
    marked "n/r" (not reported); values are written on the bars.
    """
    plt = _plt()
    labels = [str(v) for v in frame[label_col]]
    paper = np.asarray(frame[paper_col], dtype=float)
    ours = np.asarray(frame[ours_col], dtype=float)
    err = (np.asarray(frame[ours_err_col], dtype=float)
           if ours_err_col and ours_err_col in frame.columns else None)
    x = np.arange(len(labels))
    w = 0.38
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(labels) + 2.5), 4.4))
    b1 = ax.bar(x - w / 2, np.nan_to_num(paper), w, color="#8c8c8c", label="paper")
    b2 = ax.bar(x + w / 2, np.nan_to_num(ours), w, color="#4c72b0",
                label="ours" + (" (± error bar)" if err is not None else ""),
                yerr=None if err is None else np.nan_to_num(err), capsize=4,
                error_kw={"elinewidth": 1.2, "ecolor": "black"})
    top = np.nanmax(np.concatenate([paper, ours + (np.nan_to_num(err) if err is not None else 0)
                                    , [0.0]]))
    offset = 0.01 * (top if np.isfinite(top) and top > 0 else 1.0)
    for bars, vals, errs in ((b1, paper, None), (b2, ours, err)):
        for k, (bar, v) in enumerate(zip(bars, vals)):
            xc = bar.get_x() + bar.get_width() / 2
            if not np.isfinite(v):
                ax.text(xc, offset, "n/r", ha="center", va="bottom", fontsize=8, color="grey")
                continue
            e = errs[k] if errs is not None and np.isfinite(errs[k]) else 0.0
            ax.text(xc, v + e + offset, f"{v:.3g}", ha="center", va="bottom", fontsize=7.5)
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=25 if len(labels) > 4 else 0,
                       ha="right" if len(labels) > 4 else "center")
    ax.set_xlabel(label_col)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.margins(y=0.12)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    return fig


@_styled
def metric_vs_parameter(frame, x: str, ys: Sequence[str], title: str = "Metrics vs. parameter",
                        ylabel: str = "value"):
    """Metrics against a swept parameter (the α weighting of the two losses): where the
    multi-task trade-off is best. Log x axis when every x > 0; a ``<y>_std`` column, when
    present, is drawn as error bars. Missing ``ys`` columns are skipped.
    """
    plt = _plt()
    data = frame.sort_values(x)
    xv = np.asarray(data[x], dtype=float)
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    drawn = 0
    for y in ys:
        if y not in data.columns:
            continue
        yerr = np.asarray(data[f"{y}_std"], dtype=float) if f"{y}_std" in data.columns else None
        ax.errorbar(xv, np.asarray(data[y], dtype=float), yerr=yerr, marker="o", capsize=3,
                    label=y)
        drawn += 1
    if xv.size and np.all(xv > 0):
        ax.set_xscale("log")
    ax.set_xlabel(x + (" (log scale)" if xv.size and np.all(xv > 0) else ""))
    ax.set_ylabel(ylabel if len(ys) != 1 else ys[0])
    ax.set_title(title)
    if drawn:
        ax.legend()
    else:
        ax.text(0.5, 0.5, "none of the columns present", transform=ax.transAxes,
                ha="center", va="center", color="grey")
    fig.tight_layout()
    return fig


@_styled
def lesion_size_plot(table, title: str = "Lesion size against working resolution"):
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
    axes[0].set_ylabel("lesions under 1 px across (%)")
    axes[1].set_ylabel("mask pixels / true lesion area")
    axes[1].axhline(1.0, color="grey", lw=0.8, ls="--")
    axes[0].legend(title="lesion")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


__all__ = ["ERROR_COLOURS", "class_balance", "lesion_size_plot", "confusion_matrix_plot", "error_map_rgb",
           "lesion_error_map", "metric_vs_parameter", "overlay", "overlay_comparison",
           "paper_vs_ours_bars", "reliability_diagram", "roc_curves", "sample_grid", "save",
           "training_curves"]
