"""End to end: `run_all.sh --profile smoke` in a fresh copy of the project makes every table and figure.

It is the test of the README's main command. It reuses the current virtual environment instead of
installing a second one, and the smoke training runs already in this checkout's runs/smoke (if
any: run_tests.sh runs the nbval notebooks first), so the notebooks, tables and figures are all
made afresh while the models are trained only once per test session.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mtunet import paper
from mtunet.config import project_root

TABLES = {
    "table1_variants": (paper.table1_frame(), "metric"),
    "table2_segmentation": (paper.table2_frame(), "metric"),
    "table3_grading_internal": (paper.table3_frame(), "grade"),
    "table4_grading_external": (paper.table4_frame(), "grade"),
}
OTHER_RESULTS = ["ablation_alpha.csv", "ablation_loss.csv", "ttests.csv", "fig6_encoders.csv", "training_runs.csv",
                 "paper_vs_reproduced.md", "manifest.json", "splits.csv", "data_roles.csv"]
FIGURES = ["class_balance.png", "samples_with_masks.png", "seed_segmenter_training.png",
           "seed_segmenter_overlay.png", "pseudo_labels_by_grade.png", "table1_variants.png",
           "ablation_alpha.png", "table2_segmentation.png", "fig6_encoders_1.png", "lesion_errors_red.png",
           "table3_grading.png", "roc_mtunet.png", "confusion_mtunet.png", "reliability_mtunet.png"]


@pytest.fixture(scope="module")
def smoke_copy(tmp_path_factory, copy_checkout) -> Path:
    root = copy_checkout(tmp_path_factory.mktemp("project"))
    cached_runs = project_root() / "runs" / "smoke"
    if cached_runs.is_dir():
        shutil.copytree(cached_runs, root / "runs" / "smoke", copy_function=os.link,
                        ignore=shutil.ignore_patterns("pseudo_labels"))  # rewritten in place by 03
    # the copy's own library, not the checkout's (the venv has an editable install of the latter)
    env = {**os.environ, "MTUNET_VENV": sys.prefix, "KERAS_BACKEND": "tensorflow",
           "PYTHONPATH": str(root / "lib")}
    env.pop("MTUNET_RUNS_DIR", None)
    done = subprocess.run(["bash", "run_all.sh", "--profile", "smoke"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "notebook(s) run in" in done.stdout
    return root


def test_every_table_has_all_the_papers_rows(smoke_copy):
    from mtunet.commands.run_notebooks import load_profile
    from mtunet.models.registry import MODELS, label

    # a smaller stand-in (NASNetMobile) takes the paper's row under its own name
    shown_as = {label(MODELS[m].paper_model): label(m)
                for m in load_profile("smoke")["parameters"].get("grading_models", [])
                if MODELS[m].stands_in_for}
    for name, (published, key) in TABLES.items():
        table = pd.read_csv(smoke_copy / "results" / "smoke" / f"{name}.csv")
        expected = {(shown_as.get(n, n), k) for n, k in zip(published["network"], published[key])}
        assert expected <= set(zip(table["network"], table[key])), name
        assert table["paper_mean"].notna().sum() == len(published), name


def test_every_result_and_figure_exists(smoke_copy):
    results = smoke_copy / "results" / "smoke"
    for name in OTHER_RESULTS:
        assert (results / name).stat().st_size > 0, name
    for name in FIGURES:
        assert (smoke_copy / "figures" / "smoke" / name).stat().st_size > 0, name
    executed = sorted(p.name for p in (results / "executed").glob("*.ipynb"))
    assert len(executed) == 7


def test_reproduced_numbers_are_filled_in(smoke_copy):
    results = smoke_copy / "results" / "smoke"
    for name in ("table1_variants", "table2_segmentation", "table3_grading_internal"):
        table = pd.read_csv(results / f"{name}.csv")
        # a cell is filled, or says why it cannot be (an AUC of a grade absent from the test set)
        filled = table["ours_mean"].notna() | table["status"].fillna("").str.startswith("undefined")
        assert filled.all(), (name, table.loc[~filled, ["network", table.columns[1]]])
        assert table["ours_mean"].notna().mean() > 0.7, name
    assert "Claims" in (results / "paper_vs_reproduced.md").read_text()


def test_second_run_skips_everything(smoke_copy):
    env = {**os.environ, "MTUNET_VENV": sys.prefix, "PYTHONPATH": str(smoke_copy / "lib")}
    done = subprocess.run(["bash", "run_all.sh"], cwd=smoke_copy, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and done.stdout.count("up to date, skipped") == 7
