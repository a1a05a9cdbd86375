"""The ablations of MTUnet: lesion Dice and mean ROC AUC against α (the weight of the grading
loss) or against the segmentation loss."""
from __future__ import annotations

import numpy as np

from mtunet.report.figures.style import (OURS_COLOUR, PAPER_COLOUR, _ablation_areas, _fmt, _lesion_colour,
                                         _num, _plt, _styled, readable)


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
