"""Each notebook's "What we found": rendered from its own tables, with the study's rules applied."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from mtunet.config import project_root
from mtunet.report import findings
from mtunet.report.tables import read_table, write_table

SMOKE = project_root() / "results" / "smoke"


@pytest.mark.parametrize("notebook", sorted(findings.NOTEBOOKS))
def test_every_notebook_renders_from_the_smoke_results(notebook):
    text = findings.markdown(notebook, SMOKE)
    assert text.startswith(findings.HEADING)
    bullets = [line for line in text.splitlines() if line.startswith("- ")]
    assert bullets, text
    assert "nan" not in text.lower().replace("nanmean", ""), text
    assert "was not produced" not in text, text


def test_numbers_are_the_tables_numbers():
    seed = read_table(SMOKE, "seed_segmenter").set_index("group")
    text = findings.markdown("02", SMOKE)
    assert f"red {seed.at['red', 'dice_pooled']:.1f} %" in text
    assert f"yellow {seed.at['yellow', 'dice_pooled']:.1f} %" in text
    table2 = read_table(SMOKE, "table2_segmentation")
    row = table2[(table2["network"] == "MTUnet") & (table2["metric"] == "red")].iloc[0]
    text = findings.markdown("05", SMOKE)
    assert f"MTUnet {row.ours_mean:.1f} ± {row.ours_std:.1f} %" in text
    assert f"[{row.ci_low:.1f}, {row.ci_high:.1f}]" in text


@pytest.mark.parametrize("ratio,word", [(4.7, "a flood"), (2.01, "a flood"), (2.0, ""), (1.0, ""),
                                        (0.5, ""), (0.49, "a collapse"), (0.0, "a collapse"),
                                        (float("nan"), "")])
def test_area_ratio_outside_half_to_double_is_called_a_flood_or_a_collapse(ratio, word):
    caveat = findings.area_caveat(ratio)
    assert caveat.startswith(word) if word else caveat == ""
    assert (word in findings.dice_with_area(12.0, ratio)) if word else "flood" not in findings.dice_with_area(12.0, ratio)


def test_a_missing_table_is_said_not_guessed(tmp_path):
    for notebook in findings.NOTEBOOKS:
        text = findings.markdown(notebook, tmp_path)
        if notebook != "07":
            assert "was not produced" in text, (notebook, text)


def test_one_class_graders_are_named_and_not_ranked(tmp_path):
    rows = [{"network": n, "seed": 0, "test_set": "table3_test", "n_test": 300, "mean_auc": auc,
             "mean_auc_low": auc - 5, "mean_auc_high": auc + 5, "kappa": 0.1, "accuracy": 30.0,
             "one_class": one} for n, auc, one in (("A", 80.0, True), ("B", 60.0, False))]
    write_table(pd.DataFrame(rows), tmp_path, "grading_summary")
    text = findings.markdown("06", tmp_path)
    assert "table3_test, 300 images" in text and "A 80.0 [75.0, 85.0]" in text
    flagged = [line for line in text.splitlines() if "AUC not ranked" in line]
    assert len(flagged) == 1 and ": A." in flagged[0] and "B" not in flagged[0]


def test_the_plain_recipe_says_whether_a_test_set_can_rank_the_graders(tmp_path):
    """The probe's interval above chance: graders at chance failed; holding chance: no ranking."""
    from mtunet.study.grading_probe import PROBE

    rows = [{"network": n, "seed": 0, "test_set": test_set, "n_test": 300, "mean_auc": auc,
             "mean_auc_low": auc - 6, "mean_auc_high": auc + 6, "kappa": 0.1, "accuracy": 30.0,
             "one_class": False}
            for test_set, probe_auc in (("grade_test", 73.0), ("table3_test", 48.0))
            for n, auc in (("MTUnet", 51.0), (PROBE, probe_auc))]
    write_table(pd.DataFrame(rows), tmp_path, "grading_summary")
    lines = findings.findings("06", tmp_path)
    learnable = next(line for line in lines if line.startswith("On grade_test the plain recipe"))
    assert "beats chance, 73.0 [67.0, 79.0]" in learnable and "failed to learn" in learnable
    unlearnable = next(line for line in lines if line.startswith("On table3_test even the plain recipe"))
    assert "48.0 [42.0, 54.0]" in unlearnable and "neither for nor against" in unlearnable


def test_pseudo_masks_that_grow_with_the_grade_are_said_to_follow_it(tmp_path):
    rng = np.random.default_rng(0)
    grades = np.repeat(np.arange(5), 12)
    red = np.where(grades > 0, grades * 0.1 + rng.normal(0, 0.02, grades.size), 0.0)
    frame = pd.DataFrame({"image_id": [f"i{k}" for k in range(grades.size)], "grade": grades,
                          "suppressed_grade0": grades == 0, "MA_fraction": red / 2,
                          "HE_fraction": red / 2, "EX_fraction": rng.uniform(0, 1, grades.size),
                          "SE_fraction": 0.0})
    write_table(frame, tmp_path, "pseudo_labels")
    text = findings.markdown("03", tmp_path)
    red_line = next(line for line in text.splitlines() if "red-lesion area" in line)
    yellow_line = next(line for line in text.splitlines() if "yellow-lesion area" in line)
    assert "rises with the grade" in red_line and "48 images of grades 1–4" in red_line
    assert "does not follow the grade measurably" in yellow_line
    assert "12 grade-0 images are emptied" in text


