"""Choosing a profile's segmentation loss on a validation split of IDRiD-S train, never the test.

A profile that deviates from the paper's BCE (Eq. 1) must pick its recipe without looking at the
test images: this step holds out `n_val` IDRiD-S *training* images, trains the seed segmenter
once per candidate (loss x epochs [x learning rate]) on the rest with the profile's recipe, and
scores each on the held-out images at the masks' own size.

The rule, fixed before any result was seen: among the candidates whose red and yellow area ratios
(predicted / true lesion pixels) both lie within [1/3, 3], the highest mean of red and yellow
pooled Dice. A flood (ratio >> 1) can score a non-zero Dice and a collapse (ratio ~ 0) scores
zero; neither can be chosen. ``python -m mtunet select-loss`` runs it for a profile.

The fallback, added when the cpu profile's first selection found no eligible candidate (it says
so in the table's note, and the table marks which rule chose): the candidate whose area ratios
lie nearest the band — the smallest worst-group distance |log(ratio / bound)| outside it — so a
near miss is preferred to a collapse, and Dice plays no part in it.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from mtunet.data.records import Record
from mtunet.errors import UserError
from mtunet.heldout import validation_split  # noqa: F401 (the rule lives with the held-out selection)
from mtunet.study.runs import Context

COLUMNS = ["seg_loss", "epochs", "optimiser", "red_dice", "yellow_dice", "mean_dice", "red_area_ratio",
           "yellow_area_ratio", "eligible", "chosen"]
TAG = "loss_selection"
AREA_RATIO_BOUNDS = (1 / 3, 3.0)   # a candidate outside them floods or collapses: not eligible


def score_candidates(ctx: Context, seed_model: str, candidates: Sequence[tuple],
                     fit: Sequence[Record], val: Sequence[Record]) -> pd.DataFrame:
    """Train `seed_model` once per (loss, epochs[, learning rate]) on `fit`; Dice (%) and area
    ratios on `val`, scored at the masks' own size; `chosen` by the rule of this module."""
    rows = []
    for loss, epochs, *rest in candidates:
        lr = rest[0] if rest else ctx.base.learning_rate
        spec = ctx.spec(model=seed_model, seg_loss=loss, epochs=epochs, learning_rate=lr, seed=0,
                        tag=TAG)
        ev = ctx.score("seg", spec, fit, "loss_selection_val", val)
        red, yellow = 100 * ev.scores["red_dice_pooled"], 100 * ev.scores["yellow_dice_pooled"]
        rows.append({"seg_loss": loss, "epochs": epochs, "optimiser": f"Adam {lr:g}",
                     "red_dice": red, "yellow_dice": yellow, "mean_dice": (red + yellow) / 2,
                     "red_area_ratio": ev.scores["red_area_ratio"],
                     "yellow_area_ratio": ev.scores["yellow_area_ratio"]})
    table = pd.DataFrame(rows, columns=COLUMNS[:-2])
    table["eligible"] = eligible(table).tolist()
    table["chosen"] = choose(table)
    return table


def eligible(table: pd.DataFrame) -> pd.Series:
    """Candidates whose red and yellow area ratios both lie inside AREA_RATIO_BOUNDS."""
    low, high = AREA_RATIO_BOUNDS
    return table["red_area_ratio"].between(low, high) & table["yellow_area_ratio"].between(low, high)


def distance_to_bounds(table: pd.DataFrame) -> pd.Series:
    """Per candidate, the worse group's |log(ratio / nearest bound)| outside the bounds (0 inside;
    a ratio of 0 is infinitely far)."""
    low, high = AREA_RATIO_BOUNDS
    with np.errstate(divide="ignore"):
        ratios = np.log(table[["red_area_ratio", "yellow_area_ratio"]].astype(float).clip(lower=0))
    outside = np.maximum(ratios - np.log(high), np.log(low) - ratios).clip(lower=0)
    return outside.max(axis=1)


def choose(table: pd.DataFrame) -> list[bool]:
    """The rule: the highest mean Dice among candidates with both area ratios inside the bounds;
    when none is, the fallback: the candidate nearest the bounds (none when every one collapses)."""
    inside = eligible(table)
    if inside.any():
        best = table.loc[inside, "mean_dice"].idxmax()
    else:
        distance = distance_to_bounds(table)
        if not np.isfinite(distance).any():
            return [False] * len(table)
        best = distance.idxmin()
    return [i == best for i in table.index]


def parse_candidates(text: str) -> list[tuple]:
    """"bce:8,dice:16:1e-3" -> [("bce", 8), ("dice", 16, 0.001)] (LOSS:EPOCHS[:LEARNING_RATE])."""
    from mtunet.losses import SEGMENTATION_LOSSES

    out = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        loss, epochs, *rest = item.split(":") + [""]
        rest = [r for r in rest if r]
        try:
            lr = [float(r) for r in rest[:1]]
        except ValueError:
            lr = [-1.0]
        if (loss not in SEGMENTATION_LOSSES or not epochs.isdigit() or int(epochs) < 1
                or len(rest) > 1 or (lr and not lr[0] > 0)):
            raise argparse.ArgumentTypeError(
                f"{item!r}: expected LOSS:EPOCHS[:LEARNING_RATE] with LOSS one of "
                f"{', '.join(SEGMENTATION_LOSSES)}")
        out.append((loss, int(epochs), *lr))
    if not out:
        raise argparse.ArgumentTypeError("no candidates given")
    return out


def select_loss(ctx: Context, splits, seed_model: str, candidates: Sequence[tuple], n_val: int,
                results: Path) -> pd.DataFrame:
    """Score the candidates on `n_val` held-out IDRiD-S training images; write loss_selection."""
    from mtunet.report.tables import write_table

    fit, val = validation_split(splits["seg_train"], n_val)
    table = score_candidates(ctx, seed_model, candidates, fit, val)
    base = ctx.base
    recipe = (f"{base.patch_size}-px crops of {base.scoring_size}-px images, {base.steps_per_epoch} "
              f"steps x epochs, batch {base.batch_size}, {base.lr_schedule} learning rate"
              if base.on_crops else f"whole images at {base.image_size} px, batch {base.batch_size}")
    low, high = AREA_RATIO_BOUNDS
    chosen = table.loc[table["chosen"], "seg_loss"].tolist()
    if not chosen:
        outcome = "No candidate is eligible and every one collapses: none chosen."
    elif table["eligible"].any():
        outcome = f"Chosen by the rule: {chosen[0]}."
    else:
        outcome = (f"No candidate is eligible (each floods or collapses on these images); chosen by "
                   f"the fallback (added after this outcome): "
                   f"{chosen[0]}, the candidate whose area ratios lie nearest [{low:.2f}, {high:g}] "
                   f"(smallest worst-group |log(ratio / bound)|).")
    note = (f"{seed_model}, {recipe}; trained on {len(fit)} IDRiD-S training images, scored at "
            f"the masks' own size on the other {len(val)} ({', '.join(r.image_id for r in val)}); "
            f"the test images are not used. Rule (fixed before looking): highest mean of red and "
            f"yellow pooled Dice among candidates whose red and yellow area ratios (predicted / "
            f"true lesion pixels) lie within [{low:.2f}, {high:g}]. " + outcome)
    write_table(table, results, "loss_selection",
                "Segmentation loss chosen on a validation split of IDRiD-S train (Dice, %)", note=note)
    return table
