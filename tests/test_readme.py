"""The README's results blocks are rendered from results/<profile>/, never typed: they must match."""
from __future__ import annotations

import re

import pytest

from mtunet.config import project_root
from mtunet.report import readme
from mtunet.errors import UserError

PROFILES_IN_README = re.findall(r"<!-- results:([a-z0-9_-]+) -->", (project_root() / "README.md").read_text())


@pytest.mark.parametrize("profile", PROFILES_IN_README)
def test_readme_block_matches_the_committed_results(profile):
    text = (project_root() / "README.md").read_text()
    assert readme.current_block(text, profile) == readme.results_block(profile), \
        f"run python -m mtunet.report.readme --profile {profile}"


def test_block_holds_tables_claims_and_figures():
    block = readme.results_block("smoke")
    assert "**Table 1 — network variants.**" in block and "| Variant C" in block
    assert "**The paper's claims.**" in block and "not testable here" in block
    assert "![Table 2: paper vs reproduced](figures/smoke/table2_segmentation.png)" in block


def test_replace_block_keeps_the_text_around_it():
    text = "intro\n<!-- results:x -->\nold\n<!-- /results:x -->\nanalysis\n"
    new = readme.replace_block(text, "x", "new")
    assert new == "intro\n<!-- results:x -->\nnew\n<!-- /results:x -->\nanalysis\n"
    assert readme.current_block(new, "x") == "new"


def test_missing_markers_and_missing_results_are_errors(tmp_path):
    with pytest.raises(UserError, match="no <!-- results:x -->"):
        readme.replace_block("no markers here", "x", "block")
    with pytest.raises(UserError, match="no results for profile 'nope'"):
        readme.results_block("nope", root=tmp_path)


def test_check_mode_reports_a_stale_block(tmp_path, capsys):
    path = tmp_path / "README.md"
    path.write_text("<!-- results:smoke -->\nstale\n<!-- /results:smoke -->\n")
    assert readme.main(["--profile", "smoke", "--readme", str(path), "--check"]) == 1
    assert "out of date" in capsys.readouterr().err
    assert readme.main(["--profile", "smoke", "--readme", str(path)]) == 0
    assert readme.main(["--profile", "smoke", "--readme", str(path), "--check"]) == 0


def test_dice_protocols_average_runs_and_skip_images_without_the_lesion(tmp_path):
    import pandas as pd

    pd.DataFrame({"network": ["A", "A", "A", "A"], "seed": [0, 1, 0, 1],
                  "metric": ["red", "red", "yellow", "yellow"], "value": [10.0, 20.0, 30.0, 50.0]}
                 ).to_csv(tmp_path / "table2_runs.csv", index=False)
    pd.DataFrame({"network": ["A"] * 3, "seed": [0, 0, 1], "image_id": ["x", "y", "x"],
                  "group": ["red", "red", "red"], "dice": [4.0, float("nan"), 8.0]}
                 ).to_csv(tmp_path / "segmentation_per_image.csv", index=False)
    table = readme.dice_protocols(tmp_path)
    row = table.iloc[0]
    assert (row["red_pooled"], row["yellow_pooled"], row["red_per_image"]) == (15.0, 40.0, 6.0)
    assert pd.isna(row["yellow_per_image"])