def test_pseudo_mask_areas_are_the_by_grade_table_in_percent():
    by_grade = read_table(SMOKE, "pseudo_labels_by_grade").set_index("grade")
    text = findings.markdown("03", SMOKE)
    for group, lesions in (("red", ("MA", "HE")), ("yellow", ("EX", "SE"))):
        line = next(line for line in text.splitlines() if f"{group}-lesion area" in line)
        for grade in (1, 4):
            area = sum(by_grade.at[grade, f"{lesion}_fraction"] for lesion in lesions)
            assert f"{grade}: {area:.2f}" in line, (group, grade, area, line)


def test_verdicts_come_from_the_claims_module():
    from mtunet.report.claims import CHECKS

    verdict, _ = CHECKS["variant_c_best"](SMOKE)
    assert f"**{verdict}**" in findings.markdown("04", SMOKE)
    tally = re.search(r"Over the paper's (\d+) claims", findings.markdown("07", SMOKE))
    assert tally and int(tally.group(1)) == len(CHECKS)


def test_unknown_notebook_is_an_error():
    with pytest.raises(KeyError, match="no findings for notebook '09'"):
        findings.findings("09", SMOKE)


def test_a_loss_chosen_by_the_fallback_is_said_so(tmp_path):
    rows = [{"seg_loss": loss, "epochs": 4, "optimiser": "Adam 0.001", "red_dice": red, "yellow_dice": 40.0,
             "mean_dice": (red + 40.0) / 2, "red_area_ratio": ratio, "yellow_area_ratio": 3.25,
             "eligible": False, "chosen": chosen}
            for loss, red, ratio, chosen in (("dice_focal", 15.0, 0.65, True), ("bce", 0.0, 0.0, False))]
    write_table(pd.DataFrame(rows), tmp_path, "loss_selection")
    text = findings.markdown("02", tmp_path)
    assert "no candidate met the rule" in text and "**dice_focal** chosen" in text
    assert "bce (4 epochs, Adam 0.001; red area 0×, a collapse; yellow area 3.2×, a flood)" in text


def test_the_training_cost_counts_shared_runs_once_and_names_the_resumed(tmp_path):
    rows = [("04", "a", 30.0, True, True), ("06", "a", 30.0, True, True),     # one run, two notebooks
            ("05", "b", 60.0, True, np.nan), ("05", "c", 30.0, False, np.nan)]
    write_table(pd.DataFrame(rows, columns=["notebook", "run_id", "train_minutes", "resumed", "resume_exact"])
                .assign(dtype_policy="mixed_bfloat16"), tmp_path, "training_runs")
    text = findings.training_cost(tmp_path)
    assert text.startswith("The study rests on 3 training runs, 2.0 h of training epochs (mixed_bfloat16; "
                           "by the notebook that first trains them: 04 30.0 min, 05 1.5 h)")
    assert "2 were interrupted and resumed from a checkpoint, 1 of them known to be bit for bit" in text
    assert "was not produced" in findings.training_cost(tmp_path / "nowhere")


def test_the_training_cost_says_whether_every_run_was_trained_by_todays_training_code(tmp_path):
    base = pd.DataFrame([("04", "a", 30.0, False, np.nan), ("05", "b", 60.0, False, np.nan)],
                        columns=["notebook", "run_id", "train_minutes", "resumed", "resume_exact"]
                        ).assign(dtype_policy="float32")
    write_table(base, tmp_path, "training_runs")
    assert "not recorded" in findings.training_cost(tmp_path)
    write_table(base.assign(trained_by=["abc1234", "def5678"], training_code="f00",
                            same_training_code=[True, True]), tmp_path, "training_runs")
    text = findings.training_cost(tmp_path)
    assert "Every run was trained by the training code of the commit that made these results" in text
    assert "`abc1234`, `def5678`" in text
    write_table(base.assign(trained_by="abc1234", training_code=["f00", "ba5"],
                            same_training_code=[True, False]), tmp_path, "training_runs")
    assert "1 of them were trained by other training code than the commit that made these results: b" \
        in findings.training_cost(tmp_path)


def test_every_dice_in_table1_and_fig6_comes_with_its_area_ratios(tmp_path):
    """Sane ratios are shown too, not only the floods and collapses."""
    rows = [{"network": "Variant C", "metric": "dice", "ours_mean": 40.0, "ours_std": 2.0, "n_runs": 2,
             "red_area_ratio": 0.97, "yellow_area_ratio": 3.2},
            {"network": "Variant C", "metric": "roc", "ours_mean": 70.0, "ours_std": 1.0, "n_runs": 2}]
    write_table(pd.DataFrame(rows), tmp_path, "table1_variants")
    fig6 = [{"encoder": "VGG16", "seed": 0, "metric": m, "value": v}
            for m, v in (("red", 20.0), ("red_area_ratio", 0.8), ("yellow", 50.0))]
    write_table(pd.DataFrame(fig6), tmp_path, "fig6_encoders")
    text = findings.markdown("04", tmp_path)
    assert "Variant C: Dice 40.0 ± 2.0 % (red area 0.97×, yellow area 3.2× (a flood)), ROC AUC" in text
    write_table(pd.DataFrame([{"network": "UNet", "metric": "red", "ours_mean": 20.0, "ours_std": 1.0,
                               "area_ratio": 0.8}]), tmp_path, "table2_segmentation")
    assert "VGG16 20.0 % (area 0.8×)" in findings.markdown("05", tmp_path)
