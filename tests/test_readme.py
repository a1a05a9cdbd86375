"""The README's results blocks are rendered from results/<profile>/, never typed: they must match."""
from __future__ import annotations

import re

import pytest

from mtunet.config import project_root
from mtunet.report import readme
from mtunet.errors import UserError

PROFILES_IN_README = re.findall(r"<!-- results:([a-z0-9_-]+) -->", (project_root() / "README.md").read_text())


@pytest.mark.parametrize("profile", PROFILES_IN_README)
def test_readme_blocks_match_the_committed_results(profile):
    text = (project_root() / "README.md").read_text()
    for kind, block in readme.blocks(profile, text).items():
        assert readme.current_block(text, profile, kind) == block, \
            f"{kind}:{profile} is stale: run python -m mtunet.report.readme --profile {profile}"


# references and names that carry digits without being results: "Table 1", "Fig. 6", "Eq. 3",
# "notebook 01", "512-px", a citation's year, names such as "Messidor-2" or "VGG16"
NOT_RESULTS = re.compile(r"(Tables? \d( and \d)?|Fig\. \d|Eq\. \d|notebooks? \d\d|\d+-px|"
                         r"\b(19|20)\d\d\b|\b[A-Za-z]+-?\d+(-\d+)?\b)")


def test_the_readme_analysis_states_no_number_by_hand():
    """The analysis of the cpu results quotes numbers only inside the rendered findings block."""
    text = (project_root() / "README.md").read_text()
    section = text[text.index("### Reading the `cpu` numbers"):text.index("## What is where")]
    start, end = readme.markers("cpu", "findings")
    assert start in section and end in section
    prose = section[:section.index(start)] + section[section.index(end):]
    typed = re.findall(r"[^.\n]*\d[^.\n]*", NOT_RESULTS.sub("", prose))
    assert not typed, f"numbers typed by hand in the README's analysis: {typed}"


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


def test_findings_block_is_rendered_where_the_readme_has_its_markers(tmp_path):
    text = "<!-- results:smoke -->\n<!-- /results:smoke -->\n<!-- findings:smoke -->\n<!-- /findings:smoke -->\n"
    rendered = readme.blocks("smoke", text)
    assert set(rendered) == {"results", "findings"}
    assert "**05 · Table 2 and Fig. 6**" in rendered["findings"]
    assert set(readme.blocks("smoke", "<!-- results:smoke -->\n<!-- /results:smoke -->")) == {"results"}


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


def test_the_results_block_says_which_commit_made_them_and_what_training_they_rest_on(tmp_path):
    import json

    from mtunet.report.readme import provenance

    assert provenance(tmp_path, "cpu") is None                       # no manifest, no claim
    (tmp_path / "manifest.json").write_text(json.dumps({
        "notebook_commits": {"01": "abcdef0123", "02": "abcdef0123"},
        "notebook_seconds": {"01": 60.0, "02": 120.0}}))
    text = provenance(tmp_path, "cpu")
    assert "commit `abcdef0`" in text and "took 3 min in all" in text
    assert "`training_runs` was not produced" in text and "training_runs.md" not in text


def test_the_results_block_names_the_cpu_types_that_trained_the_runs():
    """Byte-for-byte reruns hold on the CPU type that trained the runs: the block names it, and
    says so when runs came from several types, were resumed on another, or predate the record."""
    import pandas as pd

    from mtunet.report.readme import training_cpu_text

    one = pd.DataFrame({"run_id": ["a", "b", "a"], "trained_on": ["X [1]", "X [1]", "X [1]"]})
    assert "one CPU type, `X [1]`: a cold rerun remakes these numbers byte for byte" in training_cpu_text(one)
    mixed = pd.DataFrame({"run_id": ["a", "b", "c"], "trained_on": ["X [1]", "X [1]; Y [2]", None]})
    text = training_cpu_text(mixed)
    partly = training_cpu_text(pd.DataFrame({"run_id": ["a", "b"], "trained_on": ["X [1]", None]}))
    assert "remakes the numbers resting on those runs byte for byte" in partly
    assert "trained on 2 CPU types (`X [1]`, `Y [2]`)" in text and "byte for byte" in text
    assert "Resumed on another CPU type than they started on: b." in text
    assert "1 of the 3 runs predate the record" in text
    assert "not recorded" in training_cpu_text(pd.DataFrame({"run_id": ["a"]}))
    assert training_cpu_text(None) == ""


def test_a_table_without_reproduced_values_is_one_line_not_an_empty_column(tmp_path):
    import pandas as pd

    from mtunet.report.readme import results_block
    from mtunet.report.tables import write_table

    results = tmp_path / "results" / "demo"
    results.mkdir(parents=True)
    write_table(pd.DataFrame({"network": ["MTUnet"], "grade": ["Mild"], "paper": ["58.44"], "ours": [""],
                              "ours_mean": [float("nan")], "test_set": ["no external graded set"]}),
                results, "table4_grading_external")
    block = results_block("demo", root=tmp_path)
    assert "**Table 4 — ROC AUC per grade (paper: SiDRP14-15)**: no reproduced values in this run. " \
           "Test set: no external graded set." in block
    assert "58.44" not in block                                      # the table is not drawn
