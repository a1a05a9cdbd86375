"""Why a network floods, one recipe change at a time, on held-out IDRiD-S *training* images.

Each arm is the profile's run of one network with one change (``grade_batches=interleaved``,
``learning_rate=3e-4`` ...), trained to the profile's cap with its held-out images scored after
every epoch (``mtunet.heldout``; no early stop, so every arm shows its whole curve). The table
holds every epoch's pooled red/yellow Dice and area ratios on the held-out images, and marks the
epoch the held-out rule keeps. The test split is never looked at.

A multi-task network trains on IDRiD-S train (true masks) and the profile's grade_train (grades
only, no pseudo masks): the recipe, not the pseudo-labelling, is what is diagnosed.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from mtunet.errors import UserError
from mtunet.study.runs import Context, model_tasks

TAG = "recipe_diagnosis"
COLUMNS = ["arm", "epoch", "red_dice", "yellow_dice", "red_area_ratio", "yellow_area_ratio",
           "kept", "train_minutes"]


def parse_arm(text: str) -> dict[str, Any]:
    """"grade_batches=interleaved;learning_rate=3e-4" -> the spec changes of one arm ("" or
    "profile": none)."""
    import yaml

    from mtunet.study.runs import RunSpec

    if text.strip() in ("", "profile"):
        return {}
    fields = set(RunSpec.__dataclass_fields__) - {"model", "tag", "seed"}
    changes = {}
    for part in text.split(";"):
        name, sep, value = part.partition("=")
        if not sep or name.strip() not in fields:
            raise UserError(f"arm {text!r}: expected NAME=VALUE[;NAME=VALUE] with NAME a run "
                            f"field ({', '.join(sorted(fields))})")
        changes[name.strip()] = yaml.safe_load(value)
    return changes


def training_records(splits, model: str) -> list:
    """IDRiD-S train, with the grade_train images for a network that also grades."""
    records = list(splits["seg_train"])
    if "grade" in model_tasks(model):
        records += list(splits["grade_train"])
    return records


def arm_rows(name: str, run_dir: Path) -> list[dict[str, Any]]:
    """One row per epoch of a finished arm, from its run.json's held-out record."""
    info = json.loads((run_dir / "run.json").read_text())
    heldout = info.get("heldout")
    if not heldout:
        raise UserError(f"{run_dir}: no held-out record in run.json (trained without heldout_images?)")
    minutes = float(json.loads((run_dir / "manifest.json").read_text()).get("wall_time_s", 0)) / 60
    return [{"arm": name, "epoch": e + 1, **{k: s[k] for k in COLUMNS[2:6]},
             "kept": e + 1 == heldout["best_epoch"], "train_minutes": round(minutes, 1)}
            for e, s in enumerate(heldout["scores"])]


def diagnose(ctx: Context, splits, model: str, arms: Sequence[tuple[str, dict]], n_val: int,
             cap: int) -> pd.DataFrame:
    """Train every arm (cached like any run) and gather their held-out curves."""
    records = training_records(splits, model)
    rows = []
    for name, changes in arms:
        spec = ctx.spec(model=model, seed=0, epochs=cap, heldout_images=n_val, patience=0,
                        tag=TAG, **changes)
        ctx.train(spec, records)
        rows += arm_rows(name, ctx.run_dir(spec, records))
    table = pd.DataFrame(rows, columns=COLUMNS)
    for column in ("red_dice", "yellow_dice"):
        table[column] = 100 * table[column]
    return table


def note(ctx: Context, model: str, n_val: int, cap: int, arms) -> str:
    base = ctx.base
    return (f"{model}, the profile's recipe ({base.patch_size}-px crops of {base.scoring_size}-px "
            f"images, {base.steps_per_epoch} steps per epoch, batch {base.batch_size}, "
            f"{base.lr_schedule} learning rate {base.learning_rate:g} over {cap} epochs) with one "
            "change per arm: " + "; ".join(f"{n}: {c or 'none'}" for n, c in arms)
            + f". Trained on IDRiD-S train less {n_val} held-out images (and grade_train for a "
            "grading network), scored on those at the masks' own size after every epoch (Dice %, "
            "area = predicted / true lesion pixels); kept: the epoch the held-out rule keeps. "
            "The test images are not used.")
