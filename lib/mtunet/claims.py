"""Verdicts on the paper's claims, computed from the result tables a profile wrote.

Each check reads the CSVs under results/<profile>/ and returns (verdict, evidence). Verdicts:
"reproduced", "not reproduced", "inconclusive" (the ranking the claim needs is within the
run-to-run spread), "not testable here" (with the reason). A check never looks at
the paper's numbers to decide; it compares our own runs with each other, as the claim does.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from mtunet.paper import CLAIMS, KAGGLE_IMAGES_PER_GRADE, SIGNIFICANCE_LEVEL
from mtunet.report import read_table

REPRODUCED, NOT_REPRODUCED, NOT_TESTABLE = "reproduced", "not reproduced", "not testable here"
INCONCLUSIVE = "inconclusive"


def _ours(table: pd.DataFrame, key: str) -> pd.DataFrame:
    return table.pivot_table(index="network", columns=key, values="ours_mean")


def _best_by(table: pd.DataFrame, key: str, winner: str, metrics, what: str) -> tuple[str, str]:
    """Is `winner` first on every metric, by more than the run-to-run spread?

    A gap counts when it exceeds the larger of the two standard deviations over runs (a single
    run has none, so its rank decides). Any metric where another network is clearly ahead:
    not reproduced; every metric clearly won: reproduced; otherwise inconclusive.
    """
    means = _ours(table, key)
    stds = table.pivot_table(index="network", columns=key, values="ours_std") if "ours_std" in table \
        else means * float("nan")
    lines, outcomes = [], []
    for metric in metrics:
        if metric not in means.columns or winner not in means.index:
            return NOT_TESTABLE, f"no {metric} score for {winner}"
        column = means[metric].dropna()
        spread = stds[metric].reindex(column.index).fillna(0.0) if metric in stds else column * 0
        others = column.drop(winner, errors="ignore")
        if others.empty:
            return NOT_TESTABLE, f"no network to compare {winner} with on {metric}"
        gaps = column[winner] - others
        noise = np.maximum(spread[winner], spread.drop(winner, errors="ignore"))
        if bool((gaps < -noise).any()):
            outcomes.append(NOT_REPRODUCED)
        elif bool((gaps > noise).all()):
            outcomes.append(REPRODUCED)
        else:
            outcomes.append(INCONCLUSIVE)
        ranking = ", ".join(f"{n} {v:.2f}" + (f" ± {spread[n]:.2f}" if spread[n] else "")
                            for n, v in column.sort_values(ascending=False).items())
        lines.append(f"{metric}: {ranking}")
    verdict = (NOT_REPRODUCED if NOT_REPRODUCED in outcomes else
               REPRODUCED if all(o == REPRODUCED for o in outcomes) else INCONCLUSIVE)
    return verdict, f"{what} — " + "; ".join(lines)


def variant_c_best(results_dir: Path):
    table = read_table(results_dir, "table1_variants")
    if table is None or table["ours_mean"].isna().all():
        return NOT_TESTABLE, "table1_variants.csv missing or empty"
    return _best_by(table, "metric", "Variant C", ["dice", "roc"], "mean ± std over runs (%)")


def mtunet_best_segmentation(results_dir: Path):
    table = read_table(results_dir, "table2_segmentation")
    if table is None or table["ours_mean"].isna().all():
        return NOT_TESTABLE, "table2_segmentation.csv missing or empty"
    return _best_by(table, "metric", "MTUNet", ["red", "yellow"], "pooled Dice, mean ± std over runs (%)")


def mtunet_vs_linknet_significant(results_dir: Path):
    tests = read_table(results_dir, "ttests")
    if tests is None:
        return NOT_TESTABLE, "ttests.csv missing"
    rows = tests[tests["baseline"] == "LinkNet"]
    if rows.empty or rows["pvalue"].isna().all():
        return NOT_TESTABLE, "no defined t-test MTUNet vs LinkNet (too few pairs?)"
    better = rows["mean_difference"] > 0
    significant = rows["pvalue"] < SIGNIFICANCE_LEVEL
    evidence = "; ".join(f"{r.group}: mean diff {r.mean_difference:+.2f} points, p = {r.pvalue:.3g} "
                         f"(n = {r.n}, paired by {r.pairing})" for r in rows.itertuples())
    verdict = REPRODUCED if bool((better & significant).any()) else NOT_REPRODUCED
    return verdict, evidence


def _grades_won(table: pd.DataFrame, winner: str = "MTUnet") -> dict[str, bool]:
    """Per grade: does `winner` have a higher mean AUC than every other network?"""
    frame = _ours(table, "grade")
    if winner not in frame.index:
        return {}
    return {g: bool((frame[g].dropna().drop(winner) < frame.loc[winner, g]).all())
            for g in frame.columns}


def mtunet_best_grading_idrid(results_dir: Path):
    table = read_table(results_dir, "table3_grading_internal")
    if table is None or table["ours_mean"].isna().all():
        return NOT_TESTABLE, "table3_grading_internal.csv missing or empty"
    wins = _grades_won(table)
    evidence = "MTUnet best on " + (", ".join(g for g, w in wins.items() if w) or "no grade") + \
        "; not on " + (", ".join(g for g, w in wins.items() if not w) or "none")
    test_set = table["test_set"].iloc[0] if "test_set" in table.columns else "?"
    evidence += f" (test set: {test_set})"
    return (REPRODUCED if wins and all(wins.values()) else NOT_REPRODUCED), evidence


def mtunet_best_grading_sidrp(results_dir: Path):
    table = read_table(results_dir, "table4_grading_external")
    if table is None or table["ours_mean"].isna().all():
        return NOT_TESTABLE, "SiDRP14-15 is private and no external graded set was supplied"
    wins = _grades_won(table)
    return (REPRODUCED if wins and all(wins.values()) else NOT_REPRODUCED), \
        "MTUnet best on " + (", ".join(g for g, w in wins.items() if w) or "no grade")


def batchnorm_encoders_miss_red(results_dir: Path):
    table = read_table(results_dir, "fig6_encoders")
    if table is None or table.empty:
        return NOT_TESTABLE, "fig6_encoders.csv missing"
    red = table[table["metric"] == "red"].set_index("encoder")["value"]
    if "VGG16" not in red.index:
        return NOT_TESTABLE, "no VGG16 encoder run"
    bn = red.drop("VGG16")
    verdict = REPRODUCED if bool((bn < red["VGG16"]).all()) else NOT_REPRODUCED
    return verdict, "red-lesion Dice (%): " + ", ".join(f"{k} {v:.2f}" for k, v in red.items())


def alpha_one_best(results_dir: Path):
    table = read_table(results_dir, "ablation_alpha")
    if table is None or table.empty:
        return NOT_TESTABLE, "ablation_alpha.csv missing"
    best = {m: float(table.loc[table[m].idxmax(), "alpha"]) for m in ("dice", "roc") if m in table}
    verdict = REPRODUCED if best and all(np.isclose(a, 1.0) for a in best.values()) else NOT_REPRODUCED
    return verdict, "best alpha: " + ", ".join(f"{m} at alpha = {a:g}" for m, a in best.items())


def dice_losses_worse(results_dir: Path):
    table = read_table(results_dir, "ablation_loss")
    if table is None or table.empty or "bce" not in set(table["seg_loss"]):
        return NOT_TESTABLE, "ablation_loss.csv missing or without the BCE run"
    dice = table.set_index("seg_loss")["dice"]
    others = dice.drop("bce")
    verdict = REPRODUCED if bool((others < dice["bce"]).all()) else NOT_REPRODUCED
    return verdict, "mean lesion Dice (%): " + ", ".join(f"{k} {v:.2f}" for k, v in dice.items())


def kaggle_1914_per_grade(results_dir: Path):
    roles = read_table(results_dir, "data_roles")
    if roles is None:
        return NOT_TESTABLE, "data_roles.csv missing"
    return NOT_TESTABLE, (f"needs the full Kaggle train+test labels with images (paper: "
                          f"{KAGGLE_IMAGES_PER_GRADE} per grade); the balanced subset here has "
                          + ", ".join(f"{r.role} {r.images}" for r in roles.itertuples()
                                      if r.role.startswith("grade_")))


CHECKS: dict[str, Callable[[Path], tuple[str, str]]] = {
    "variant_c_best": variant_c_best,
    "mtunet_best_segmentation": mtunet_best_segmentation,
    "mtunet_vs_linknet_significant": mtunet_vs_linknet_significant,
    "mtunet_best_grading_idrid": mtunet_best_grading_idrid,
    "mtunet_best_grading_sidrp": mtunet_best_grading_sidrp,
    "batchnorm_encoders_miss_red": batchnorm_encoders_miss_red,
    "alpha_one_best": alpha_one_best,
    "dice_losses_worse": dice_losses_worse,
    "kaggle_1914_per_grade": kaggle_1914_per_grade,
}


def claims_table(results_dir: Path) -> pd.DataFrame:
    """One row per paper claim: text, source, verdict, evidence."""
    rows = []
    for claim in CLAIMS:
        check = CHECKS.get(claim["id"])
        verdict, evidence = check(Path(results_dir)) if check else (NOT_TESTABLE, "no check written")
        rows.append({"claim": claim["text"], "source": claim["source"], "verdict": verdict,
                     "evidence": evidence})
    return pd.DataFrame(rows)
