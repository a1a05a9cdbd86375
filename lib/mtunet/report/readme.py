"""The README's results block, rendered from results/<profile>/ so no number there is typed by hand.

    python -m mtunet.report.readme --profile cpu            # rewrite the block between the markers
    python -m mtunet.report.readme --profile cpu --check    # exit 1 if the README's block is stale

The block sits between ``<!-- results:<profile> -->`` and ``<!-- /results:<profile> -->``; where the
README also has ``<!-- findings:<profile> -->`` markers, every notebook's "What we found" sentences
(:mod:`mtunet.report.findings`) go there, so the numbers the analysis quotes are rendered too. The
prose around the blocks is written by people and states no numbers. A test regenerates both
blocks from the committed tables and compares, so README and results/ cannot drift apart.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pandas as pd

from mtunet.config import project_root
from mtunet.errors import UserError
from mtunet.models.registry import label
from mtunet.paper import SIGNIFICANCE_LEVEL
from mtunet.report.findings import duration_text
from mtunet.report.tables import read_table

COMPARE_COLUMNS = ["paper", "ours", "difference", "n_runs"]
FIGURES = [("table1_variants.png", "Table 1: paper vs reproduced"),
           ("table2_segmentation.png", "Table 2: paper vs reproduced"),
           ("fig6_encoders_1.png", "Fig. 6: encoders on an IDRiD-S test image"),
           ("lesion_sizes.png", "Lesion size against working resolution"),
           ("table3_grading.png", "Table 3: paper vs reproduced"),
           ("table4_grading.png", "Table 4: paper vs reproduced"),
           ("pseudo_label_samples.png", "Pseudo masks of grade-only training images")]


def markers(profile: str, kind: str = "results") -> tuple[str, str]:
    return f"<!-- {kind}:{profile} -->", f"<!-- /{kind}:{profile} -->"


def findings_block(profile: str, root: Path | None = None) -> str:
    """Every notebook's findings, rendered from results/<profile>/ (the README's analysis)."""
    from mtunet.report.findings import all_markdown

    results = (root or project_root()) / "results" / profile
    return (f"Rendered from [`results/{profile}/`](results/{profile}) by `python -m mtunet.report.readme "
            f"--profile {profile}`; each notebook ends with the same sentences.\n\n" + all_markdown(results))


def blocks(profile: str, text: str, root: Path | None = None) -> dict[str, str]:
    """The blocks the README holds markers for: results (required) and findings (optional)."""
    out = {"results": results_block(profile, root)}
    if markers(profile, "findings")[0] in text:
        out["findings"] = findings_block(profile, root)
    return out


def _table(frame: pd.DataFrame, columns: list[str]) -> str:
    present = [c for c in columns if c in frame.columns]
    shown = frame[present].copy()
    for column in shown.columns:
        if pd.api.types.is_float_dtype(shown[column]):
            shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:.2f}")
    return shown.fillna("").to_markdown(index=False, disable_numparse=True)


def dice_protocols(results: Path) -> pd.DataFrame | None:
    """Table 2's networks under both Dice protocols: pooled over all test pixels (the tables) and
    the mean of per-image Dice over the images that have the lesion (both averaged over runs)."""
    runs, per_image = read_table(results, "table2_runs"), read_table(results, "segmentation_per_image")
    if runs is None or per_image is None or runs.empty or per_image.empty:
        return None
    pooled = runs.groupby(["network", "metric"])["value"].mean().unstack()
    per = per_image.dropna(subset=["dice"]).groupby(["network", "group"])["dice"].mean().unstack()
    rows = []
    for network in pooled.index:
        row = {"network": network}
        for group in ("red", "yellow"):
            row[f"{group}_pooled"] = pooled.at[network, group] if group in pooled else float("nan")
            row[f"{group}_per_image"] = (per.at[network, group]
                                         if network in per.index and group in per else float("nan"))
        rows.append(row)
    return pd.DataFrame(rows)


def results_block(profile: str, root: Path | None = None) -> str:
    """Markdown for the README: the main tables beside the paper's, the claims, the figures."""
    root = root or project_root()
    results, figures = root / "results" / profile, root / "figures" / profile
    if not results.is_dir():
        raise UserError(f"{results}: no results for profile {profile!r}; run ./run_all.sh --profile {profile}")
    parts = [f"Rendered from [`results/{profile}/`](results/{profile}) by `python -m mtunet.report.readme "
             f"--profile {profile}`. Percent; *ours* = mean ± std over runs; *difference* = ours − "
             f"paper. Full tables: [`paper_vs_reproduced.md`](results/{profile}/paper_vs_reproduced.md)."]
    made = provenance(results, profile)
    if made:
        parts.append(made)
    sections = [("table1_variants", "Table 1 — network variants", ["network", "metric"]),
                ("table2_segmentation", "Table 2 — lesion Dice on IDRiD-S test (pooled over pixels)",
                 ["network", "metric"]),
                ("table3_grading_internal", "Table 3 — ROC AUC per grade", ["network", "grade"]),
                ("table4_grading_external", "Table 4 — ROC AUC per grade (paper: SiDRP14-15)",
                 ["network", "grade"])]
    for name, title, keys in sections:
        frame = read_table(results, name)
        if frame is None:
            parts.append(f"**{title}**: not produced in this profile.")
            continue
        note = ""
        if "test_set" in frame.columns:
            note = f" Test set: {frame['test_set'].iloc[0]}."
        elif "test_sets" in frame.columns:
            note = f" {frame['test_sets'].iloc[0]}."
        if "ours_mean" in frame.columns and frame["ours_mean"].isna().all():
            parts.append(f"**{title}**: no reproduced values in this run.{note}")   # no empty column
            continue
        parts.append(f"**{title}.**{note}\n\n" + _table(frame, keys + COMPARE_COLUMNS))
    protocols = dice_protocols(results)
    if protocols is not None:
        parts.append("**Dice protocol: pooled (the tables) vs mean per image** (IDRiD-S test, mean "
                     "over runs).\n\n" + _table(protocols, list(protocols.columns)))
    ttests = read_table(results, "ttests")
    if ttests is not None and len(ttests):
        parts.append(f"**Paired t-tests, {label('mtunet')} vs each baseline** (Dice points; significant "
                     f"at {100 * SIGNIFICANCE_LEVEL:g} %).\n\n"
                     + _table(ttests, ["baseline", "group", "n", "mean_difference", "pvalue",
                                       "significant_10pct"]))
    from mtunet.report.claims import claims_table

    parts.append("**The paper's claims.**\n\n"
                 + claims_table(results)[["claim", "verdict", "evidence"]].to_markdown(index=False))
    sizes = read_table(results, "lesion_sizes")
    if sizes is not None and len(sizes):
        parts.append("**Lesion size against working resolution** (IDRiD-S, "
                     f"[`lesion_sizes.md`](results/{profile}/lesion_sizes.md)).\n\n"
                     + _table(sizes, list(sizes.columns)))
    selection = read_table(results, "loss_selection")
    if selection is not None and len(selection):
        parts.append("**Segmentation loss chosen on 10 held-out IDRiD-S training images** "
                     f"([`loss_selection.md`](results/{profile}/loss_selection.md)).\n\n"
                     + _table(selection, list(selection.columns)))
    shown = [(f, title) for f, title in FIGURES if (figures / f).exists()]
    if shown:
        parts.append("\n".join(f"![{title}](figures/{profile}/{f})" for f, title in shown))
    return "\n\n".join(parts)


