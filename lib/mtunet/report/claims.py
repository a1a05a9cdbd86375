"""Verdicts on the paper's claims, computed from the result tables a profile wrote.

Each check reads the CSVs under results/<profile>/ and returns (verdict, evidence). Verdicts:
"reproduced", "not reproduced", "inconclusive" (the ranking the claim needs is within the
run-to-run spread; for the grading claims, within the AUCs' 95 % intervals, or MTUnet predicts
one grade for every image), "not testable here" (with the reason). A check never looks at the
paper's numbers to decide; it compares our own runs with each other, as the claim does.

A network is ranked only where its recipe is sane: a segmenter whose predicted lesion area is
outside SANE_AREA_RATIO of the truth (a flood or a collapse) is left out of a Dice ranking, and
a grader that predicts one grade for every image out of an AUC ranking; when the network the
claim is about is the one left out, that comparison is inconclusive.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from mtunet.metrics import SANE_AREA_RATIO  # noqa: F401 (read from here by the report)
from mtunet.paper import CLAIMS, KAGGLE_IMAGES_PER_GRADE, SIGNIFICANCE_LEVEL
from mtunet.models.registry import label
from mtunet.report.tables import read_table

REPRODUCED, NOT_REPRODUCED, NOT_TESTABLE = "reproduced", "not reproduced", "not testable here"
INCONCLUSIVE = "inconclusive"


def ratio_text(value) -> str:
    """An area ratio as the tables and findings print it: "0.62×", "4.7×", "260×"."""
    if value is None or pd.isna(value):
        return "n/a"
    return f"{float(value):.0f}×" if float(value) >= 10 else f"{float(value):.2g}×"


def area_problem(ratio) -> str:
    """"a flood" / "a collapse" when an area ratio lies outside SANE_AREA_RATIO, else ""."""
    if ratio is None or pd.isna(ratio):
        return ""
    low, high = SANE_AREA_RATIO
    return "a flood" if ratio > high else "a collapse" if ratio < low else ""


def area_text(ratio, group: str = "", sep: str = " ") -> str:
    """"red area 3.2× (a flood)", "area 0.97×": a ratio as printed beside a Dice, its problem after
    ``sep`` (a newline in figure annotations); "" when the ratio is missing."""
    if ratio is None or pd.isna(ratio):
        return ""
    problem = area_problem(ratio)
    return f"{group + ' ' if group else ''}area {ratio_text(ratio)}" + (f"{sep}({problem})" if problem else "")


def _group_ratios(row) -> dict[str, float]:
    """{lesion group: area ratio} from a row's ``red_area_ratio`` / ``yellow_area_ratio`` columns."""
    return {c[: -len("_area_ratio")]: getattr(row, c) for c in row._fields if c.endswith("_area_ratio")}


def _problems(ratios: dict) -> str:
    """"red area 3.2×, a flood; …" for the ratios outside SANE_AREA_RATIO ("" when none is)."""
    return "; ".join(f"{g} area {ratio_text(v)}, {area_problem(v)}" for g, v in ratios.items() if area_problem(v))


def _not_sane(table: pd.DataFrame, key: str, metric: str) -> dict[str, str]:
    """{network: "red area 3.2×, a flood"} for the networks whose `metric` Dice rests on a flood
    or a collapse. Table 2's rows carry one ``area_ratio`` per group; Table 1's Dice row the red
    and yellow ratios it averages."""
    out = {}
    for r in table[table[key] == metric].itertuples():
        ratios = {metric: r.area_ratio} if "area_ratio" in table else _group_ratios(r)
        if problems := _problems(ratios):
            out[r.network] = problems
    return out


def _ours(table: pd.DataFrame, key: str) -> pd.DataFrame:
    return table.pivot_table(index="network", columns=key, values="ours_mean")


def _wide(table: pd.DataFrame, key: str, column: str) -> pd.DataFrame:
    if column not in table:
        return _ours(table, key) * float("nan")
    return table.pivot_table(index="network", columns=key, values=column, dropna=False)


