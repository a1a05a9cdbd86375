"""What each notebook found, as sentences rendered from that notebook's own result files.

Every number in a notebook's closing "What we found" section, and in the README's analysis, comes
from here: read from results/<profile>/*.csv, with the study's rules applied on the way (a lesion
area ratio outside [1/2, 2] is called a flood or a collapse, a grader that predicts one grade is
not ranked, a verdict that rests on one run or on overlapping intervals is inconclusive — the
verdicts themselves come from :mod:`mtunet.report.claims`). A sentence whose table is missing
says so instead of guessing, so a partial run renders too.

    python -m mtunet.report.findings --profile cpu [--notebook 05]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from mtunet.config import LESION_GROUPS, project_root
from mtunet.models.registry import label
from mtunet.report.claims import (
    ALTERNATIVE_TEXT, CHECKS, SANE_AREA_RATIO, area_problem, area_text, ratio_text,
)
from mtunet.report.tables import read_table

HEADING = "### What we found"


# ------------------------------------------------------------------------------------- wording

def pct(value, digits: int = 1) -> str:
    """A percentage already in percent: "12.3 %" ("n/a" when missing)."""
    return "n/a" if value is None or pd.isna(value) else f"{float(value):.{digits}f} %"


def area_note(ratio, group: str = "") -> str:
    """"red area 4.7×, a flood" when the ratio is outside SANE_AREA_RATIO, else ""."""
    caveat = area_caveat(ratio)
    return f"{group + ' ' if group else ''}area {ratio_text(ratio)}, {caveat.split(':')[0]}" if caveat else ""


def areas(ratios: dict) -> str:
    """"red area 0.97×, yellow area 1.7× (a flood)": every group's ratio, each caveat after it."""
    return ", ".join(text for group, ratio in ratios.items() if (text := area_text(ratio, group)))


def area_caveat(ratio) -> str:
    """"" inside SANE_AREA_RATIO, else what the area ratio says the Dice rests on."""
    problem = area_problem(ratio)
    return f"{problem}: {ratio_text(ratio)} the true lesion area" if problem else ""


def dice_with_area(dice, ratio) -> str:
    """"23.4 % (area ×0.62)" with the flood/collapse caveat when there is one."""
    caveat = area_caveat(ratio)
    area = "" if ratio is None or pd.isna(ratio) else f" (area {ratio_text(ratio)}"
    if not area:
        return pct(dice)
    return pct(dice) + area + (f", {caveat.split(':')[0]})" if caveat else ")")


def verdict_sentence(claim_id: str, results: Path) -> str:
    """The claim's verdict (mtunet.report.claims) as one bullet's text."""
    from mtunet.paper import claim

    verdict, evidence = CHECKS[claim_id](results)
    return f"Claim *“{claim(claim_id)['text']}”*: **{verdict}** — {evidence}."


def missing(name: str) -> str:
    return f"`{name}` was not produced in this run."


def _ours(table: pd.DataFrame, network: str, metric: str, key: str = "metric", column: str = "ours_mean"):
    rows = table[(table["network"] == network) & (table[key] == metric)]
    return float(rows[column].iloc[0]) if len(rows) and column in rows and pd.notna(rows[column].iloc[0]) else np.nan


def _mean_std(table: pd.DataFrame, network: str, metric: str) -> str:
    mean, std = _ours(table, network, metric), _ours(table, network, metric, column="ours_std")
    return pct(mean) if pd.isna(std) else f"{mean:.1f} ± {std:.1f} %"


# ------------------------------------------------------------------------------- per notebook

