"""Tables 3 and 4: per-grade one-vs-rest ROC AUC of MTUnet against NASNet, DenseNet-201,
ResNeXt-101 and InceptionResNetV2, on Table 3's test role (the paper's IDRiD-D) and Table 4's
(the paper's SiDRP14-15); which sets play those roles is decided in :mod:`mtunet.study.roles`.

The baselines train on the balanced graded training images; MTUnet's runs are Table 1's.

Every AUC carries a 95 % interval (:func:`mtunet.intervals.auc_delong`: DeLong's, of the mean over
runs, which accounts for the runs sharing their test images) and the number of positive images it
rests on. Beside the AUCs: quadratic-weighted kappa and accuracy (with bootstrap intervals over
images, in ``grading_summary``). A grader any of whose runs predicts one grade for every test image
is flagged (``one_class``): its AUCs are shown, but the claims do not rank it.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from mtunet.config import GRADE_NAMES
from mtunet.data.records import Record
from mtunet.models.registry import label
from mtunet.study import grading_probe
from mtunet.study.roles import grading_test_set
from mtunet.study.grading_intervals import CONFIDENCE, same_images
from mtunet.study.runs import Context, RunSpec, grade_loader, input_size_for
from mtunet.study.table1_variants import mtunet_spec

TAG = "table3"
COLUMNS = ["network", "seed", "grade", "value"]
TABLE4_ROLE = "table4_test"
REFERENCE_ROLE = "grade_test"        # the training population, scored for reference


def grading_rows(network: str, seed: int, evaluation) -> list[dict]:
    return [{"network": network, "seed": seed, "grade": name, "value": 100 * float(auc)}
            for name, auc in zip(GRADE_NAMES, evaluation.auc)]


def grader_spec(ctx: Context, model: str, seed: int, image_size: int | None = None,
                epochs: int | None = None):
    """A baseline grader's run: whole images at `image_size` (raised to the model's minimum),
    `epochs` (None: the profile's); the profile's lesion-crop settings and segmentation loss do
    not apply to graders, so they are reset to the defaults and do not enter the run's key."""
    size = input_size_for(model, image_size or ctx.base.image_size)
    return ctx.spec(model=model, seed=seed, tag=TAG, image_size=size, epochs=epochs or ctx.base.epochs,
                    work_size=None, patch_size=None, steps_per_epoch=None,
                    seg_loss=RunSpec.seg_loss, lesion_share=RunSpec.lesion_share)


def grading_spec(ctx: Context, model: str, seed: int, image_size: int | None = None,
                 epochs: int | None = None):
    """The run a grading row rests on: Table 1's run for MTUnet, a baseline grader's otherwise."""
    if model == "mtunet":
        return mtunet_spec(ctx, seed)
    return grader_spec(ctx, model, seed, image_size=image_size, epochs=epochs)


def grading_runs(ctx: Context, models: Sequence[str], seeds: Sequence[int],
                 train: Sequence[Record], tests: dict[str, Sequence[Record]],
                 image_size: int | None = None, epochs: int | None = None):
    """Train every grader x seed on `train` (MTUnet: Table 1's runs, whatever `image_size` and
    `epochs` say); per-grade ROC AUC on each non-empty test role.
    Returns ({test: scores frame}, {(model, seed, test): GradingEval})."""
    scores: dict[str, list[dict]] = {name: [] for name in tests}
    evaluations = {}
    for model in models:
        for seed in seeds:
            spec = grading_spec(ctx, model, seed, image_size, epochs)
            if ctx.dry_run:
                ctx.train(spec, train)
                continue
            load = grade_loader(ctx.loader(spec, train))
            for test_name, test in tests.items():
                if not test:
                    continue
                evaluation = ctx.score("grade", spec, train, test_name, test, loader=load)
                evaluations[(model, seed, test_name)] = evaluation
                scores[test_name] += grading_rows(label(model), seed, evaluation)
    return {k: pd.DataFrame(v, columns=COLUMNS) for k, v in scores.items()}, evaluations


def histories(ctx: Context, pseudo_train: Sequence[Record], mtunet_train: Sequence[Record],
              grading_models: Sequence[str],
              seeds: Sequence[int], grading_seeds: Sequence[int] | None, image_size: int | None = None,
              epochs: int | None = None) -> dict[tuple[str, int], pd.DataFrame]:
    """Per-epoch training logs of the graders :func:`tables3_4` trains (same arguments), and of
    MTUnet's runs (Table 1's, one per seed), {(network label, seed): frame}; a grader's loss and
    accuracy also appear as ``grade_loss`` / ``grade_acc``, MTUnet's names for them."""
    from mtunet.study.runs import history_by_task, model_tasks

    out = {(label(model), seed): history_by_task(
               ctx.history(grader_spec(ctx, model, seed, image_size=image_size, epochs=epochs),
                           pseudo_train), model_tasks(model))
           for model in grading_models for seed in (grading_seeds or seeds)}
    out.update({(label("mtunet"), seed): ctx.history(mtunet_spec(ctx, seed), mtunet_train)
                for seed in seeds})
    return out


def runs_of(evaluations: Mapping, test_name: str) -> dict[str, list]:
    """{registry model name: [GradingEval of each seed]} on one test role."""
    out: dict[str, list] = {}
    for (model, _seed, name), ev in sorted(evaluations.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        if name == test_name:
            out.setdefault(model, []).append(ev)
    return out


def predicts_one_class(evaluation) -> bool:
    """True when the grader gives every test image the same grade (argmax)."""
    return len(np.unique(np.asarray(evaluation.prob).argmax(axis=1))) <= 1


def auc_interval_rows(evaluations: Mapping, test_name: str) -> pd.DataFrame:
    """Per network and grade: the 95 % DeLong interval of the mean AUC over runs (percent), the
    positives and negatives it rests on, and why it is missing when it is."""
    from mtunet.intervals import auc_delong

    rows = []
    for model, runs in runs_of(evaluations, test_name).items():
        same_images(runs)
        probs = [ev.prob for ev in runs]
        for grade, name in enumerate(GRADE_NAMES):
            est = auc_delong(runs[0].y_true, probs, grade, CONFIDENCE)
            rows.append({"network": label(model), "grade": name, "ci_low": 100 * est.low,
                         "ci_high": 100 * est.high, "n_positive": est.n_positive,
                         "n_test": est.n_positive + est.n_negative, "ci_note": est.reason})
    return pd.DataFrame(rows, columns=["network", "grade", "ci_low", "ci_high", "n_positive",
                                       "n_test", "ci_note"])


def grading_summary(evaluations: Mapping, test_name: str) -> pd.DataFrame:
    """Per (network, seed) on one test role: mean AUC over grades, quadratic kappa and accuracy,
    each with a 95 % interval (mean AUC: bootstrap stratified by grade; kappa, accuracy: bootstrap
    over images), ECE, and whether the run predicts a single grade for every image."""
    from mtunet.intervals import bootstrap_ci, mean_auc_interval
    from mtunet.metrics import expected_calibration_error, quadratic_kappa

    from mtunet.models.registry import MODELS

    rows = []
    for (model, seed, name), ev in evaluations.items():
        if name != test_name:
            continue
        y, pred = np.asarray(ev.y_true), np.asarray(ev.prob).argmax(1)
        auc = mean_auc_interval(y, ev.prob, CONFIDENCE)
        kappa = bootstrap_ci(quadratic_kappa, y, pred, n_resamples=1000)
        correct = (pred == y).astype(float)
        accuracy = bootstrap_ci(np.mean, correct, n_resamples=1000)
        counts = np.bincount(pred, minlength=len(GRADE_NAMES))
        rows.append({"network": label(model) if model in MODELS else model,   # or a reference recipe's name
                     "seed": seed, "test_set": name, "n_test": len(y),
                     "mean_auc": 100 * auc.auc, "mean_auc_low": 100 * auc.low,
                     "mean_auc_high": 100 * auc.high,
                     "kappa": quadratic_kappa(y, pred), "kappa_low": kappa.low, "kappa_high": kappa.high,
                     "accuracy": 100 * float(correct.mean()), "accuracy_low": 100 * accuracy.low,
                     "accuracy_high": 100 * accuracy.high,
                     "ece": expected_calibration_error(y, ev.prob),
                     "predicted_grades": int((counts > 0).sum()),
                     "majority_share": 100 * float(counts.max() / max(len(y), 1)),
                     "one_class": bool(predicts_one_class(ev))})
    return pd.DataFrame(rows)


def grading_table(scores: pd.DataFrame, evaluations: Mapping, test_name: str, paper_frame: pd.DataFrame,
                  models: Sequence[str]) -> pd.DataFrame:
    """One of Tables 3 and 4 beside the paper: per network and grade, ours (mean ± std over runs
    [95 % DeLong interval]), ci_low/ci_high, the positives and test images the AUC rests on, the
    network's kappa and accuracy (mean over runs) and its one-class flag.

    scores: long form (network, seed, grade, value) of every run on `test_name`;
    evaluations: (model, seed, test role) -> GradingEval; models: the registry names scored.
    """
    from mtunet.metrics import quadratic_kappa
    from mtunet.report.tables import compare_with_paper, interval_cell

    table = compare_with_paper(scores, paper_frame, key="grade", models=models)
    intervals = auc_interval_rows(evaluations, test_name)
    table = table.drop(columns=["ci_low", "ci_high"]).merge(intervals, on=["network", "grade"], how="left")
    per_network = []
    for model, runs in runs_of(evaluations, test_name).items():
        preds = [np.asarray(ev.prob).argmax(1) for ev in runs]
        per_network.append({"network": label(model),
                            "kappa": float(np.mean([quadratic_kappa(ev.y_true, p) for ev, p in zip(runs, preds)])),
                            "accuracy": 100 * float(np.mean([(p == ev.y_true).mean() for ev, p in zip(runs, preds)])),
                            "one_class": any(predicts_one_class(ev) for ev in runs)})
    extra = pd.DataFrame(per_network, columns=["network", "kappa", "accuracy", "one_class"])
    table = table.merge(extra, on="network", how="left")
    table["ours"] = [interval_cell(m, s, lo, hi) for m, s, lo, hi in
                     zip(table["ours_mean"], table["ours_std"], table["ci_low"], table["ci_high"])]
    first = ["network", "grade", "paper", "ours", "difference", "ci_low", "ci_high", "n_positive",
             "n_test", "n_runs", "kappa", "accuracy", "one_class"]
    return table[first + [c for c in table.columns if c not in first]]


@dataclasses.dataclass
class Tables3And4:
    table3: pd.DataFrame
    table4: pd.DataFrame
    table3_name: str               # the test role of Table 3
    evaluations: dict              # (model, seed, test role) -> GradingEval
    summary: pd.DataFrame          # grading_summary of every test role scored


def describe_test_set(splits, role: str) -> str:
    """The `test_set` text of a table: the role, whether it is the paper's set or stands in for
    it, and the role's note (where the images come from)."""
    from mtunet.study.roles import PAPER_SETS

    note = splits.notes.get(role, "")
    if not splits[role] or role not in PAPER_SETS:
        return f"{role}: {note}"
    what = ("stand-in for " if splits.is_stand_in(role) else "the paper's ") + PAPER_SETS[role]
    return f"{role} ({what}): {note}"


def tables3_4(ctx: Context, splits, pseudo_train: Sequence[Record], mtunet_train: Sequence[Record],
              grading_models: Sequence[str],
              seeds: Sequence[int], grading_seeds: Sequence[int] | None, grader_image_size: int,
              results: Path, grading_test_role: str = "auto", grader_epochs: int | None = None
              ) -> Tables3And4:
    """Train and score the baseline graders and MTUnet; write table3_grading_internal,
    table4_grading_external and grading_summary (every run on every test role, with the
    training population's held-out images as a reference when they are not already a table's).
    The baselines train on `pseudo_train`; MTUnet's runs are Table 1's, on `mtunet_train`
    (``pseudo_labelling.multitask_train``)."""
    from mtunet import paper
    from mtunet.report.tables import write_table

    table3_name, table3_test = grading_test_set(splits, grading_test_role)
    tests = {table3_name: table3_test, TABLE4_ROLE: splits[TABLE4_ROLE]}
    if REFERENCE_ROLE not in tests and splits.origins.get(TABLE4_ROLE) != REFERENCE_ROLE:
        tests[REFERENCE_ROLE] = splits[REFERENCE_ROLE]
    baseline_scores, evaluations = grading_runs(ctx, grading_models, grading_seeds or seeds,
                                                pseudo_train, tests, image_size=grader_image_size,
                                                epochs=grader_epochs)
    mtunet_scores, mtunet_evals = grading_runs(ctx, ["mtunet"], seeds, mtunet_train, tests)
    evaluations.update(mtunet_evals)
    models = [*grading_models, "mtunet"]
    first_seed = {**{m: (grading_seeds or seeds)[0] for m in grading_models}, "mtunet": seeds[0]}
    inits = {label(m): ctx.encoder_init(grading_spec(ctx, m, first_seed[m], grader_image_size,
                                                     grader_epochs),
                                        mtunet_train if m == "mtunet" else pseudo_train)
             for m in models}
    made = {}
    for number, role, frame in ((3, table3_name, paper.table3_frame()), (4, TABLE4_ROLE, paper.table4_frame())):
        table = grading_table(pd.concat([baseline_scores[role], mtunet_scores[role]]), evaluations,
                              role, frame, models)
        table["test_set"] = describe_test_set(splits, role)
        table["test_origin"] = splits.origins.get(role, role)
        table["stand_in"] = splits.is_stand_in(role)
        table["encoder_init"] = table["network"].map(inits)
        made[number] = table
    note = ("ours: mean ± std over runs [95 % DeLong interval of that mean]; n_positive: test images "
            "of that grade; kappa (quadratic) and accuracy (%): mean over runs; one_class: a run "
            "predicted one grade for every image (not ranked by the claims); encoder_init: how the "
            "network started (first seed's run).")
    write_table(made[3], results, "table3_grading_internal",
                f"Table 3 — ROC AUC (%) per grade, test set: {describe_test_set(splits, table3_name)}",
                note=note)
    write_table(made[4], results, "table4_grading_external",
                f"Table 4 — ROC AUC (%) per grade (paper: SiDRP14-15), test set: "
                f"{describe_test_set(splits, TABLE4_ROLE)}", note=note)
    # the plain recipe beside the graders (grading_probe): can these images teach the grade?
    probe, probe_init = ({}, "") if ctx.dry_run else grading_probe.probe_evaluations(
        pseudo_train, tests, input_size_for("mtunet", grader_image_size), ctx.base.encoder_weights,
        ctx.runs_dir, seed=(grading_seeds or seeds)[0], preprocessing=ctx.base.grade_preprocessing)
    summary = pd.concat([grading_summary({**evaluations, **probe}, name) for name in tests if tests[name]],
                        ignore_index=True) if evaluations else pd.DataFrame()
    if len(summary):
        summary["encoder_init"] = summary["network"].map({**inits, grading_probe.PROBE: probe_init})
    if not ctx.dry_run:
        write_table(summary, results, "grading_summary",
                    "Mean AUC, quadratic kappa, accuracy (95 % intervals) and ECE per run and test set",
                    note="encoder_init: how the network started (first seed's run). " + "; ".join(f"{name}: {describe_test_set(splits, name)}" for name in tests))
    return Tables3And4(made[3], made[4], table3_name, evaluations, summary)