def _best_by(table: pd.DataFrame, key: str, winner: str, metrics, what: str) -> tuple[str, str]:
    """Is `winner` first on every metric, by more than the noise?

    A gap counts when it exceeds the larger of the two standard deviations over runs and, where
    the table has 95 % intervals (ci_low / ci_high), the two intervals do not overlap. A ranking
    that rests on a single run is never decided. Any metric where another network is clearly
    ahead: not reproduced; every metric clearly won: reproduced; otherwise inconclusive.
    """
    means = _ours(table, key)
    stds, lows, highs, runs = (_wide(table, key, c) for c in ("ours_std", "ci_low", "ci_high", "n_runs"))
    lines, outcomes = [], []
    for metric in metrics:
        if metric not in means.columns or winner not in means.index:
            return NOT_TESTABLE, f"no {metric} score for {winner}"
        column = means[metric].dropna()
        unsound = _not_sane(table, key, metric)
        left_out = "; ".join(f"{n} ({why})" for n, why in sorted(unsound.items()))
        if winner in unsound or len(column.drop([n for n in unsound if n in column.index])) < 2:
            outcomes.append(INCONCLUSIVE)
            everyone = ", ".join(f"{n} {v:.2f}" for n, v in column.sort_values(ascending=False).items())
            why = (f"{winner} not ranked" if winner in unsound
                   else f"no sane network to compare {winner} with")
            lines.append(f"{metric}: {everyone} — {why}; a flood or a collapse: {left_out}")
            continue
        column = column.drop([n for n in unsound if n in column.index])
        spread = stds[metric].reindex(column.index).fillna(0.0) if metric in stds else column * 0
        others = column.drop(winner, errors="ignore")
        if others.empty:
            return NOT_TESTABLE, f"no network to compare {winner} with on {metric}"
        gaps = column[winner] - others
        noise = np.maximum(spread[winner], spread.drop(winner, errors="ignore"))
        low = lows[metric].reindex(column.index) if metric in lows else column * np.nan
        high = highs[metric].reindex(column.index) if metric in highs else column * np.nan
        apart_below = (high[winner] < low.drop(winner)) | low.isna().drop(winner) | np.isnan(high[winner])
        apart_above = (low[winner] > high.drop(winner)) | high.isna().drop(winner) | np.isnan(low[winner])
        single = metric in runs and bool((runs[metric].reindex(column.index).fillna(1) < 2).any())
        if single:
            outcomes.append(INCONCLUSIVE)
        elif bool(((gaps < -noise) & apart_below).any()):
            outcomes.append(NOT_REPRODUCED)
        elif bool(((gaps > noise) & apart_above).all()):
            outcomes.append(REPRODUCED)
        else:
            outcomes.append(INCONCLUSIVE)
        ranking = ", ".join(f"{n} {v:.2f}" + (f" ± {spread[n]:.2f}" if spread[n] else "")
                            for n, v in column.sort_values(ascending=False).items())
        lines.append(f"{metric}: {ranking}" + (" (a single run: not decided)" if single else "")
                     + (f" (not ranked, a flood or a collapse: {left_out})" if left_out else ""))
    verdict = (NOT_REPRODUCED if NOT_REPRODUCED in outcomes else
               REPRODUCED if all(o == REPRODUCED for o in outcomes) else INCONCLUSIVE)
    return verdict, f"{what} — " + "; ".join(lines)


def variant_c_best(results_dir: Path):
    table = read_table(results_dir, "table1_variants")
    if table is None or table["ours_mean"].isna().all():
        return NOT_TESTABLE, "table1_variants.csv missing or empty"
    return _best_by(table, "metric", label("mtunet", "table1"), ["dice", "roc"],
                    "mean ± std over runs (%)")


def mtunet_best_segmentation(results_dir: Path):
    table = read_table(results_dir, "table2_segmentation")
    if table is None or table["ours_mean"].isna().all():
        return NOT_TESTABLE, "table2_segmentation.csv missing or empty"
    return _best_by(table, "metric", label("mtunet"), ["red", "yellow"],
                    "pooled Dice, mean ± std over runs (%)")


