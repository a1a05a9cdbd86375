"""Table 1: network variants A, B and C, and the two ablations the paper reports in words
(alpha of Eq. 3, the segmentation loss).

Dice = mean of red and yellow pooled Dice on IDRiD-S test; ROC = mean over grades of the
one-vs-rest AUC on the grading test role. Every variant trains on the same images
(``pseudo_labelling.multitask_train``): IDRiD-S training images with their true masks and the
graded images with their pseudo masks. Variant B is trained in the paper's two steps
(:func:`train_variant_b`). The MTUnet run of Table 1 is the model notebooks 05 and 06 reuse:
:func:`mtunet_model` is that hand-over.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from mtunet.data.records import Record
from mtunet.models.registry import label
from mtunet.study.roles import grading_test_set
from mtunet.study.runs import Context, RunSpec, grade_loader

TAG = "table1"
COLUMNS = ["network", "seed", "metric", "value"]


def variant_scores(ctx: Context, seeds: Sequence[int], train: Sequence[Record],
                   seg_test: Sequence[Record], grade_test: Sequence[Record],
                   variants: Sequence[str], grade_test_name: str = "grade_test",
                   evaluations: dict | None = None, **spec_changes: Any) -> pd.DataFrame:
    """Per variant and seed: dice, roc, red/yellow Dice (%) and area ratios, long form.
    `evaluations` (optional) collects {network label: [GradingEval per seed]} for intervals."""
    rows = []
    for model in variants:
        for seed in seeds:
            spec = ctx.spec(model=model, seed=seed, tag=TAG, **spec_changes)
            if ctx.dry_run:
                ctx.train(spec, train)
                continue
            load = ctx.loader(spec, train)
            seg = ctx.score("seg", spec, train, "seg_test", seg_test, loader=load)
            grade = ctx.score("grade", spec, train, grade_test_name, grade_test,
                              loader=grade_loader(load))
            red, yellow = seg.scores["red_dice_pooled"], seg.scores["yellow_dice_pooled"]
            network = label(model, "table1")
            if evaluations is not None:
                evaluations.setdefault(network, []).append(grade)
            for metric, value in (("dice", 50 * (red + yellow)),
                                  ("roc", 100 * float(np.nanmean(grade.auc))),
                                  ("red_dice", 100 * red), ("yellow_dice", 100 * yellow),
                                  ("red_area_ratio", seg.scores["red_area_ratio"]),
                                  ("yellow_area_ratio", seg.scores["yellow_area_ratio"])):
                rows.append({"network": network, "seed": seed, "metric": metric, "value": value})
    return pd.DataFrame(rows, columns=COLUMNS)


def table1(ctx: Context, splits, train: Sequence[Record], seeds: Sequence[int],
           variants: Sequence[str], results: Path, grading_test_role: str = "auto"):
    """Train and score every variant x seed; write table1_variants (beside the paper) and
    table1_runs (every run). Returns (table1, runs)."""
    from mtunet import paper
    from mtunet.report.tables import compare_with_paper, write_table

    from mtunet.study.grading_intervals import mean_auc_intervals

    test_name, grade_test = grading_test_set(splits, grading_test_role)
    grading = {}
    runs = variant_scores(ctx, seeds, train, splits["seg_test"], grade_test, variants,
                          grade_test_name=test_name, evaluations=grading)
    intervals = mean_auc_intervals(grading) if grading else None
    table = compare_with_paper(runs[runs["metric"].isin(["dice", "roc"])], paper.table1_frame(),
                               intervals=intervals, models=variants)
    ratios = (runs[runs["metric"].str.endswith("area_ratio")]
              .pivot_table(index="network", columns="metric", values="value", aggfunc="mean")
              .reset_index().assign(metric="dice"))
    table = table.merge(ratios, on=["network", "metric"], how="left") if len(ratios) else table
    table["test_sets"] = f"Dice: IDRiD-S test, at the masks' own size; ROC: {test_name}"
    inits = {label(model, "table1"): ctx.encoder_init(ctx.spec(model=model, seed=seeds[0], tag=TAG),
                                                      train) for model in variants}
    table["encoder_init"] = table["network"].map(inits)
    write_table(table, results, "table1_variants", "Table 1 — network variants (%)",
                note="dice: mean of red and yellow pooled Dice; roc: mean one-vs-rest AUC over the "
                     "grades; red/yellow_area_ratio (dice rows): predicted / true lesion pixels, "
                     "mean over runs; encoder_init: how the encoder started (first seed's run).")
    write_table(runs, results, "table1_runs", "Table 1 — every run")
    return table, runs


def summarise_ablation(scores: pd.DataFrame, parameter: str) -> pd.DataFrame:
    """Ablation rows (one per parameter value): mean Dice, red, yellow, area ratios and mean ROC
    over runs."""
    if not len(scores):
        return scores
    wide = scores.pivot_table(index=[parameter, "seed"], columns="metric", values="value")
    summary = wide.groupby(level=0).mean()
    summary["n_runs"] = wide.groupby(level=0).size()
    return summary.reset_index()


def ablation(ctx: Context, splits, train: Sequence[Record], seeds: Sequence[int],
             parameter: str, values: Sequence, results: Path, grading_test_role: str = "auto"
             ) -> pd.DataFrame:
    """MTUnet trained with each value of `parameter` ("alpha" or "seg_loss"), everything else
    equal; the run at the profile's own value is Table 1's variant C run, reused."""
    from mtunet import paper
    from mtunet.report.tables import write_table

    test_name, grade_test = grading_test_set(splits, grading_test_role)
    runs = pd.concat([variant_scores(ctx, seeds, train, splits["seg_test"], grade_test,
                                     ["mtunet"], grade_test_name=test_name,
                                     **{parameter: v}).assign(**{parameter: v})
                      for v in values], ignore_index=True)
    table = summarise_ablation(runs, parameter)
    if parameter == "alpha":
        write_table(table, results, "ablation_alpha", "Ablation: α of Eq. 3 (MTUnet, %)",
                    note=f"Paper: α = {paper.ALPHA_BEST:g} best for both tasks (no numbers published).")
    else:
        write_table(table, results, "ablation_loss", "Ablation: segmentation loss (MTUnet, %)",
                    note="Paper: Dice-type losses 'did not yield good performance' (no numbers published).")
    return table


def mtunet_spec(ctx: Context, seed: int) -> RunSpec:
    """The variant C (MTUnet) run of Table 1 for one seed."""
    return ctx.spec(model="mtunet", seed=seed, tag=TAG)


def mtunet_model(ctx: Context, seed: int, train: Sequence[Record]):
    """Table 1's trained MTUnet for `seed` (the hand-over to Tables 2-4): loaded from its run,
    or trained now if notebook 04 has not trained it."""
    return ctx.train(mtunet_spec(ctx, seed), train)


def histories(ctx: Context, train: Sequence[Record], seeds: Sequence[int],
              variants: Sequence[str]) -> dict[tuple[str, int], pd.DataFrame]:
    """Per-epoch training logs of Table 1's runs, {(network label, seed): frame}, for the
    training-curve figure (runs not trained yet give an empty frame). Variant B trains in two
    steps: its segmenter's log (step 1) and its grader's (step 2) are joined on the epoch, each
    under its task's column names (``runs.history_by_task``)."""
    from mtunet.study.runs import history_by_task, model_tasks

    out = {}
    for model in variants:
        for seed in seeds:
            spec = ctx.spec(model=model, seed=seed, tag=TAG)
            if model == "variant_b":
                run = ctx.run_dir(spec, train)
                steps = [history_by_task(pd.read_csv(run / step / "history.csv"), tasks)
                         for step, tasks in (("step1-segmenter", ("seg",)), ("step2-grader", ("grade",)))
                         if (run / step / "history.csv").exists()]
                steps = [frame.drop(columns=[c for c in ("loss", "acc", "val_loss", "val_acc",
                                                         "epoch_seconds", "val_epoch_seconds")
                                             if c in frame.columns]) for frame in steps]
                frame = (steps[0].merge(steps[1], on="epoch", how="outer") if len(steps) == 2
                         else steps[0] if steps else pd.DataFrame())
            else:
                frame = history_by_task(ctx.history(spec, train), model_tasks(model))
            out[(label(model, "table1"), seed)] = frame
    return out