def data_preparation(results: Path) -> list[str]:
    """Roles, split integrity, and why the working resolution matters (lesion sizes)."""
    out = []
    roles = read_table(results, "data_roles")
    if roles is None:
        return [missing("data_roles")]
    counts = "; ".join(
        f"{r.role} {int(r.images)}" + (f" (grades 0–4: {'/'.join(str(int(getattr(r, f'grade_{g}'))) for g in range(5))})"
                                        if int(r.images) and sum(int(getattr(r, f'grade_{g}', 0)) for g in range(5)) else "")
        for r in roles.itertuples())
    out.append(f"Images per role: {counts}.")
    integrity = read_table(results, "split_integrity")
    if integrity is not None:
        failed = integrity[~integrity["ok"].astype(str).str.lower().isin(["true", "1"])]
        out.append(f"All {len(integrity)} split-integrity checks pass: no image, and no file content, "
                   "is on both sides of a split." if failed.empty else
                   f"**{len(failed)} of {len(integrity)} split-integrity checks fail**: "
                   + "; ".join(failed["check"]) + ".")
    sizes = read_table(results, "lesion_sizes")
    if sizes is not None and len(sizes):
        numeric = sizes[sizes["image_size"].astype(str).str.isdigit()].assign(
            image_size=lambda f: f["image_size"].astype(int))
        ma = numeric[numeric["lesion"] == "MA"].sort_values("image_size")
        if len(ma) >= 2:
            small, large = ma.iloc[0], ma.iloc[-1]
            out.append(f"Microaneurysms at {small.image_size} px: {pct(100 * small.share_below_1px, 0)} "
                       f"are under one pixel across and the any-overlap resize inflates their mask "
                       f"{small.mask_inflation:.1f}×; at {large.image_size} px: "
                       f"{pct(100 * large.share_below_1px, 0)} under one pixel, inflation "
                       f"{large.mask_inflation:.1f}×.")
    out.extend(_kaggle_pool_sentence(results))
    return out


def _kaggle_pool_sentence(results: Path) -> list[str]:
    """What the paper's Kaggle balancing gives on the two label files (notebook 01)."""
    pool = read_table(results, "kaggle_label_pool")
    if pool is None or pool.empty:
        return []
    pooled = pool.set_index("grade")["pooled"].astype(int)
    return [f"Kaggle's train and test labels pooled: {int(pooled.sum()):,} images, grade 4 the rarest "
            f"with {int(pooled.get(4, 0)):,}, so the paper's rule keeps {int(pool['balanced'].min()):,} "
            "per grade (paper: 1,914)." if int(pooled.idxmin()) == 4 else
            f"Kaggle's labels pooled: {int(pooled.sum()):,} images; grade {int(pooled.idxmin())}, not 4, "
            "is the rarest, so the paper's rule does not give equal grades."]


def seed_segmentation(results: Path) -> list[str]:
    """The loss selection, the seed segmenter's Dice beside its area ratios, the encoder start."""
    out = []
    selection = read_table(results, "loss_selection")
    if selection is not None and len(selection):
        chosen = selection[selection["chosen"].astype(str).str.lower() == "true"]
        excluded = [f"{r.seg_loss} ({r.epochs} epochs, {r.optimiser}; {notes})" for r in selection.itertuples()
                    if (notes := "; ".join(n for g in LESION_GROUPS
                                           if (n := area_note(getattr(r, f"{g}_area_ratio"), g))))]
        none_eligible = ("eligible" in selection
                         and not selection["eligible"].astype(str).str.lower().eq("true").any())
        if len(chosen):
            c = chosen.iloc[0]
            how = ("no candidate met the rule (area ratios within [1/3, 3]), so the fallback took "
                   "the one nearest that band: " if none_eligible else "")
            out.append(f"Loss selection (held-out IDRiD-S *training* images): {how}**{c.seg_loss}** chosen, "
                       f"mean Dice {pct(c.mean_dice)} (red {dice_with_area(c.red_dice, c.red_area_ratio)}, "
                       f"yellow {dice_with_area(c.yellow_dice, c.yellow_area_ratio)}), among "
                       f"{len(selection)} candidates.")
        else:
            out.append(f"Loss selection: none of the {len(selection)} candidates is eligible.")
        if excluded:
            out.append("Flooding or collapsing on the validation images (area ratio outside "
                       f"[{SANE_AREA_RATIO[0]:g}, {SANE_AREA_RATIO[1]:g}]; the selection rule itself "
                       "excludes only those outside [1/3, 3]): " + "; ".join(excluded) + ".")
    seed = read_table(results, "seed_segmenter")
    if seed is None:
        return out + [missing("seed_segmenter")]
    rows = seed.set_index("group")
    parts = [f"{g} {dice_with_area(rows.at[g, 'dice_pooled'], rows['area_ratio'].get(g) if 'area_ratio' in rows else None)}"
             for g in LESION_GROUPS if g in rows.index]
    out.append("Seed segmenter on IDRiD-S test, pooled Dice at the masks' own size: " + ", ".join(parts) + ".")
    if "aupr" in rows:
        out.append("AUPR per lesion (the IDRiD challenge's metric): "
                   + ", ".join(f"{lesion} {pct(rows.at[lesion, 'aupr'])}" for lesion in ("MA", "HE", "EX", "SE")
                               if lesion in rows.index) + ".")
    for g in LESION_GROUPS:
        caveat = area_caveat(rows["area_ratio"].get(g)) if "area_ratio" in rows else ""
        if caveat:
            out.append(f"Its {g}-lesion Dice rests on {caveat}: the pseudo masks of notebook 03 inherit it.")
    init = read_table(results, "encoder_init")
    if init is not None and len(init) > 1:
        text = "; ".join(f"{r.encoder_init_used}: red {dice_with_area(r.red_dice_pooled, getattr(r, 'red_area_ratio', None))}, "
                         f"yellow {dice_with_area(r.yellow_dice_pooled, getattr(r, 'yellow_area_ratio', None))}"
                         for r in init.itertuples())
        out.append(f"Encoder initialisation (one run each, so not a ranking): {text}.")
    return out


