"""Choosing how graders see an image (size and preprocessing) on held-out APTOS *training* images.

The cpu profile cannot train four ImageNet-sized graders from random weights to convergence at
every size, so the choice is made with the plain recipe (``mtunet.study.grading_probe``: a linear
probe on the frozen VGG16 encoder MTUnet starts from): for each candidate (input size x grade
preprocessing), the probe is fitted on grade_train less ``heldout`` images, the same held-out
images every run's grade selection uses (``mtunet.heldout.validation_split``), and scored on them.

The rule, fixed before looking: the highest held-out mean one-vs-rest AUC; a candidate within
``TIE_AUC`` points of it that is cheaper (smaller input) or closer to the photograph
("none" before "graham") is preferred, since a lead that small is within the noise of a few
hundred images. The test sets are never looked at.
"""
from __future__ import annotations

import itertools
import time
from typing import Sequence

import numpy as np
import pandas as pd

from mtunet.errors import UserError

TAG = "grading_input_selection"
TIE_AUC = 1.0          # AUC points: closer than this is a tie
COLUMNS = ["image_size", "grade_preprocessing", "fit_images", "heldout_images", "mean_auc",
           "referable_auc", "kappa", "seconds", "chosen"]


def parse_candidates(text: str) -> list[tuple[int, str]]:
    """"128:none,224:graham" -> [(128, "none"), (224, "graham")]; "sizes x preprocessings" as
    "128,224x none,graham"."""
    from mtunet.data.pipeline import check_grade_preprocessing

    if "x" in text:
        sizes, names = text.split("x", 1)
        pairs = list(itertools.product(sizes.split(","), names.split(",")))
    else:
        pairs = [tuple(item.split(":", 1)) for item in text.split(",")]
    out = []
    for pair in pairs:
        if len(pair) != 2 or not pair[0].strip().isdigit():
            raise UserError(f"candidates {text!r}: expected SIZE:PREPROCESSING,... or SIZES x NAMES")
        out.append((int(pair[0]), check_grade_preprocessing(pair[1].strip())))
    return out


def score_candidate(fit, held, image_size: int, preprocessing: str, encoder_weights, seed: int = 0):
    """The probe fitted on `fit` at that size and preprocessing, scored on `held`."""
    from mtunet.metrics import mean_roc_auc, quadratic_kappa, roc_auc_grade
    from mtunet.models.registry import MODELS
    from mtunet.study.grading_probe import (feature_extractor, fit_probe, pooled_features,
                                            probability_of_every_grade)

    started = time.time()
    size = -(-image_size // MODELS["mtunet"].multiple) * MODELS["mtunet"].multiple
    extractor, _ = feature_extractor(size, encoder_weights)
    grades = np.array([r.grade for r in fit])
    probe = fit_probe(pooled_features(extractor, list(fit), size, preprocessing=preprocessing),
                      grades, seed)
    truth = np.array([r.grade for r in held])
    prob = probability_of_every_grade(probe, pooled_features(extractor, list(held), size,
                                                             preprocessing=preprocessing))
    referable = np.stack([prob[:, :2].sum(1), prob[:, 2:].sum(1)], axis=1)
    return {"image_size": size, "grade_preprocessing": preprocessing, "fit_images": len(fit),
            "heldout_images": len(held), "mean_auc": 100 * mean_roc_auc(truth, prob),
            "referable_auc": 100 * roc_auc_grade((truth >= 2).astype(int), referable, 1),
            "kappa": quadratic_kappa(truth, prob.argmax(1)), "seconds": round(time.time() - started)}


def choose(table: pd.DataFrame) -> list[bool]:
    """The rule of this module: best held-out mean AUC; within TIE_AUC of it, the smallest input,
    then "none" before "graham"."""
    best = table["mean_auc"].max()
    near = table[table["mean_auc"] >= best - TIE_AUC]
    order = near.assign(rank=near["grade_preprocessing"].map({"none": 0, "graham": 1}))
    pick = order.sort_values(["image_size", "rank", "mean_auc"], ascending=[True, True, False]).index[0]
    return [i == pick for i in table.index]


def select_grading_inputs(splits, candidates: Sequence[tuple[int, str]], n_heldout: int,
                          encoder_weights="auto", seed: int = 0) -> pd.DataFrame:
    from mtunet.heldout import validation_split

    graded = [r for r in splits["grade_train"] if r.grade is not None]
    if len(graded) <= n_heldout:
        raise UserError(f"grade_train has {len(graded)} graded images; cannot hold out {n_heldout}")
    fit, held = validation_split(graded, n_heldout)
    rows = [score_candidate(fit, held, size, name, encoder_weights, seed) for size, name in candidates]
    table = pd.DataFrame(rows, columns=COLUMNS[:-1])
    table["chosen"] = choose(table)
    return table


def note(table: pd.DataFrame, splits) -> str:
    chosen = table[table["chosen"]].iloc[0]
    return (f"Linear probe on the frozen VGG16 encoder (grading_probe), fitted on "
            f"{int(chosen.fit_images)} grade_train images and scored on the other "
            f"{int(chosen.heldout_images)} (the held-out images of every grader's selection; "
            f"grade_train: {splits.notes.get('grade_train', '')}). Rule, fixed before looking: the "
            f"highest held-out mean AUC; within {TIE_AUC:g} point of it, the smaller input, then no "
            f"preprocessing before Graham's. Chosen: {int(chosen.image_size)} px, "
            f"'{chosen.grade_preprocessing}'. The test sets are not used.")