def provenance(results: Path, profile: str) -> str | None:
    """Which commit made the results, what training they rest on, and how long the notebooks'
    last execution took (from the manifest and training_runs; None without a manifest)."""
    import json

    from mtunet.report.findings import training_cost

    try:
        manifest = json.loads((results / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    commits = sorted({c[:7] for c in manifest.get("notebook_commits", {}).values() if c})
    seconds = sum(manifest.get("notebook_seconds", {}).values())
    runs_table = (f"; [`training_runs.md`](results/{profile}/training_runs.md) has each run's"
                  if (results / "training_runs.md").exists() else "")
    cpus = training_cpu_text(read_table(results, "training_runs"))
    return (f"**Made by** commit{'s' if len(commits) > 1 else ''} "
            f"{', '.join(f'`{c}`' for c in commits) or 'unknown'} "
            f"([`manifest.json`](results/{profile}/manifest.json)). {training_cost(results)} "
            f"{cpus + ' ' if cpus else ''}{wall_time(manifest.get('executions'))}"
            f"The notebooks' last execution took {seconds / 60:.0f} min in all (runs already "
            f"trained are loaded from `runs/`, so this is not the training time{runs_table}).")


def training_cpu_text(runs: pd.DataFrame | None) -> str:
    """Which CPU types trained the runs (training_runs' ``trained_on``), and so on which CPU a
    cold rerun remakes the numbers byte for byte ("" where the table is absent)."""
    if runs is None or not len(runs):
        return ""
    if "trained_on" not in runs.columns:
        return "Which CPU trained each run is not recorded (these runs predate that record)."
    runs = runs.drop_duplicates("run_id")
    per_run = runs["trained_on"].fillna("").astype(str).map(lambda v: [c for c in v.split("; ") if c])
    types = list(dict.fromkeys(c for cpus in per_run for c in cpus))
    unrecorded = runs.loc[per_run.map(len) == 0, "run_id"].astype(str).tolist()
    mixed = runs.loc[per_run.map(len) > 1, "run_id"].astype(str).tolist()
    text = ""
    numbers = "the numbers resting on those runs" if unrecorded else "these numbers"
    if len(types) == 1:
        text = (f"Every run whose CPU is recorded was trained on one CPU type, `{types[0]}`: a cold "
                f"rerun remakes {numbers} byte for byte on a CPU of that type, and other numbers "
                "on another (TensorFlow's oneDNN kernels round by the instruction set, cache sizes "
                "and thread count, and training carries a rounding difference into every number).")
    elif types:
        text = (f"The runs were trained on {len(types)} CPU types ({', '.join(f'`{c}`' for c in types)}): "
                "no one CPU type remakes all of these numbers byte for byte.")
    if mixed:
        text += f" Resumed on another CPU type than they started on: {', '.join(mixed)}."
    if unrecorded:
        text += (f" {len(unrecorded)} of the {len(runs)} runs predate the record of the CPU that "
                 "trained them.")
    return text.strip()


def wall_time(executions: dict | None) -> str:
    """What computing the results took on their machine, restarts and kills included (the
    manifest's summary of runs/<profile>/executions.csv), as a sentence ("" when not recorded)."""
    if not executions:
        return ""
    spent = duration_text(executions["seconds"] / 60)
    stopped = executions.get("stopped", 0)
    return (f"Computing them took {spent} of wall time on this profile's machine in all "
            f"({executions['executions']} executions of the notebooks and the loss selection since "
            f"{executions['since'][:10]}, {stopped} of them stopped and resumed; an upper bound on "
            f"one uninterrupted run). ")


def replace_block(text: str, profile: str, block: str, kind: str = "results") -> str:
    start, end = markers(profile, kind)
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise UserError(f"README has no {start} … {end} markers")
    return pattern.sub(lambda _: f"{start}\n{block}\n{end}", text, count=1)


def current_block(text: str, profile: str, kind: str = "results") -> str | None:
    start, end = markers(profile, kind)
    match = re.search(re.escape(start) + r"\n(.*?)\n" + re.escape(end), text, re.S)
    return match.group(1) if match else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mtunet.report.readme", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--readme", type=Path, default=None, help="default: the project's README.md")
    parser.add_argument("--check", action="store_true", help="exit 1 if the block is out of date")
    args = parser.parse_args(argv)
    args.readme = args.readme or project_root() / "README.md"
    try:
        text = args.readme.read_text()
        rendered = blocks(args.profile, text)
        if args.check:
            stale = [kind for kind, block in rendered.items()
                     if current_block(text, args.profile, kind) != block]
            for kind in stale:
                print(f"{args.readme}: the {kind}:{args.profile} block is out of date; run "
                      f"python -m mtunet.report.readme --profile {args.profile}", file=sys.stderr)
            return 1 if stale else 0
        for kind, block in rendered.items():
            text = replace_block(text, args.profile, block, kind)
        args.readme.write_text(text)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.readme}: {', '.join(f'{k}:{args.profile}' for k in rendered)} block updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