def pseudo_labelling(results: Path) -> list[str]:
    """Do the pseudo masks follow the grade? Lesion area per grade, with a rank correlation."""
    from scipy.stats import spearmanr

    per_image = read_table(results, "pseudo_labels")
    if per_image is None or per_image.empty:
        return [missing("pseudo_labels")]
    out = [f"{len(per_image)} grade-only training images were pseudo-labelled; the red and yellow "
           f"masks of the {int((per_image['grade'] == 0).sum())} grade-0 images are emptied (the "
           "paper's rule)."]
    # the per-image table holds fractions of the image; percent, as pseudo_labels_by_grade
    frame = per_image.assign(red=100 * (per_image["MA_fraction"] + per_image["HE_fraction"]),
                             yellow=100 * (per_image["EX_fraction"] + per_image["SE_fraction"]))
    graded = frame[frame["grade"] > 0]
    means = graded.groupby("grade")[["red", "yellow"]].mean()
    for group in LESION_GROUPS:
        if graded["grade"].nunique() < 2:
            break
        rho, p = spearmanr(graded["grade"], graded[group])
        by_grade = ", ".join(f"{int(g)}: {v:.2f}" for g, v in means[group].items())
        follows = ("rises with the grade" if rho > 0 and p < 0.05 else
                   "falls with the grade" if rho < 0 and p < 0.05 else
                   "does not follow the grade measurably")
        out.append(f"Predicted {group}-lesion area (% of the image) by grade ({by_grade}) {follows}: "
                   f"Spearman ρ = {rho:.2f}, p = {p:.2g} over {len(graded)} images of grades 1–4.")
    return out


