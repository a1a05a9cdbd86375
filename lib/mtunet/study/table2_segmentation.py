"""Table 2 (red and yellow lesion Dice of MTUnet against UNet, LinkNet, FPN and DeepLabv3) and
Fig. 6 (MTUnet with other encoders).

IDRiD-S has masks but no grades; the paper grades it with the semi-supervised model, so MTUnet
trains on IDRiD-S with the grades Table 1's MTUnet predicts (:func:`graded_seg_train`).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from mtunet.config import LESION_GROUPS, LESIONS
from mtunet.data.records import Record
from mtunet.models.registry import label
from mtunet.study.runs import Context, input_size_for
from mtunet.study.table1_variants import mtunet_model

TAG = "table2"
SCORE_COLUMNS = ["network", "seed", "metric", "value"]
PER_IMAGE_COLUMNS = ["network", "seed", "image_id", "group", "dice"]
# Beside each Dice of the tables: the same scores by other protocols, so a flood (area ratio >> 1)
# or a collapse (~0) is visible next to its Dice, and AUPR per lesion (the IDRiD challenge's metric).
DETAIL_METRICS = ([f"{g}_{m}" for g in LESION_GROUPS for m in ("dice_per_image", "area_ratio")]
                  + [f"{lesion}_aupr" for lesion in LESIONS])


def with_predicted_grades(records: Sequence[Record], grader, image_size: int) -> list[Record]:
    """`records` with the grade `grader` predicts for each."""
    from mtunet.data.pipeline import load_arrays
    from mtunet.evaluate import predict_batches

    images, _, _ = load_arrays(list(records), image_size, progress=False)
    prob = predict_batches(grader, images)["grade"]
    return [dataclasses.replace(r, grade=int(g)) for r, g in zip(records, prob.argmax(axis=1))]


def graded_seg_train(ctx: Context, seg_train: Sequence[Record], mtunet_train: Sequence[Record],
                     seed: int) -> list[Record]:
    """IDRiD-S training images with grades predicted by Table 1's MTUnet (variant C)."""
    if ctx.dry_run:
        return [dataclasses.replace(r, grade=0) for r in seg_train]
    return with_predicted_grades(seg_train, mtunet_model(ctx, seed, mtunet_train),
                                 ctx.base.image_size)


def segmentation_rows(network: str, seed: int, evaluation) -> tuple[list[dict], list[dict]]:
    """(table rows: pooled Dice (%) per group, then the detail metrics; per-image Dice rows)."""
    scores = [{"network": network, "seed": seed, "metric": group,
               "value": 100 * evaluation.scores[f"{group}_dice_pooled"]}
              for group in LESION_GROUPS]
    scores += [{"network": network, "seed": seed, "metric": metric,
                "value": evaluation.scores[metric] * (1 if metric.endswith("area_ratio") else 100)}
               for metric in DETAIL_METRICS]
    per_image = [{"network": network, "seed": seed, "image_id": image_id, "group": group,
                  "dice": 100 * float(evaluation.per_image[group][i])}
                 for group in LESION_GROUPS for i, image_id in enumerate(evaluation.image_ids)]
    return scores, per_image


def run_spec(ctx: Context, model: str, seed: int):
    """The Table 2 / Fig. 6 run of `model`: the profile's recipe at the model's smallest valid
    input (crops of that size when the profile trains on crops)."""
    size = input_size_for(model, ctx.base.image_size)
    return ctx.spec(model=model, seed=seed, tag=TAG, image_size=size,
                    patch_size=size if ctx.base.on_crops else None)


def segmentation_runs(ctx: Context, models: Sequence[str], seeds: Sequence[int],
                      train: Sequence[Record], test: Sequence[Record], label_table: str = "",
                      train_for: dict[str, Sequence[Record]] | None = None):
    """Train every segmenter x seed on `train` (or `train_for[model]`), score on `test`.

    Returns (scores: network/seed/metric/value, per_image: network/seed/image_id/group/dice,
    evaluations: {(model, seed): SegmentationEval}).
    """
    scores, per_image, evaluations = [], [], {}
    for model in models:
        records = (train_for or {}).get(model, train)
        for seed in seeds:
            spec = run_spec(ctx, model, seed)
            if ctx.dry_run:
                ctx.train(spec, records)
                continue
            evaluation = ctx.score("seg", spec, records, "seg_test", test)
            evaluations[(model, seed)] = evaluation
            s, p = segmentation_rows(label(model, label_table), seed, evaluation)
            scores += s
            per_image += p
    return (pd.DataFrame(scores, columns=SCORE_COLUMNS),
            pd.DataFrame(per_image, columns=PER_IMAGE_COLUMNS), evaluations)