# how a t-test row's alternative reads in the evidence (model = MTUnet, minus the baseline)
ALTERNATIVE_TEXT = {"greater": "one-sided, MTUnet better", "less": "one-sided, the baseline better",
                    "two-sided": "two-sided"}


def _p_baseline_better(row) -> float:
    """The p-value of "the baseline is better" from a t-test row of any alternative: a lead
    for the baseline counts against the paper only where it is beyond noise too."""
    if row.alternative == "greater":
        return 1.0 - row.pvalue
    if row.alternative == "less":
        return row.pvalue
    return row.pvalue if row.mean_difference < 0 else 1.0


def mtunet_vs_linknet_significant(results_dir: Path):
    """Reproduced when MTUnet is better than LinkNet on red and yellow lesions and the paired
    test says so at the paper's level; not reproduced when LinkNet is better on some group by
    the same test at the same level; inconclusive otherwise (a difference inside the noise)."""
    tests = read_table(results_dir, "ttests")
    if tests is None:
        return NOT_TESTABLE, "ttests.csv missing"
    rows = tests[tests["baseline"] == label("linknet")]
    if rows.empty or rows["pvalue"].isna().all():
        return NOT_TESTABLE, f"no defined t-test {label('mtunet')} vs {label('linknet')} (too few pairs?)"
    table2 = read_table(results_dir, "table2_segmentation")
    unsound = {g: _not_sane(table2, "metric", g) if table2 is not None else {} for g in rows["group"]}
    pair = (label("mtunet"), label("linknet"))
    sane = rows["group"].map(lambda g: not any(n in unsound[g] for n in pair)).to_numpy()
    better = (rows["mean_difference"] > 0).to_numpy()
    significant = (rows["pvalue"] < SIGNIFICANCE_LEVEL).to_numpy()
    worse = np.array([_p_baseline_better(r) < SIGNIFICANCE_LEVEL for r in rows.itertuples()])
    evidence = "; ".join(
        f"{r.group}: mean diff {r.mean_difference:+.2f} points, p = {r.pvalue:.3g} "
        f"(n = {r.n}, paired by {r.pairing}, {ALTERNATIVE_TEXT.get(r.alternative, r.alternative)})"
        + ("" if ok else " — not ranked, a flood or a collapse: "
           + "; ".join(f"{n} ({unsound[r.group][n]})" for n in pair if n in unsound[r.group]))
        for r, ok in zip(rows.itertuples(), sane))
    if bool((better & significant & sane).all()):
        return REPRODUCED, evidence
    if bool((sane & worse).any()):
        return NOT_REPRODUCED, evidence
    return INCONCLUSIVE, evidence


def _flag(value) -> bool:
    return str(value).strip().lower() in ("true", "1", "1.0")


