"""Figures of the data: class balance (DR grades per data role, lesion pixels), sample images
beside their lesion masks, the pseudo masks' lesion area per grade, and lesion size against the
working resolution."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from mtunet.report.figures.paint import _as_rgb_uint8, _fit_map, _inside, fundus_fov, overlay, present_classes
from mtunet.report.figures.style import (_grade_names, _image_axis, _isnan, _lesion_colour, _lesion_handles,
                                         _plt, _styled, grade_ticks, readable)


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


def preprocessing_by_camera(examples: Sequence[tuple[str, np.ndarray, np.ndarray]],
                            preprocessing: str = "graham",
                            title: str = "Grade inputs from three cameras, before and after"):
    """One column per camera (data set): the model input as cropped, padded and resized (top) and
    after the grade preprocessing (bottom). ``examples``: (caption, raw uint8, preprocessed
    uint8). Where the photographs differ in colour and brightness and the lower row does not, the
    preprocessing is doing what it is meant to."""
    plt = _plt()
    n = max(1, len(examples))
    fig, axes = plt.subplots(2, n, figsize=(3.6 * n, 7.4), squeeze=False)
    for k in range(n):
        if k >= len(examples):
            axes[0, k].axis("off")
            axes[1, k].axis("off")
            continue
        caption, raw, done = examples[k]
        _image_axis(axes[0, k], _as_rgb_uint8(raw), f"{caption}\nas cropped and resized")
        axes[0, k].title.set_fontsize(9)
        _image_axis(axes[1, k], _as_rgb_uint8(done), f"after '{preprocessing}'")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
