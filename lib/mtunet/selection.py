"""Choosing a segmentation-loss recipe on a validation split of IDRiD-S train, never on the test.

At a CPU budget (128 px, a few epochs) the paper's BCE (Eq. 1) settles on "all background". A
profile that deviates from the paper must pick its recipe without looking at the test images:
this module holds out `n_val` IDRiD-S *training* images, trains the seed segmenter once per
candidate (loss x epochs) on the rest, and scores each on the held-out images.

    python -m mtunet.selection --data-dir ../shared/data --out results/cpu \
        --candidates bce:8,dice:8,bce_dice:8,bce_dice:16

The rule, fixed before any result was seen: the highest mean of red and yellow pooled Dice on the
validation images. ``area_ratio`` (predicted / true lesion pixels) is reported beside it, because
a flood of lesion predictions can score a non-zero Dice (ratio >> 1) and a collapse scores zero
(ratio ~ 0).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from mtunet.data.records import Record
from mtunet.errors import UserError

COLUMNS = ["seg_loss", "epochs", "optimiser", "red_dice", "yellow_dice", "mean_dice", "red_area_ratio",
           "yellow_area_ratio", "chosen"]


def validation_split(records: Sequence[Record], n_val: int, seed: int = 0
                     ) -> tuple[list[Record], list[Record]]:
    """(fit, validation): a seeded choice of `n_val` records by image id, independent of order."""
    ordered = sorted(records, key=lambda r: r.image_id)
    if not 0 < n_val < len(ordered):
        raise UserError(f"n_val must be between 1 and {len(ordered) - 1}, not {n_val}")
    chosen = set(np.random.default_rng(seed).permutation(len(ordered))[:n_val].tolist())
    fit = [r for i, r in enumerate(ordered) if i not in chosen]
    val = [r for i, r in enumerate(ordered) if i in chosen]
    return fit, val


def area_ratio(pred_maps: np.ndarray, true_maps: np.ndarray, group: str) -> float:
    """Predicted / true pixels of a lesion group (nan when the truth has none)."""
    from mtunet.metrics import group_mask

    true = int(group_mask(true_maps, group).sum())
    return float(group_mask(pred_maps, group).sum() / true) if true else float("nan")


def score_candidates(ctx, seed_model: str, candidates: Sequence[tuple],
                     fit: Sequence[Record], val: Sequence[Record]) -> pd.DataFrame:
    """Train `seed_model` once per (loss, epochs[, learning rate]) on `fit`; Dice and area
    ratios on `val`. A candidate without a learning rate uses the context's."""
    from mtunet.data.pipeline import load_arrays
    from mtunet.evaluate import evaluate_segmentation

    arrays = load_arrays(val, ctx.base.image_size, progress=False)
    rows = []
    for loss, epochs, *rest in candidates:
        lr = rest[0] if rest else ctx.base.learning_rate
        spec = ctx.spec(model=seed_model, seg_loss=loss, epochs=epochs, learning_rate=lr, seed=0,
                        tag="loss_selection")
        model = ctx.train(spec, fit)
        ev = evaluate_segmentation(model, val, ctx.base.image_size, arrays=arrays)
        red, yellow = 100 * ev.scores["red_dice_pooled"], 100 * ev.scores["yellow_dice_pooled"]
        rows.append({"seg_loss": loss, "epochs": epochs, "optimiser": f"Adam {lr:g}", "red_dice": red, "yellow_dice": yellow,
                     "mean_dice": (red + yellow) / 2,
                     "red_area_ratio": area_ratio(ev.pred_maps, arrays[1], "red"),
                     "yellow_area_ratio": area_ratio(ev.pred_maps, arrays[1], "yellow")})
    table = pd.DataFrame(rows, columns=COLUMNS[:-1])
    table["chosen"] = table.index == table["mean_dice"].idxmax() if len(table) else []
    return table


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


def main(argv=None) -> int:
    from mtunet import report, reproduce, study

    p = argparse.ArgumentParser(prog="python -m mtunet.selection", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--out", default="results/cpu", help="where loss_selection.csv/.md go")
    p.add_argument("--runs-dir", default="runs/cpu")
    p.add_argument("--candidates", type=parse_candidates,
                   default=parse_candidates("bce:8,dice:8,bce_dice:8,bce_dice:16"),
                   help="LOSS:EPOCHS,... (default bce:8,dice:8,bce_dice:8,bce_dice:16)")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--learning-rate", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--encoder-weights", default="auto")
    p.add_argument("--val-images", type=int, default=10)
    p.add_argument("--seed-model", default="unet")
    args = p.parse_args(argv)
    try:
        data = Path(args.data_dir)
        if not data.is_dir():
            raise UserError(f"{data}: no such data folder")
        splits = study.build_splits(data.resolve())
        fit, val = validation_split(splits["seg_train"], args.val_images)
        ctx = reproduce.Context.from_parameters("selection", str(Path(args.runs_dir).resolve()),
                                                args.image_size, 1, args.batch_size,
                                                args.learning_rate, args.encoder_weights)
        table = score_candidates(ctx, args.seed_model, args.candidates, fit, val)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    note = (f"{args.seed_model}, {args.image_size} px, Adam {args.learning_rate:g}, trained on "
            f"{len(fit)} IDRiD-S training images, scored on the other {len(val)} "
            f"({', '.join(r.image_id for r in val)}); the test images are not used. Rule: highest "
            "mean of red and yellow pooled Dice. area_ratio: predicted / true lesion pixels.")
    report.write_table(table, Path(args.out).resolve(), "loss_selection",
                       "Segmentation loss chosen on a validation split of IDRiD-S train (Dice, %)",
                       note=note)
    print(table.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