def _interval_verdict(table: pd.DataFrame, winner: str) -> tuple[str, list[str]]:
    """Is `winner`'s AUC above every other grader's on every grade, by intervals?

    Per grade: won when `winner`'s 95 % interval lies above every other grader's, lost when some
    other grader's lies above `winner`'s, otherwise (overlap, or an interval missing)
    inconclusive. Graders flagged `one_class` (a run predicted one grade for every image) are not
    ranked. Verdict: any grade lost -> not reproduced; every grade won -> reproduced; else
    inconclusive.
    """
    rows = table.dropna(subset=["ours_mean"])
    flagged = sorted({r.network for r in rows.itertuples() if _flag(getattr(r, "one_class", False))})
    lines = [f"not ranked (predict one grade for every image): {', '.join(flagged)}"] if flagged else []
    if winner in flagged:
        return INCONCLUSIVE, [f"{winner} predicts one grade for every image, so it is not ranked"] + lines
    ranked = rows[~rows["network"].isin(flagged)]
    if winner not in set(ranked["network"]):
        return NOT_TESTABLE, [f"no score for {winner}"]
    if set(ranked["network"]) == {winner}:
        return INCONCLUSIVE, ["no ranked grader to compare with"] + lines
    outcomes = []
    for grade, group in ranked.groupby("grade", sort=False):
        group = group.set_index("network")
        if winner not in group.index:
            continue
        ours = group.loc[winner]
        others = group.drop(winner)
        best = others["ours_mean"].idxmax()
        low, high = ours.get("ci_low", np.nan), ours.get("ci_high", np.nan)
        other_low = others.get("ci_low", pd.Series(np.nan, index=others.index))
        other_high = others.get("ci_high", pd.Series(np.nan, index=others.index))
        if bool((other_low > high).any()):
            outcome = NOT_REPRODUCED
        elif not (np.isnan(low) or other_high.isna().any()) and bool((low > other_high).all()):
            outcome = REPRODUCED
        else:
            outcome = INCONCLUSIVE
        outcomes.append(outcome)
        word = {REPRODUCED: "above all", NOT_REPRODUCED: "below", INCONCLUSIVE: "overlaps"}[outcome]
        n_pos = ours.get("n_positive", np.nan)
        positives = f", {int(n_pos)} positives" if pd.notna(n_pos) else ""
        lines.append(f"{grade}: {winner} {_auc_text(ours)}{positives} {word}; best other "
                     f"{best} {_auc_text(others.loc[best])}")
    if not outcomes:
        return NOT_TESTABLE, [f"no grade with a score for {winner}"] + lines
    verdict = (NOT_REPRODUCED if NOT_REPRODUCED in outcomes else
               REPRODUCED if all(o == REPRODUCED for o in outcomes) else INCONCLUSIVE)
    return verdict, lines


def _auc_text(row) -> str:
    low, high = row.get("ci_low", np.nan), row.get("ci_high", np.nan)
    interval = f" [{low:.1f}, {high:.1f}]" if pd.notna(low) and pd.notna(high) else " [no interval]"
    return f"{row['ours_mean']:.1f}{interval}"


def _grading_claim(results_dir: Path, name: str, paper_set: str) -> tuple[str, str]:
    table = read_table(results_dir, name)
    if table is None or table["ours_mean"].isna().all():
        test_set = (table["test_set"].iloc[0] if table is not None and "test_set" in table.columns
                    and len(table) else f"no test set for {paper_set}")
        return NOT_TESTABLE, f"{name}.csv empty: {test_set}"
    verdict, lines = _interval_verdict(table, label("mtunet"))
    test_set = table["test_set"].iloc[0] if "test_set" in table.columns else "?"
    stand_in = _flag(table["stand_in"].iloc[0]) if "stand_in" in table.columns else True
    where = (f"tested on a stand-in for {paper_set}, not on {paper_set} itself — " if stand_in
             else f"tested on {paper_set} — ")
    return verdict, (where + f"{test_set}. ROC AUC (%) mean over runs [95 % interval]; "
                     "inconclusive where the intervals overlap. " + "; ".join(lines))


def mtunet_best_grading_idrid(results_dir: Path):
    return _grading_claim(results_dir, "table3_grading_internal", "IDRiD-D")


def mtunet_best_grading_sidrp(results_dir: Path):
    return _grading_claim(results_dir, "table4_grading_external", "SiDRP14-15")


def batchnorm_encoders_miss_red(results_dir: Path):
    """Like for like: the batch-norm encoders start from random weights here (only VGG16 has
    pretrained weights offline), so they are compared with VGG16 from random weights too."""
    table = read_table(results_dir, "fig6_encoders")
    if table is None or table.empty:
        return NOT_TESTABLE, "fig6_encoders.csv missing"
    red = table[table["metric"] == "red"].groupby("encoder")["value"].mean()
    reference = "VGG16, random init" if "VGG16, random init" in red.index else label("mtunet", "fig6")
    if reference not in red.index:
        return NOT_TESTABLE, "no VGG16 encoder run"
    batchnorm = red.drop([n for n in red.index if n.startswith("VGG16")])
    evidence = f"red-lesion Dice (%) against {reference}: " + ", ".join(f"{k} {v:.2f}" for k, v in red.items())
    runs = table[table["metric"] == "red"].groupby("encoder").size()
    if bool((runs < 2).any()):
        return INCONCLUSIVE, evidence + " (one run each: not decided)"
    return (REPRODUCED if bool((batchnorm < red[reference]).all()) else NOT_REPRODUCED), evidence


