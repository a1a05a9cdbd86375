"""Paper vs ours: the paper's value and ours as paired dots per network, one panel per metric
(Tables 1 and 2), with the spread and the lesion area that qualify each of ours."""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from mtunet.report.figures.style import (OURS_COLOUR, PAPER_COLOUR, _area_label, _fmt, _legend_below, _num,
                                         _plt, _styled)


def _row_text(ax, x_end: float, x_start: float, y: float, text: str, colour, xmax: float) -> None:
    """A value label right of a marker's whisker, or left of it near the right edge."""
    if x_end + 0.2 * xmax < xmax:
        ax.text(x_end + 0.015 * xmax, y, text, ha="left", va="center", fontsize=7.5, color=colour)
    else:
        ax.text(x_start - 0.015 * xmax, y, text, ha="right", va="center", fontsize=7.5, color=colour)


def _paper_marker(ax, r, y: float, xmax: float, drew: dict) -> None:
    """The paper's value of a row: a grey diamond ± its published std, or "not reported"."""
    p, ps = _num(r.get("paper_mean")), _num(r.get("paper_std"))
    if not np.isfinite(p):
        ax.text(0.01 * xmax, y, "paper: not reported", va="center", fontsize=7.5, color="grey")
        return
    ax.errorbar(p, y, xerr=ps if np.isfinite(ps) else None, fmt="D", color=PAPER_COLOUR,
                ms=6, capsize=3, lw=1.4, zorder=3)
    drew["paper_std"] |= bool(np.isfinite(ps))
    e = ps if np.isfinite(ps) else 0.0
    _row_text(ax, p + e, p - e, y, _fmt(p) + (f" ± {_fmt(ps)}" if np.isfinite(ps) else ""), "dimgrey", xmax)


def _ours_marker(ax, r, y: float, xmax: float, drew: dict) -> None:
    """Our value of a row: a blue dot (hollow on a flood or a collapse), a thick bar ± std over
    runs, a thin line its 95 % interval, the value and area beside it; or "not run"."""
    o, os_ = _num(r.get("ours_mean")), _num(r.get("ours_std"))
    lo, hi = _num(r.get("ci_low")), _num(r.get("ci_high"))
    if not np.isfinite(o):
        ax.text(0.01 * xmax, y, "ours: not run", va="center", fontsize=7.5, color=OURS_COLOUR)
        return
    ends = [o]
    if np.isfinite(lo) and np.isfinite(hi):
        ax.errorbar(o, y, xerr=[[max(o - lo, 0)], [max(hi - o, 0)]], fmt="none",
                    ecolor=OURS_COLOUR, elinewidth=1.0, capsize=3, zorder=2)
        ends += [lo, hi]
        drew["ci"] = True
    if np.isfinite(os_) and os_ > 0:
        ax.plot([o - os_, o + os_], [y, y], color=OURS_COLOUR, lw=5, alpha=0.45,
                solid_capstyle="butt", zorder=2)
        ends += [o - os_, o + os_]
        drew["std"] = True
    area, unsound = _area_label(r)
    drew["unsound"] |= unsound
    ax.plot(o, y, "o", color=OURS_COLOUR, ms=7, zorder=4,
            **({"mfc": "white", "mec": OURS_COLOUR, "mew": 1.5} if unsound
               else {"mec": "white", "mew": 0.8}))
    _row_text(ax, max(ends), min(ends), y,
              _fmt(o) + (f" ± {_fmt(os_)}" if np.isfinite(os_) else "") + area, OURS_COLOUR, xmax)


def _comparison_panel(ax, rows: Mapping[str, object], networks, drew: dict, runs: dict) -> float:
    """One metric's panel: the paper's and our marker per network (its row of ``rows``, or "not
    in this table"); records each network's number of runs; returns the x axis' upper limit."""
    values = [v for r in rows.values() for v in (_num(r.get("paper_mean")), _num(r.get("ours_mean")),
                                                  _num(r.get("ci_high")))]
    finite = [v for v in values if np.isfinite(v)]
    xmax = 100.0 if not finite or max(finite) <= 100 else 1.1 * max(finite)
    for i, net in enumerate(networks):
        r = rows.get(net)
        if r is None:
            ax.text(0.01 * xmax, i, "not in this table", va="center", fontsize=7.5, color="grey")
            continue
        runs[net] = _num(r.get("n_runs"))
        _paper_marker(ax, r, i - 0.18, xmax, drew)
        _ours_marker(ax, r, i + 0.18, xmax, drew)
    return xmax


def _comparison_handles(drew: dict) -> list:
    """The legend: paper and ours, then what was drawn (a hollow dot, the std bar, the interval)."""
    from matplotlib.lines import Line2D

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
    return handles


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
    plt = _plt()
    networks = list(dict.fromkeys(str(v) for v in table[key]))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels) + 1.8, 0.75 * len(networks) + 2.4),
                             sharey=True, squeeze=False)
    drew = {"std": False, "ci": False, "paper_std": False, "unsound": False}
    runs: dict[str, float] = {}
    for ax, (metric, panel_title) in zip(axes[0], panels.items()):
        rows = {str(r[key]): r for _, r in table[table[metric_col] == metric].iterrows()}
        xmax = _comparison_panel(ax, rows, networks, drew, runs)
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
    handles = _comparison_handles(drew)
    bottom = _legend_below(fig, handles, ncol=len(handles))
    fig.suptitle(title)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    return fig