def variants_and_ablations(results: Path) -> list[str]:
    """Table 1 with its area ratios and intervals, and the α and loss ablations."""
    out = []
    table = read_table(results, "table1_variants")
    if table is None or table["ours_mean"].isna().all():
        return [missing("table1_variants")]
    for network in dict.fromkeys(table["network"]):
        dice_row = table[(table["network"] == network) & (table["metric"] == "dice")]
        area_text = areas({g: dice_row[f"{g}_area_ratio"].iloc[0] for g in LESION_GROUPS
                           if f"{g}_area_ratio" in table and len(dice_row)})
        low, high = (_ours(table, network, "roc", column=c) for c in ("ci_low", "ci_high"))
        interval = f" [{low:.1f}, {high:.1f}]" if pd.notna(low) and pd.notna(high) else ""
        out.append(f"{network}: Dice {_mean_std(table, network, 'dice')}"
                   + (f" ({area_text})" if area_text else "")
                   + f", ROC AUC {_mean_std(table, network, 'roc')}{interval}.")
    out.append(verdict_sentence("variant_c_best", results))
    for name, parameter, claim_id in (("ablation_alpha", "α", "alpha_one_best"),
                                      ("ablation_loss", "loss", "dice_losses_worse")):
        ablation = read_table(results, name)
        if ablation is None or ablation.empty:
            out.append(missing(name))
            continue
        key = ablation.columns[0]
        runs = int(ablation["n_runs"].min()) if "n_runs" in ablation else None
        cells = "; ".join(f"{parameter} = {getattr(r, key)}: Dice {pct(r.dice)}"
                          + (f" ({text})" if (text := areas({g: getattr(r, f"{g}_area_ratio")
                                                             for g in LESION_GROUPS
                                                             if f"{g}_area_ratio" in ablation})) else "")
                          + f", ROC {pct(r.roc)}"
                          for r in ablation.itertuples())
        out.append(f"{parameter} ablation"
                   + (f" ({runs} run{'s' if runs != 1 else ''} per value)" if runs is not None else "")
                   + f": {cells}.")
        out.append(verdict_sentence(claim_id, results))
    return out


def segmentation_baselines(results: Path) -> list[str]:
    """Table 2's ranking per lesion group, with area ratios and intervals; Fig. 6."""
    out = []
    table = read_table(results, "table2_segmentation")
    if table is None or table["ours_mean"].isna().all():
        return [missing("table2_segmentation")]
    mtunet = label("mtunet")
    for group in LESION_GROUPS:
        rows = table[table["metric"] == group].sort_values("ours_mean", ascending=False)
        ranking = ", ".join(
            f"{r.network} {_mean_std(table, r.network, group)}"
            + (f" (area {ratio_text(r.area_ratio)}{', ' + area_caveat(r.area_ratio).split(':')[0] if area_caveat(r.area_ratio) else ''})"
               if "area_ratio" in rows and pd.notna(r.area_ratio) else "")
            for r in rows.itertuples())
        out.append(f"{group.capitalize()} lesions, pooled Dice (mean ± std over runs): {ranking}.")
        if mtunet in set(rows["network"]) and {"ci_low", "ci_high"} <= set(rows.columns):
            ours = rows[rows["network"] == mtunet].iloc[0]
            best_other = rows[rows["network"] != mtunet].iloc[0]
            where = ("lies above" if ours.ci_low > best_other.ci_high else
                     "lies below" if ours.ci_high < best_other.ci_low else "overlaps")
            out.append(f"{mtunet}'s 95 % interval for {group} [{ours.ci_low:.1f}, {ours.ci_high:.1f}] "
                       f"{where} that of the best other network ({best_other.network} "
                       f"[{best_other.ci_low:.1f}, {best_other.ci_high:.1f}]).")
    out.append(verdict_sentence("mtunet_best_segmentation", results))
    fig6 = read_table(results, "fig6_encoders")
    if fig6 is not None and len(fig6):
        mean = fig6.groupby(["encoder", "metric"], sort=False)["value"].mean()
        encoders = dict.fromkeys(fig6["encoder"])
        out.append("Fig. 6 encoders, red-lesion Dice: " + ", ".join(
            f"{e} {dice_with_area(mean.get((e, 'red')), mean.get((e, 'red_area_ratio')))}"
            for e in encoders if (e, "red") in mean) + ".")
        out.append(verdict_sentence("batchnorm_encoders_miss_red", results))
    return out


