"""Fig. 7, step 1: the initial lesion segmenter, trained on the IDRiD-S training images.

Notebooks 02 and 03 must agree on which run it is: :func:`seed_spec` is that one definition.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from mtunet.config import LESION_GROUPS, LESIONS
from mtunet.data.records import Record
from mtunet.study.runs import Context, RunSpec

TAG = "seed_segmenter"


def seed_spec(ctx: Context, seed_model: str, seed_epochs: int) -> RunSpec:
    """The initial segmenter of Fig. 7 (the study's first seed)."""
    return ctx.spec(model=seed_model, epochs=seed_epochs, seed=0, tag=TAG)


def seed_segmenter(ctx: Context, seg_train: Sequence[Record], seed_model: str, seed_epochs: int):
    """The trained seed segmenter (trained once, then loaded from the run cache)."""
    return ctx.train(seed_spec(ctx, seed_model, seed_epochs), seg_train)


def scores_table(evaluation) -> pd.DataFrame:
    """Pooled and per-image Dice (%), area ratio (predicted / true pixels) and AUPR (%) per lesion
    group and lesion, scored at the masks' own size, with the images each rests on."""
    rows = [{"group": g, "dice_pooled": 100 * evaluation.scores[f"{g}_dice_pooled"],
             "dice_per_image": 100 * evaluation.scores[f"{g}_dice_per_image"],
             "area_ratio": evaluation.scores[f"{g}_area_ratio"],
             "aupr": 100 * evaluation.scores[f"{g}_aupr"],
             "images_with_lesion": evaluation.scores.get(f"{g}_n_images")}
            for g in (*LESION_GROUPS, *LESIONS)]
    return pd.DataFrame(rows)


def train_and_score(ctx: Context, splits, seed_model: str, seed_epochs: int, results: Path):
    """Train (or load) the seed segmenter, score it on IDRiD-S test, write `seed_segmenter`.

    Returns (spec, evaluation, scores table); evaluation and table are None in a dry run.
    """
    from mtunet.report.tables import write_table

    spec = seed_spec(ctx, seed_model, seed_epochs)
    if ctx.dry_run:
        ctx.train(spec, splits["seg_train"])
        return spec, None, None
    evaluation = ctx.score("seg", spec, splits["seg_train"], "seg_test", splits["seg_test"])
    table = scores_table(evaluation)
    write_table(table, results, "seed_segmenter",
                "Seed segmenter on IDRiD-S test, scored at the masks' own size")
    return spec, evaluation, table


INIT_COLUMNS = ["model", "encoder_weights", "encoder_init_used"] + [
    f"{g}_{kind}" for g in LESION_GROUPS for kind in ("dice_pooled", "dice_per_image", "area_ratio")]


def encoder_init_comparison(ctx: Context, model: str, epochs: int, inits: Sequence[str],
                            train: Sequence[Record], test: Sequence[Record],
                            results: Path | None = None) -> pd.DataFrame:
    """The same segmenter trained from each encoder initialisation; Dice on `test` (%)."""
    from mtunet.report.tables import write_table

    rows = []
    for init in inits:
        spec = ctx.spec(model=model, epochs=epochs, seed=0, tag="encoder_init", encoder_weights=init)
        if ctx.dry_run:
            ctx.train(spec, train)
            continue
        evaluation = ctx.score("seg", spec, train, "seg_test", test)
        rows.append({"model": model, "encoder_weights": init,
                     "encoder_init_used": ctx.run_info(spec, train).get("encoder_init", ""),
                     **{f"{g}_{kind}": evaluation.scores[f"{g}_{kind}"] * (1 if kind == "area_ratio" else 100)
                        for g in LESION_GROUPS for kind in ("dice_pooled", "dice_per_image", "area_ratio")}})
    table = pd.DataFrame(rows, columns=INIT_COLUMNS)
    if results is not None:
        write_table(table, results, "encoder_init", "Seed segmenter: encoder initialisation vs Dice (%)")
    return table