def _ablation_unsound(table: pd.DataFrame, setting: str) -> dict:
    """{setting value: "red area 0.01×, a collapse"} for the ablation rows whose lesion Dice
    rests on a flood or a collapse (their red_/yellow_area_ratio columns)."""
    return {getattr(r, setting): problems for r in table.itertuples()
            if (problems := _problems(_group_ratios(r)))}


def _left_out_text(unsound: dict, name: str) -> str:
    return ("; not ranked on Dice, a flood or a collapse: "
            + "; ".join(f"{name} {k} ({why})" for k, why in unsound.items())) if unsound else ""


def alpha_one_best(results_dir: Path):
    table = read_table(results_dir, "ablation_alpha")
    if table is None or table.empty:
        return NOT_TESTABLE, "ablation_alpha.csv missing"
    unsound = _ablation_unsound(table, "alpha")
    ranked = {"dice": table[~table["alpha"].isin(list(unsound))], "roc": table}
    best = {m: float(rows.loc[rows[m].idxmax(), "alpha"]) for m, rows in ranked.items()
            if m in rows and len(rows)}
    verdict = REPRODUCED if best and all(np.isclose(a, 1.0) for a in best.values()) else NOT_REPRODUCED
    if "n_runs" in table and bool((table["n_runs"] < 2).any()):
        verdict = INCONCLUSIVE   # one run per value: not decided
    if "dice" not in best or any(np.isclose(float(a), 1.0) for a in unsound):
        verdict = INCONCLUSIVE   # alpha = 1's Dice, or every Dice, is not ranked
    return verdict, ("best alpha: " + ", ".join(f"{m} at alpha = {a:g}" for m, a in best.items())
                     + _left_out_text(unsound, "alpha ="))


def dice_losses_worse(results_dir: Path):
    table = read_table(results_dir, "ablation_loss")
    if table is None or table.empty or "bce" not in set(table["seg_loss"]):
        return NOT_TESTABLE, "ablation_loss.csv missing or without the BCE run"
    unsound = _ablation_unsound(table, "seg_loss")
    dice = table.set_index("seg_loss")["dice"]
    others = dice.drop(["bce", *unsound], errors="ignore")
    verdict = REPRODUCED if bool((others < dice["bce"]).all()) else NOT_REPRODUCED
    if "n_runs" in table and bool((table["n_runs"] < 2).any()):
        verdict = INCONCLUSIVE   # one run per value: not decided
    if "bce" in unsound or others.empty:
        verdict = INCONCLUSIVE   # the claim's reference, or every rival, is not ranked
    return verdict, ("mean lesion Dice (%): " + ", ".join(f"{k} {v:.2f}" for k, v in dice.items())
                     + _left_out_text(unsound, "loss"))


def kaggle_1914_per_grade(results_dir: Path):
    """The paper pooled Kaggle's train and test labels and downsampled every grade to the count of
    grade 4, "1914 images per severity level": checked on the two label files (notebook 01's
    kaggle_label_pool table); no image is needed."""
    pool = read_table(results_dir, "kaggle_label_pool")
    if pool is None or pool.empty:
        return NOT_TESTABLE, ("needs Kaggle's trainLabels.csv and the test solution "
                              "(retinopathy_solution.csv) in the data folder; kaggle_label_pool.csv "
                              "is missing or empty")
    pooled = pool.set_index("grade")["pooled"].astype(int)
    per_grade = int(pooled.get(4, 0))
    rarest = int(pooled.idxmin())
    verdict = REPRODUCED if per_grade == KAGGLE_IMAGES_PER_GRADE and rarest == 4 else NOT_REPRODUCED
    return verdict, (f"{int(pooled.sum()):,} labels pooled (train + test); grade 4 has {per_grade:,}"
                     f" (paper: {KAGGLE_IMAGES_PER_GRADE:,}), the rarest grade is {rarest}; per grade "
                     + ", ".join(f"{g}: {n:,}" for g, n in pooled.items()))


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