def grading_baselines(results: Path) -> list[str]:
    """Per grader and test set: mean AUC with its interval, kappa, accuracy; one-class graders."""
    out = []
    summary = read_table(results, "grading_summary")
    if summary is None or summary.empty:
        return [missing("grading_summary")]
    if "test_set" not in summary:
        summary = summary.assign(test_set="grade_test", n_test=np.nan)
    for test_set, rows in summary.groupby("test_set", sort=False):
        size = f", {int(rows['n_test'].iloc[0])} images" if pd.notna(rows["n_test"].iloc[0]) else ""
        cells, one_class = [], []
        for network, runs in rows.groupby("network", sort=False):
            aucs = runs["mean_auc"]
            spread = (f" [{runs['mean_auc_low'].iloc[0]:.1f}, {runs['mean_auc_high'].iloc[0]:.1f}]"
                      if len(runs) == 1 and "mean_auc_low" in runs
                      else f" (runs {aucs.min():.1f}–{aucs.max():.1f})" if len(runs) > 1 else "")
            cells.append(f"{network} {aucs.mean():.1f}{spread}, κ {runs['kappa'].mean():.2f}, "
                         f"{pct(runs['accuracy'].mean())}")
            flagged = runs["one_class"].astype(str).str.lower().eq("true").sum() if "one_class" in runs else 0
            if flagged:
                one_class.append(network + (f" ({flagged} of {len(runs)} runs)" if len(runs) > 1 else ""))
        out.append(f"{test_set}{size} — mean ROC AUC (%) [95 % interval], quadratic κ, accuracy: "
                   + "; ".join(cells) + ".")
        if one_class:
            out.append(f"On {test_set}, **one grade for every image, AUC not ranked**: "
                       + ", ".join(one_class) + ".")
        out.extend(probe_sentence(test_set, rows))
    out.append(verdict_sentence("mtunet_best_grading_idrid", results))
    out.append(verdict_sentence("mtunet_best_grading_sidrp", results))
    return out


def probe_sentence(test_set: str, rows: pd.DataFrame) -> list[str]:
    """What the plain recipe (grading_probe) says about a test set: can the training images
    teach the grade there at all? Its interval above chance: yes, so a grader at chance there did
    not learn; an interval that holds chance: no network trained on them can be ranked there."""
    from mtunet.study.grading_probe import PROBE

    probe = rows[rows["network"] == PROBE]
    if probe.empty or "mean_auc_low" not in probe:
        return []
    auc, low, high = (float(probe[c].iloc[0]) for c in ("mean_auc", "mean_auc_low", "mean_auc_high"))
    cell = f"{auc:.1f} [{low:.1f}, {high:.1f}]"
    if low > 50:
        return [f"On {test_set} the plain recipe, a logistic regression on frozen VGG16 features "
                f"({PROBE}), beats chance, {cell}: the training images carry the grade to this set, so a grader "
                f"whose interval holds 50 here failed to learn what they carry."]
    return [f"On {test_set} even the plain recipe, a logistic regression on frozen VGG16 features "
            f"({PROBE}), is at chance, {cell}: at this scale the training images do not carry the grade to this "
            f"set, so the graders' AUCs here are evidence neither for nor against the paper."]


def significance(results: Path) -> list[str]:
    """The paired tests and the tally of verdicts over every claim."""
    from mtunet.report.claims import claims_table

    out = []
    tests = read_table(results, "ttests")
    if tests is not None and len(tests):
        tested = "; ".join(sorted({ALTERNATIVE_TEXT.get(a, a) for a in tests["alternative"]}))
        out.append(f"Paired t-tests, MTUnet − baseline (Dice points; p {tested}): " + "; ".join(
            f"{r.baseline} {r.group} {r.mean_difference:+.1f} (p = {r.pvalue:.2g}, n = {r.n})"
            for r in tests.itertuples() if pd.notna(r.pvalue)) + ".")
    out.append(verdict_sentence("mtunet_vs_linknet_significant", results))
    verdicts = claims_table(results)["verdict"].value_counts()
    out.append(f"Over the paper's {int(verdicts.sum())} claims: "
               + ", ".join(f"{n} {v}" for v, n in verdicts.items()) + ".")
    out.append(training_cost(results))
    return out


def duration_text(minutes: float) -> str:
    """"1.5 h" from 90 minutes, "45.0 min" under an hour: one format for every duration we report."""
    return f"{minutes / 60:.1f} h" if minutes >= 60 else f"{minutes:.1f} min"


