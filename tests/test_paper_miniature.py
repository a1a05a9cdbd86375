"""The paper profile's path proven end to end, as a miniature, on the real data (marker
`miniature`, its own stage of run_tests.sh; skipped where the real data folder is absent).

`run_all.sh --profile paper-miniature --data-dir ../shared/data`, cold, in a fresh copy of the
project: profiles/paper-miniature.yaml is profiles/paper.yaml (512-px whole images, BCE, Adam 1e-5,
its data roles and graders, NASNetLarge among them) with only the budget shrunk, so every notebook
trains and scores the paper's networks at the paper's size, on a few images for one epoch. The
runner is called as run_all.sh calls it once the environment is set up (run_tests.sh has set it
up), so the test never installs anything. The GPU command's miniature under JAX is
tests/test_gpu_protocol.py::test_script_runs_a_miniature_under_jax.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from mtunet import paper

pytestmark = pytest.mark.miniature

PROFILE = "paper-miniature"
TABLES = {"table1_variants": paper.table1_frame(), "table2_segmentation": paper.table2_frame(),
          "table3_grading_internal": paper.table3_frame(),
          "table4_grading_external": paper.table4_frame()}
RESULTS = ["ablation_alpha.csv", "ablation_loss.csv", "ttests.csv", "fig6_encoders.csv",
           "training_runs.csv", "paper_vs_reproduced.md", "manifest.json", "splits.csv",
           "data_roles.csv", "split_integrity.csv", "seed_segmenter.csv", "pseudo_labels.csv",
           "grading_summary.csv", "report.html"]
FIGURES = ["class_balance.png", "samples_with_masks.png", "lesion_sizes.png",
           "seed_segmenter_training.png", "seed_segmenter_overlay.png", "pseudo_labels_by_grade.png",
           "table1_variants.png", "ablation_alpha.png", "table2_segmentation.png",
           "fig6_encoders_1.png", "table3_grading.png", "table4_grading.png", "roc_mtunet.png",
           "confusion_mtunet.png", "reliability_mtunet.png"]


@pytest.fixture(scope="module")
def miniature(real_aptos_dir, real_messidor_dir, real_idrid_dir, real_eyepacs_dir,
              tmp_path_factory, copy_checkout) -> Path:
    """A cold run of the miniature in a fresh copy (no cached runs); prints its wall time."""
    data = real_idrid_dir.parent.resolve()
    root = copy_checkout(tmp_path_factory.mktemp("project"))
    # the copy's own library, not the checkout's (the venv has an editable install of the latter)
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "PYTHONPATH": str(root / "lib")}
    env.pop("MTUNET_RUNS_DIR", None)
    started = time.time()
    done = subprocess.run([sys.executable, "-m", "mtunet.commands.run_notebooks", "--profile",
                           PROFILE, "--data-dir", str(data)], cwd=root, env=env,
                          capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    print(f"\n{PROFILE}: {(time.time() - started) / 60:.1f} min cold; "
          + done.stdout.strip().splitlines()[-2])
    return root


def _results(root: Path) -> Path:
    return root / "results" / PROFILE


def test_every_notebook_ran_to_its_tables_figures_and_report(miniature):
    executed = _results(miniature) / "executed"
    assert len(list(executed.glob("0*_*.ipynb"))) == 7
    assert not list(executed.glob("*.failed.ipynb"))
    for name in [f"{t}.csv" for t in TABLES] + RESULTS:
        assert (_results(miniature) / name).stat().st_size > 0, name
    for name in FIGURES:
        assert (miniature / "figures" / PROFILE / name).stat().st_size > 0, name
    manifest = json.loads((_results(miniature) / "manifest.json").read_text())
    assert manifest["profile"] == PROFILE and manifest["profile_bases"] == ["paper"]
    assert {nb: p["image_size"] for nb, p in manifest["parameters"].items()} == \
        {nb.stem: 512 for nb in sorted(executed.glob("0*_*.ipynb"))}


def test_the_miniature_trained_the_papers_networks_at_512_px(miniature):
    runs = pd.read_csv(_results(miniature) / "training_runs.csv")
    assert {"unet", "variant_a", "variant_b", "mtunet", "linknet", "fpn", "deeplabv3",
            "mtunet_resnet50", "nasnet_large", "densenet201", "resnext101",
            "inception_resnet_v2"} <= set(runs["model"])
    roles = pd.read_csv(_results(miniature) / "data_roles.csv").set_index("role")["images"]
    assert roles.to_dict() == {"seg_train": 1, "seg_test": 2, "grade_train": 3, "grade_test": 5,
                               "table3_test": 10, "table4_test": 9}   # whole examinations / patients


def test_the_numbers_are_in_range(miniature):
    """A miniature's numbers mean nothing, but they are numbers: Dice and AUC in [0, 100]."""
    for name, published in TABLES.items():
        table = pd.read_csv(_results(miniature) / f"{name}.csv")
        ours = table.dropna(subset=["ours_mean"])
        assert len(ours) >= 0.5 * len(published), name
        assert ours["ours_mean"].between(0, 100).all(), (name, ours["ours_mean"].tolist())
    table2 = pd.read_csv(_results(miniature) / "table2_segmentation.csv")
    mtunet = table2[table2["network"] == "MTUnet"]
    assert mtunet["ours_mean"].notna().all() and set(mtunet["metric"]) == {"red", "yellow"}
    assert "Claims" in (_results(miniature) / "paper_vs_reproduced.md").read_text()