def pooled_dice_over_seeds(counts) -> float:
    """Pooled Dice (%) averaged over seeds, from per-image counts (N images, S seeds, 3)."""
    inter, psum, tsum = (counts[..., k].sum(axis=0) for k in range(3))
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.nanmean(np.where(psum + tsum > 0, 200 * inter / (psum + tsum), np.nan)))


def dice_intervals(evaluations: dict, label_table: str = "") -> pd.DataFrame:
    """95 % bootstrap intervals (over test images, all seeds together) of each network's pooled
    Dice averaged over its seeds: the resampled images are scored under every seed."""
    from mtunet.intervals import bootstrap_ci

    rows = []
    for model in dict.fromkeys(m for m, _ in evaluations):
        runs = [ev for (m, _), ev in sorted(evaluations.items()) if m == model]
        for group in LESION_GROUPS:
            g = runs[0].groups.index(group)
            counts = np.stack([ev.counts[:, g, :] for ev in runs], axis=1)   # (N, seeds, 3)
            low, high = bootstrap_ci(pooled_dice_over_seeds, counts)
            rows.append({"network": label(model, label_table), "metric": group,
                         "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=["network", "metric", "ci_low", "ci_high"])


def details(scores: pd.DataFrame) -> pd.DataFrame:
    """Per network and group: the detail metrics (mean over runs) beside its pooled Dice."""
    rows = []
    for network, frame in scores.groupby("network", sort=False):
        means = frame.groupby("metric")["value"].mean()
        for group in LESION_GROUPS:
            rows.append({"network": network, "metric": group,
                         "dice_per_image": means.get(f"{group}_dice_per_image", np.nan),
                         "area_ratio": means.get(f"{group}_area_ratio", np.nan)})
    return pd.DataFrame(rows, columns=["network", "metric", "dice_per_image", "area_ratio"])


def aupr_table(scores: pd.DataFrame) -> pd.DataFrame:
    """AUPR (%) per lesion and network, mean ± std over runs (the IDRiD challenge's metric)."""
    from mtunet.stats import format_mean_std, mean_std

    rows = []
    for network, frame in scores.groupby("network", sort=False):
        row = {"network": network}
        for lesion in LESIONS:
            values = frame.loc[frame["metric"] == f"{lesion}_aupr", "value"].to_numpy(dtype=float)
            row[lesion] = format_mean_std(*mean_std(values)) if len(values) else ""
        rows.append(row)
    return pd.DataFrame(rows, columns=["network", *LESIONS])


def initialisations(ctx: Context, models: Sequence[str], seed: int, train_for: dict,
                    train: Sequence[Record], label_table: str = "") -> pd.DataFrame:
    """How each row's encoder was initialised (run.json of its first seed)."""
    rows = []
    for model in models:
        spec = run_spec(ctx, model, seed)
        rows.append({"network": label(model, label_table),
                     "encoder_init": ctx.encoder_init(spec, train_for.get(model, train))})
    return pd.DataFrame(rows, columns=["network", "encoder_init"])


def histories(ctx: Context, models: Sequence[str], seeds: Sequence[int], train: Sequence[Record],
              train_for: dict[str, Sequence[Record]] | None = None, label_table: str = ""
              ) -> dict[tuple[str, int], pd.DataFrame]:
    """Per-epoch training logs of the segmentation runs :func:`segmentation_runs` trains (same
    specs and records: pass the same ``train_for``), {(network label, seed): frame}, with a
    segmenter's loss also under ``seg_loss`` so it shares a panel with MTUnet's."""
    from mtunet.study.runs import history_by_task, model_tasks

    return {(label(model, label_table), seed):
            history_by_task(ctx.history(run_spec(ctx, model, seed), (train_for or {}).get(model, train)),
                            model_tasks(model))
            for model in models for seed in seeds}


@dataclasses.dataclass
class Table2:
    table: pd.DataFrame           # beside the paper
    scores: pd.DataFrame          # every run
    per_image: pd.DataFrame       # per-image Dice, for the t-tests
    evaluations: dict             # (model, seed) -> SegmentationEval


def table2(ctx: Context, splits, mtunet_train: Sequence[Record], models: Sequence[str],
           seeds: Sequence[int], results: Path) -> Table2:
    """Train and score every segmenter x seed; write table2_segmentation (pooled Dice beside the
    paper, with its interval over images and seeds, per-image Dice, area ratio and the encoder's
    initialisation), table2_aupr, table2_runs and segmentation_per_image."""
    from mtunet import paper
    from mtunet.report.tables import compare_with_paper, write_table

    train_for = ({"mtunet": graded_seg_train(ctx, splits["seg_train"], mtunet_train, seeds[0])}
                 if "mtunet" in models else {})
    scores, per_image, evaluations = segmentation_runs(
        ctx, models, seeds, splits["seg_train"], splits["seg_test"], train_for=train_for)
    dice = scores[scores["metric"].isin(list(LESION_GROUPS))]
    table = compare_with_paper(dice, paper.table2_frame(), intervals=dice_intervals(evaluations),
                               models=models)
    table = (table.merge(details(scores), on=["network", "metric"], how="left")
             .merge(initialisations(ctx, models, seeds[0], train_for, splits["seg_train"]),
                    on="network", how="left"))
    write_table(table, results, "table2_segmentation",
                "Table 2 — lesion Dice (%), IDRiD-S test, scored at the masks' own size",
                note="ours: pooled Dice, mean ± std over runs; ci_low/ci_high: 95 % bootstrap "
                     "interval over test images, all runs; dice_per_image: mean per-image Dice "
                     "(images with that lesion); area_ratio: predicted / true lesion pixels "
                     "(> 1 over-segments, < 1 misses); encoder_init: how the encoder started.")
    write_table(aupr_table(scores), results, "table2_aupr",
                "Table 2 — AUPR (%) per lesion, IDRiD-S test (the IDRiD challenge's metric)")
    write_table(per_image, results, "segmentation_per_image", "Per-image Dice (%)")
    write_table(scores, results, "table2_runs", "Table 2 — every run")
    return Table2(table, scores, per_image, evaluations)


RANDOM_VGG16 = "VGG16, random init"


def fig6_encoders(ctx: Context, splits, mtunet_train: Sequence[Record], encoders: Sequence[str],
                  seed: int, results: Path):
    """MTUnet with each encoder (first seed), trained like Table 2's MTUnet, plus VGG16 from
    random weights: offline only VGG16 has pretrained weights (HED), so the batch-norm claim is
    tested like for like against a randomly initialised VGG16. Writes fig6_encoders.
    Returns (table, evaluations keyed by (label, seed))."""
    from mtunet.report.tables import write_table

    graded = graded_seg_train(ctx, splits["seg_train"], mtunet_train, seed)
    scores, _, evaluations = segmentation_runs(ctx, encoders, [seed], graded, splits["seg_test"],
                                               label_table="fig6")
    evaluations = {(label(m, "fig6"), s): ev for (m, s), ev in evaluations.items()}
    if "mtunet" in encoders and ctx.base.encoder_weights != "random":
        random_ctx = dataclasses.replace(ctx, base=ctx.spec(encoder_weights="random"))
        extra, _, extra_evals = segmentation_runs(random_ctx, ["mtunet"], [seed], graded,
                                                  splits["seg_test"])
        scores = pd.concat([scores, extra.assign(network=RANDOM_VGG16)], ignore_index=True)
        evaluations.update({(RANDOM_VGG16, s): ev for (_, s), ev in extra_evals.items()})
    inits = initialisations(ctx, encoders, seed, {}, graded, label_table="fig6")
    inits = {**dict(zip(inits["network"], inits["encoder_init"])), RANDOM_VGG16: "random"}
    table = scores.rename(columns={"network": "encoder"})
    table["encoder_init"] = table["encoder"].map(inits)
    write_table(table, results, "fig6_encoders",
                "Fig. 6 — MTUnet encoders: pooled Dice (%), area ratio and AUPR per lesion")
    return table, evaluations