def _notebook_number(value) -> str:
    """"04" for 4, "4" or "04" (a CSV read back turns the notebook column into numbers)."""
    try:
        return f"{int(value):02d}"
    except (TypeError, ValueError):
        return str(value)


def training_cost(results: Path) -> str:
    """How many training runs the study rests on, their epochs' time, and the resumed ones."""
    table = read_table(results, "training_runs")
    if table is None or not len(table):
        return missing("training_runs")
    runs = table.drop_duplicates("run_id")          # a run shared by notebooks counts once
    resumed = runs[runs["resumed"].astype(bool)]
    exact = int(resumed["resume_exact"].fillna(False).astype(bool).sum())
    minutes = float(runs["train_minutes"].sum())
    by_notebook = runs.groupby(runs["notebook"].map(_notebook_number), sort=True)["train_minutes"].sum()
    text = (f"The study rests on {len(runs)} training runs, {duration_text(minutes)} of training epochs "
            f"({', '.join(sorted(set(runs['dtype_policy'].astype(str))))}; by the notebook that "
            f"first trains them: {', '.join(f'{n} {duration_text(m)}' for n, m in by_notebook.items())}); ")
    if not len(resumed):
        text += "none was interrupted."
    else:
        text += (f"{len(resumed)} were interrupted and resumed from a checkpoint, "
                 f"{exact} of them known to be bit for bit equal to an uninterrupted run.")
    return f"{text} {training_code_text(runs)}"


def training_code_text(runs) -> str:
    """Whether every run was trained by the training code of the commit that made the results
    (a cached run of other training code would make the tables something today's code does not)."""
    if "same_training_code" not in runs.columns:
        return ("Which code trained each run is not recorded (these runs predate the training-code "
                "fingerprint).")
    same = runs["same_training_code"].astype(str).str.lower().isin(["true", "1"])
    commits = sorted({c for value in runs["trained_by"].fillna("").astype(str)
                      for c in value.split("; ") if c})
    by = f" (trained by commit{'s' if len(commits) > 1 else ''} {', '.join(f'`{c}`' for c in commits)})" if commits else ""
    if same.all():
        return f"Every run was trained by the training code of the commit that made these results{by}."
    return (f"{int((~same).sum())} of them were trained by other training code than the commit "
            f"that made these results: {', '.join(runs.loc[~same, 'run_id'].astype(str))}{by}.")


NOTEBOOKS: dict[str, Callable[[Path], list[str]]] = {
    "01": data_preparation, "02": seed_segmentation, "03": pseudo_labelling,
    "04": variants_and_ablations, "05": segmentation_baselines, "06": grading_baselines,
    "07": significance,
}
TITLES = {"01": "Data", "02": "Seed segmenter", "03": "Pseudo masks", "04": "Table 1 and the ablations",
          "05": "Table 2 and Fig. 6", "06": "Tables 3 and 4", "07": "Significance and verdicts"}


def findings(notebook: str, results: Path) -> list[str]:
    """The sentences of notebook `notebook` ("01".."07"), from results/<profile>/."""
    if notebook not in NOTEBOOKS:
        raise KeyError(f"no findings for notebook {notebook!r}; known: {', '.join(NOTEBOOKS)}")
    return NOTEBOOKS[notebook](Path(results))


def bullets(notebook: str, results: Path) -> str:
    """One Markdown bullet per finding (a notebook's closing cell shows them)."""
    return "\n".join(f"- {s}" for s in findings(notebook, results))


def markdown(notebook: str, results: Path, heading: str = HEADING) -> str:
    """A notebook's closing section: the heading, then one bullet per finding."""
    return f"{heading}\n\n{bullets(notebook, results)}"


def all_markdown(results: Path) -> str:
    """Every notebook's findings, one sub-heading each (the README's analysis block)."""
    return "\n\n".join(markdown(nb, results, heading=f"**{nb} · {TITLES[nb]}**") for nb in NOTEBOOKS)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mtunet.report.findings",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--notebook", choices=sorted(NOTEBOOKS), default=None)
    args = parser.parse_args(argv)
    results = project_root() / "results" / args.profile
    print(markdown(args.notebook, results) if args.notebook else all_markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
