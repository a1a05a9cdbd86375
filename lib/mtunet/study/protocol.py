"""The study's steps in the order the paper runs them, for commands that run the protocol
without notebooks (the GPU command). Each step is the same library call a notebook makes."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from mtunet.study import pseudo_labelling, significance, table1_variants, table2_segmentation
from mtunet.study.runs import Context


def tables_1_2_steps(ctx: Context, splits, results: Path, p: Mapping[str, Any]
                     ) -> list[tuple[str, Callable[[], Any]]]:
    """(name, step) pairs for Fig. 7, Table 1, Table 2 and the t-tests, with parameters `p`
    (``mtunet.study.parameters`` names): run them in order; each writes its own tables."""
    def pseudo_labels():
        pseudo_labelling.label_grade_only_images(ctx, splits, p["seed_model"], p["seed_epochs"], results)

    def train():
        return pseudo_labelling.multitask_train(ctx, splits, results, p["pseudo_ignored"])

    def table1():
        table1_variants.table1(ctx, splits, train(), p["seeds"], p["variants"], results,
                               p["grading_test_role"])

    def table2():
        table2_segmentation.table2(ctx, splits, train(), p["models"], p["seeds"], results)

    def ttests():
        significance.table2_ttests(results, p["ttest_pairing"], p["ttest_alternative"])

    steps = [("pseudo labels", pseudo_labels), ("table1", table1), ("table2", table2)]
    if "mtunet" in p["models"] and len(p["models"]) > 1:
        steps.append(("ttests", ttests))
    return steps
