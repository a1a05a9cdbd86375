"""Segmentation figures: the paper's Fig. 6 (image, ground truth and each model's lesion overlay),
the seed segmenter's and the encoders' overlays with their per-image Dice, and a lesion error map
(TP / FP / FN). Overlay legends list only the classes drawn; predictions outside the fundus are
not painted (scoring ignores them too)."""
from __future__ import annotations

import functools
import math
from typing import Mapping, Sequence

import numpy as np

from mtunet.config import LESION_GROUPS
from mtunet.report.figures.paint import (_as_rgb_uint8, _error_counts, _fit_map, _group_label, _inside,
                                         error_map_rgb, fundus_fov, overlay, present_classes)
from mtunet.report.figures.style import (ERROR_COLOURS, ERROR_LABELS, _image_axis, _legend_below,
                                         _lesion_handles, _num, _plt, _styled)


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
