"""Grading figures (the paper's Tables 3-4): one-vs-rest ROC curves per grade (one grader, or a
panel per grader), the grade confusion matrix, a reliability diagram of the grade probabilities,
and the paper-vs-ours ROC AUC heatmaps per network and grade."""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from mtunet.config import GRADE_NAMES
from mtunet.report.figures.style import _grade_names, _legend_below, _num, _plt, _styled


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


def _heatmap_values(table) -> tuple[list[str], list[str], dict[str, np.ndarray], set[str]]:
    """(grades, networks, {column: network x grade matrix, NaN where missing}, one-class graders)."""
    grades = _grade_order(table["grade"])
    networks = list(dict.fromkeys(str(v) for v in table["network"]))
    cell = {(str(r["network"]), str(r["grade"])): r for _, r in table.iterrows()}
    values = {column: np.array([[_num(cell[(n, g)].get(column)) if (n, g) in cell else math.nan
                                 for g in grades] for n in networks])
              for column in ("paper_mean", "paper_std", "ours_mean", "ours_std", "ci_low", "ci_high",
                             "n_positive")}
    one_class = {n for n in networks
                 if any(str(cell[(n, g)].get("one_class")).lower() == "true"
                        for g in grades if (n, g) in cell)}
    return grades, networks, values, one_class


def _heatmap_text(which: str, values: Mapping[str, np.ndarray], i: int, j: int) -> str:
    """A cell's number: the paper's mean ± std; ours with its 95 % interval (or ± std), or why not."""
    v = values[f"{which}_mean"][i, j]
    if which == "paper":
        s = values["paper_std"][i, j]
        return f"{v:.1f}" + (f"\n± {s:.1f}" if np.isfinite(s) else "")
    if np.isfinite(v):
        lo, hi, s = values["ci_low"][i, j], values["ci_high"][i, j], values["ours_std"][i, j]
        return f"{v:.1f}" + (f"\n[{lo:.0f}, {hi:.0f}]" if np.isfinite(lo) and np.isfinite(hi)
                             else f"\n± {s:.1f}" if np.isfinite(s) else "")
    return "no positive\nimage" if values["n_positive"][i, j] == 0 else "not run"


def _heatmap_panel(ax, which: str, values, grades, networks, one_class, positive_row, cmap, norm):
    """The paper's or our heatmap with a number in each cell and the grades (with their positive
    test images, ours) on the x axis; returns the image, for the colour bar."""
    matrix = values[f"{which}_mean"]
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, norm=norm, aspect="auto")
    for i, net in enumerate(networks):
        flagged = which == "ours" and net in one_class
        for j, grade in enumerate(grades):
            v = matrix[i, j]
            dark = np.isfinite(v) and abs(v - 50) > 28 and not flagged
            ax.text(j, i, _heatmap_text(which, values, i, j), ha="center", va="center", fontsize=8,
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
    return image


def _mark_one_class(axes, networks, grades, one_class) -> None:
    """Hatch the one-class graders' rows in our panel; name them (in red) on the network axis."""
    from matplotlib.patches import Rectangle

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

    plt = _plt()
    grades, networks, values, one_class = _heatmap_values(table)
    cmap = plt.get_cmap("RdBu").copy()
    cmap.set_bad("#e0e0e0")
    norm = TwoSlopeNorm(vmin=0, vcenter=50, vmax=100)
    width = 1.15 * len(grades) + 0.6
    fig, axes = plt.subplots(1, 2, figsize=(2 * width + 2.6, 0.8 * len(networks) + 2.6),
                             sharey=True, layout="constrained")
    positives = values["n_positive"]
    positive_row = [np.nanmax(positives[:, j]) if np.isfinite(positives[:, j]).any() else math.nan
                    for j in range(len(grades))]
    for ax, which in ((axes[0], "paper"), (axes[1], "ours")):
        image = _heatmap_panel(ax, which, values, grades, networks, one_class, positive_row, cmap, norm)
    _mark_one_class(axes, networks, grades, one_class)
    bar = fig.colorbar(image, ax=list(axes), fraction=0.03, pad=0.01)
    bar.set_label("ROC AUC (%) — 50 = chance")
    test_set = _short_test_set(table)
    fig.suptitle(title or f"{name + ': ' if name else ''}one-vs-rest ROC AUC (%) per DR grade, paper vs ours"
                          + (f" — test set {test_set}" if test_set else ""))
    if one_class:
        fig.supxlabel("Hatched: a run of this grader gave every test image the same grade; "
                      "its AUCs come from ties and are not ranked.", fontsize=8.5, color="firebrick")
    return fig
