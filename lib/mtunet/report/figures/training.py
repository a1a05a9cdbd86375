"""Training curves: per-epoch metrics of each run, one panel per metric, one colour per network
and one marker per seed."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from mtunet.report.figures.style import _legend_below, _plt, _styled, readable


def _history_column(columns, metric: str):
    """`metric` itself, or the one output-prefixed column naming it (Keras logs a multi-output
    model's metric as "seg_red_dice", a single-output one's as "red_dice")."""
    if metric in columns:
        return metric
    matches = [c for c in columns if str(c).endswith("_" + metric)
               and not str(c).startswith(("val_", "heldout_"))]
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
        return f"{readable(base)} (%)"
    return readable(base)


# the line of each kind of column: training batches, Keras validation data, the held-out images
# a run's length is chosen on (mtunet.heldout: "heldout_<metric>", scored at the masks' own size)
LINE_KINDS = (("", "-", "training"), ("val_", "--", "validation"), ("heldout_", ":", "held-out"))


@dataclass
class _Drawn:
    """What the panels drew: the shared legend's runs, the line kinds, the most epochs of a run."""
    run_handles: dict = field(default_factory=dict)      # run label -> legend handle
    kinds: set = field(default_factory=set)              # "training", "validation"
    most_epochs: int = 0


def _run_looks(runs) -> tuple[dict, dict]:
    """({network: colour}, {seed: marker}) of the runs: a tab10 colour per network, a marker per seed."""
    palette = _plt().get_cmap("tab10")
    networks = list(dict.fromkeys(_run_parts(k)[0] for k, _ in runs))
    seeds = list(dict.fromkeys(_run_parts(k)[1] for k, _ in runs))
    return ({net: palette(i % 10) for i, net in enumerate(networks)},
            {s: "osD^v<>p"[i % 8] for i, s in enumerate(seeds)})


def _epochs(frame, offset: float) -> np.ndarray:
    """A run's x values: its ``epoch`` column, 1-based (else 1..n), moved sideways by ``offset``."""
    x = (np.asarray(pd.to_numeric(frame["epoch"], errors="coerce"), dtype=float)
         if "epoch" in frame.columns else np.arange(len(frame), dtype=float))
    x = x + 1 if "epoch" not in frame.columns or (x.size and np.nanmin(x) == 0) else x
    return x + offset


def _curve_panel(ax, base: str, runs, looks, spread: float, drawn: _Drawn) -> None:
    """One metric's panel: each run's training curve (solid), validation curve (dashed) and
    held-out curve (dotted: the images its kept epoch was chosen on)."""
    from matplotlib.lines import Line2D

    colour, marker = looks
    lines = 0
    for k, (key, frame) in enumerate(runs):
        network, seed = _run_parts(key)
        x = _epochs(frame, spread * (k - (len(runs) - 1) / 2))
        column = _history_column(frame.columns, base)
        for prefix, style, kind in LINE_KINDS:
            col = "heldout_" + base if prefix == "heldout_" else prefix + str(column)
            if col not in frame.columns:
                continue
            y = np.asarray(pd.to_numeric(frame[col], errors="coerce"), dtype=float)
            if not np.isfinite(y).any():
                continue
            y = 100 * y if _is_percent_metric(base) else y
            label = network if seed is None else f"{network} · seed {seed}"
            ax.plot(x, y, style, color=colour[network], marker=marker[seed],
                    markersize=5 if len(y) <= 15 else 0, lw=1.6, label=f"{label} ({kind})")
            drawn.run_handles.setdefault(label, Line2D([], [], color=colour[network], marker=marker[seed],
                                                       lw=1.6, label=label))
            drawn.kinds.add(kind)
            drawn.most_epochs = max(drawn.most_epochs, int(round(np.nanmax(x))))
            lines += 1
    ax.set_title(readable(base))
    ax.set_xlabel("epoch")
    ax.set_ylabel(_history_ylabel(base))
    if not lines:
        ax.text(0.5, 0.5, f"{readable(base)}: not logged by any run", transform=ax.transAxes,
                ha="center", va="center", color="grey")


def _epoch_ticks(axes, most_epochs: int) -> None:
    """Epochs are whole numbers: never a tick at 1.5 (every epoch up to 12, else integer steps)."""
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        if most_epochs <= 12:
            ax.set_xticks(range(1, max(most_epochs, 1) + 1))
            ax.set_xlim(0.5, max(most_epochs, 1) + 0.5)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


def _curve_handles(drawn: _Drawn) -> list:
    """The shared legend: one entry per run, then the two line styles when validation was drawn."""
    from matplotlib.lines import Line2D

    handles = list(drawn.run_handles.values())
    if drawn.kinds - {"training"}:
        handles += [Line2D([], [], color="k", ls=style, label=kind)
                    for _, style, kind in LINE_KINDS if kind in drawn.kinds]
    return handles


def _curve_notes(runs, drawn: _Drawn, spread: float) -> str:
    """The title's second line: why there is no curve, or no dashed line ("" when neither)."""
    notes = []
    if runs and drawn.most_epochs <= 1:
        notes.append("one epoch per run: single points, no curve" + ("; runs spread sideways" if spread else ""))
    if runs and not drawn.kinds - {"training"}:
        notes.append("training batches only: these runs hold out no validation images")
    return f"\n({'; '.join(notes)})" if notes else ""


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
    plt = _plt()
    bases = list(dict.fromkeys(m[4:] if m.startswith("val_") else m for m in metrics))
    ncols = max(1, min(int(ncols), len(bases)))
    nrows = math.ceil(len(bases) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.4 * nrows + 1.2), squeeze=False)
    runs = [(key, frame) for key, frame in histories.items() if frame is not None and len(frame)]
    looks, drawn = _run_looks(runs), _Drawn()
    # one epoch per run: spread the runs sideways around epoch 1 so equal values stay visible
    spread = (0.6 / len(runs) if len(runs) > 1 and max(len(f) for _, f in runs) <= 1 else 0.0)
    for ax, base in zip(axes.ravel(), bases):
        _curve_panel(ax, base, runs, looks, spread, drawn)
    for ax in axes.ravel()[len(bases):]:
        fig.delaxes(ax)
    _epoch_ticks(axes.ravel()[:len(bases)], drawn.most_epochs)
    handles = _curve_handles(drawn)
    bottom = _legend_below(fig, handles, ncol=min(len(handles), 5) if handles else None)
    fig.suptitle(title + _curve_notes(runs, drawn, spread))
    fig.tight_layout(rect=(0, bottom, 1, 1))
    return fig
