"""Tables beside the paper, and verdicts on the claims."""
from __future__ import annotations

import pandas as pd
import pytest

from mtunet import paper
from mtunet.report.claims import INCONCLUSIVE, NOT_REPRODUCED, NOT_TESTABLE, REPRODUCED, claims_table
from mtunet.report.tables import compare_with_paper, write_table


def _runs(values):
    return pd.DataFrame([{"network": n, "seed": s, "metric": m, "value": v}
                         for (n, m), vs in values.items() for s, v in enumerate(vs)])


def test_compare_keeps_every_paper_row_and_computes_differences():
    ours = _runs({("MTUnet", "red"): [70.0, 72.0, 74.0], ("UNet", "red"): [50.0, 52.0]})
    table = compare_with_paper(ours, paper.table2_frame())
    assert len(table) == len(paper.table2_frame())
    row = table[(table.network == "MTUnet") & (table.metric == "red")].iloc[0]
    assert row.ours_mean == 72.0 and row.ours_std == 2.0 and row.n_runs == 3
    assert row.difference == 72.0 - 75.15 and row.paper == "75.15 ± 0.78"
    missing = table[(table.network == "LinkNet") & (table.metric == "yellow")].iloc[0]
    assert missing.status == "not run" and missing.ours == ""
    undefined = compare_with_paper(_runs({("UNet", "red"): [float("nan")]}), paper.table2_frame())
    assert undefined.set_index(["network", "metric"]).loc[("UNet", "red"), "status"].startswith("undefined")


def test_write_table_writes_csv_and_markdown(tmp_path):
    write_table(pd.DataFrame({"a": [1.234]}), tmp_path, "t", "Title", note="why")
    assert pd.read_csv(tmp_path / "t.csv")["a"].iloc[0] == 1.234
    text = (tmp_path / "t.md").read_text()
    assert "### Title" in text and "1.23" in text and "why" in text


def test_claims_follow_the_numbers(tmp_path):
    seg = _runs({("MTUnet", "red"): [80, 82], ("MTUnet", "yellow"): [60, 62],
                 ("UNet", "red"): [70, 71], ("UNet", "yellow"): [65, 66]})
    write_table(compare_with_paper(seg, paper.table2_frame()), tmp_path, "table2_segmentation")
    pd.DataFrame({"alpha": [0.1, 1.0, 5.0], "dice": [1, 3, 2], "roc": [50, 60, 55]}).to_csv(
        tmp_path / "ablation_alpha.csv", index=False)
    verdicts = claims_table(tmp_path).set_index(pd.Index([c["id"] for c in paper.CLAIMS]))["verdict"]
    assert verdicts["mtunet_best_segmentation"] == NOT_REPRODUCED   # yellow: UNet wins
    assert verdicts["alpha_one_best"] == REPRODUCED
    assert verdicts["variant_c_best"] == NOT_TESTABLE                 # no table 1 written
    assert verdicts["mtunet_best_grading_sidrp"] == NOT_TESTABLE


def test_a_lead_within_the_run_to_run_spread_is_inconclusive(tmp_path):
    def verdict(seg):
        write_table(compare_with_paper(_runs(seg), paper.table2_frame()), tmp_path, "table2_segmentation")
        frame = claims_table(tmp_path).set_index(pd.Index([c["id"] for c in paper.CLAIMS]))
        return frame.loc["mtunet_best_segmentation", "verdict"], frame.loc["mtunet_best_segmentation", "evidence"]

    clear = {("MTUnet", "red"): [80, 82], ("MTUnet", "yellow"): [70, 71],
             ("UNet", "red"): [70, 71], ("UNet", "yellow"): [60, 61]}
    assert verdict(clear)[0] == REPRODUCED
    noisy = {**clear, ("MTUnet", "yellow"): [50, 80]}          # mean 65 > 60.5, std 21
    got, evidence = verdict(noisy)
    assert got == INCONCLUSIVE and "MTUnet 65.00 ± 21.21" in evidence
    behind = {**clear, ("UNet", "red"): [90, 91]}
    assert verdict(behind)[0] == NOT_REPRODUCED


def _claims(folder):
    return claims_table(folder).set_index(pd.Index([c["id"] for c in paper.CLAIMS]))


def test_a_dice_resting_on_a_flood_or_a_collapse_is_not_ranked(tmp_path):
    clear = {("MTUnet", "red"): [80, 82], ("MTUnet", "yellow"): [70, 71],
             ("UNet", "red"): [70, 71], ("UNet", "yellow"): [60, 61],
             ("LinkNet", "red"): [90, 91], ("LinkNet", "yellow"): [40, 41]}

    def claim(areas):
        table = compare_with_paper(_runs(clear), paper.table2_frame())
        table["area_ratio"] = [areas.get((r.network, r.metric), 1.0) for r in table.itertuples()]
        write_table(table, tmp_path, "table2_segmentation")
        return _claims(tmp_path).loc["mtunet_best_segmentation", ["verdict", "evidence"]]

    assert claim({})["verdict"] == NOT_REPRODUCED                       # LinkNet's red is ahead
    flooded_rival = claim({("LinkNet", "red"): 3.2})                    # ... by painting 3.2x the area
    assert flooded_rival["verdict"] == REPRODUCED
    assert "LinkNet (red area 3.2×, a flood)" in flooded_rival["evidence"]
    own_flood = claim({("LinkNet", "red"): 3.2, ("MTUnet", "yellow"): 2.5})
    assert own_flood["verdict"] == INCONCLUSIVE and "MTUnet (yellow area 2.5×, a flood)" in own_flood["evidence"]
    assert "yellow: MTUnet 70.50, UNet 60.50, LinkNet 40.50 — MTUnet not ranked" in own_flood["evidence"]
    lone = claim({("LinkNet", "red"): 3.2, ("UNet", "red"): 0.1})       # nobody sane left on red
    assert lone["verdict"] == INCONCLUSIVE and "no sane network to compare MTUnet with" in lone["evidence"]


def test_table1_and_the_ablations_leave_floods_and_collapses_out(tmp_path):
    rows = [{"network": n, "metric": m, "ours_mean": v, "ours_std": 0.5, "n_runs": 2,
             "red_area_ratio": red if m == "dice" else None, "yellow_area_ratio": 1.0 if m == "dice" else None}
            for n, dice, roc, red in (("Variant A", 5, 60, 0.01), ("Variant B", 20, 61, 1.0),
                                      ("Variant C", 30, 70, 1.1))
            for m, v in (("dice", dice), ("roc", roc))]
    write_table(pd.DataFrame(rows), tmp_path, "table1_variants")
    frame = _claims(tmp_path)
    assert frame.loc["variant_c_best", "verdict"] == REPRODUCED
    assert "Variant A (red area 0.01×, a collapse)" in frame.loc["variant_c_best", "evidence"]

    loss = pd.DataFrame({"seg_loss": ["bce", "dice_focal"], "dice": [0.5, 30.0], "n_runs": [2, 2],
                         "red_area_ratio": [0.001, 1.2], "yellow_area_ratio": [0.8, 1.1]})
    write_table(loss, tmp_path, "ablation_loss")
    verdict, evidence = _claims(tmp_path).loc["dice_losses_worse", ["verdict", "evidence"]]
    assert verdict == INCONCLUSIVE and "loss bce (red area 0.001×, a collapse)" in evidence
    write_table(loss.assign(red_area_ratio=[0.9, 1.2]), tmp_path, "ablation_loss")
    assert _claims(tmp_path).loc["dice_losses_worse", "verdict"] == NOT_REPRODUCED

    alpha = pd.DataFrame({"alpha": [0.1, 1.0, 5.0], "dice": [40.0, 30.0, 20.0], "roc": [50, 60, 55],
                          "n_runs": [2, 2, 2], "red_area_ratio": [4.0, 1.0, 1.0], "yellow_area_ratio": 1.0})
    write_table(alpha, tmp_path, "ablation_alpha")
    verdict, evidence = _claims(tmp_path).loc["alpha_one_best", ["verdict", "evidence"]]
    assert verdict == REPRODUCED and "alpha = 0.1 (red area 4×, a flood)" in evidence


def test_the_linknet_t_test_is_not_read_where_either_network_floods(tmp_path):
    # one-sided "MTUnet better": p = 0.99 on red is LinkNet ahead beyond noise (its own p 0.01)
    tests = pd.DataFrame({"baseline": ["LinkNet", "LinkNet"], "group": ["red", "yellow"],
                          "mean_difference": [-3.0, 2.0], "pvalue": [0.99, 0.01], "n": [27, 27],
                          "pairing": ["images", "images"], "alternative": ["greater", "greater"]})
    write_table(tests, tmp_path, "ttests")
    assert _claims(tmp_path).loc["mtunet_vs_linknet_significant", "verdict"] == NOT_REPRODUCED
    table = compare_with_paper(_runs({("MTUnet", "red"): [10, 11], ("LinkNet", "red"): [20, 21]}),
                               paper.table2_frame())
    table["area_ratio"] = [5.0 if (r.network, r.metric) == ("MTUnet", "red") else 1.0 for r in table.itertuples()]
    write_table(table, tmp_path, "table2_segmentation")
    verdict, evidence = _claims(tmp_path).loc["mtunet_vs_linknet_significant", ["verdict", "evidence"]]
    assert verdict == INCONCLUSIVE and "MTUnet (red area 5×, a flood)" in evidence


def test_a_linknet_lead_inside_the_noise_leaves_the_t_test_claim_inconclusive(tmp_path):
    def verdict(alternative, pvalue):
        tests = pd.DataFrame({"baseline": ["LinkNet"] * 2, "group": ["red", "yellow"],
                              "mean_difference": [-0.5, 2.0], "pvalue": [pvalue, 0.01], "n": [27, 27],
                              "pairing": ["images"] * 2, "alternative": [alternative] * 2})
        write_table(tests, tmp_path, "ttests")
        return _claims(tmp_path).loc["mtunet_vs_linknet_significant", "verdict"]

    assert verdict("greater", 0.7) == INCONCLUSIVE       # LinkNet's own one-sided p: 0.3
    assert verdict("greater", 0.95) == NOT_REPRODUCED    # LinkNet's own p: 0.05
    assert verdict("two-sided", 0.6) == INCONCLUSIVE
    assert verdict("two-sided", 0.05) == NOT_REPRODUCED


# --- Tables 3 and 4: intervals, kappa, one-class graders; the grading claims ----------------------

def _evaluations(strengths, n=200, seeds=(0,), test="table3_test", seed=0):
    """{(model, seed, test): GradingEval} with predictions of the given strength per model
    (None: a grader that predicts grade 0 for every image)."""
    import numpy as np

    from mtunet.evaluate import GradingEval
    from mtunet.metrics import roc_auc_per_grade

    rng = np.random.default_rng(seed)
    y = np.arange(n) % 5
    out = {}
    for model, strength in strengths.items():
        for s in seeds:
            if strength is None:
                logits = rng.normal(0, 0.1, (n, 5)) + 5.0 * np.eye(5)[np.zeros(n, int)]
                logits[:, 1:] += 0.3 * np.eye(5)[y][:, 1:]
            else:
                logits = rng.normal(0, 1, (n, 5)) + strength * np.eye(5)[y]
            prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
            out[(model, s, test)] = GradingEval([f"i{i}" for i in range(n)], y, prob, roc_auc_per_grade(y, prob))
    return out


def _grading_table(evaluations, test="table3_test"):
    from mtunet.study.tables3_4_grading import grading_rows, grading_table
    from mtunet.models.registry import label

    scores = pd.DataFrame([row for (model, seed, name), ev in evaluations.items() if name == test
                           for row in grading_rows(label(model), seed, ev)])
    models = sorted({m for m, _, _ in evaluations})
    return grading_table(scores, evaluations, test, paper.table3_frame(), models)


def test_grading_table_carries_intervals_positives_kappa_and_flags():
    evaluations = _evaluations({"mtunet": 2.0, "densenet201": 1.0, "resnext101": None}, seeds=(0, 1))
    table = _grading_table(evaluations).set_index(["network", "grade"])
    row = table.loc[("MTUnet", "Mild")]
    assert row.ci_low < row.ours_mean < row.ci_high and row.n_positive == 40 and row.n_test == 200
    assert row.ours.startswith(f"{row.ours_mean:.2f} ± ") and row.ours.endswith(f"[{row.ci_low:.2f}, {row.ci_high:.2f}]")
    assert row.n_runs == 2 and 0 < row.kappa <= 1 and not row.one_class
    assert table.loc[("ResNeXt-101", "Mild"), "one_class"]
    assert table.loc[("MTUnet", "Mild"), "accuracy"] > table.loc[("DenseNet-201", "Mild"), "accuracy"]
    unrun = table.loc[("InceptionResNetV2", "Mild")]
    assert unrun.status == "not run" and unrun.ours == ""


def test_grading_summary_and_table1_intervals():
    from mtunet.study.grading_intervals import mean_auc_intervals
    from mtunet.study.tables3_4_grading import grading_summary, runs_of

    evaluations = _evaluations({"mtunet": 2.0, "resnext101": None})
    summary = grading_summary(evaluations, "table3_test").set_index("network")
    assert summary.loc["ResNeXt-101", "one_class"] and summary.loc["ResNeXt-101", "predicted_grades"] == 1
    m = summary.loc["MTUnet"]
    assert m.mean_auc_low < m.mean_auc < m.mean_auc_high and m.kappa_low < m.kappa < m.kappa_high
    assert m.accuracy_low < m.accuracy < m.accuracy_high and not m.one_class
    runs = {"Variant C": runs_of(_evaluations({"mtunet": 2.0}, seeds=(0, 1)), "table3_test")["mtunet"]}
    frame = mean_auc_intervals(runs)
    assert list(frame.columns) == ["network", "metric", "ci_low", "ci_high", "n_test"]
    assert frame.iloc[0].metric == "roc" and frame.iloc[0].ci_low < frame.iloc[0].ci_high


def _claim(tmp_path, claim_id):
    frame = claims_table(tmp_path).set_index(pd.Index([c["id"] for c in paper.CLAIMS]))
    return frame.loc[claim_id, "verdict"], frame.loc[claim_id, "evidence"]


def _write_grading(tmp_path, strengths, name="table3_grading_internal", stand_in=True, **kwargs):
    table = _grading_table(_evaluations(strengths, **kwargs))
    table["test_set"] = "table3_test (stand-in for IDRiD-D): Messidor-2 (France)"
    table["stand_in"] = stand_in
    write_table(table, tmp_path, name)


def test_grading_claims_use_the_intervals(tmp_path):
    _write_grading(tmp_path, {"mtunet": 4.0, "densenet201": 0.5, "nasnet_mobile": 0.3}, n=400)
    verdict, evidence = _claim(tmp_path, "mtunet_best_grading_idrid")
    assert verdict == REPRODUCED
    assert evidence.startswith("tested on a stand-in for IDRiD-D, not on IDRiD-D itself")
    assert "Messidor-2" in evidence and "80 positives" in evidence
    _write_grading(tmp_path, {"mtunet": 1.0, "densenet201": 1.05}, n=100)    # close: overlap
    verdict, evidence = _claim(tmp_path, "mtunet_best_grading_idrid")
    assert verdict == INCONCLUSIVE and "overlaps" in evidence
    _write_grading(tmp_path, {"mtunet": 0.3, "densenet201": 4.0}, n=400)     # clearly behind
    assert _claim(tmp_path, "mtunet_best_grading_idrid")[0] == NOT_REPRODUCED
    _write_grading(tmp_path, {"mtunet": 4.0, "densenet201": 0.3}, n=400, stand_in=False)
    assert _claim(tmp_path, "mtunet_best_grading_idrid")[1].startswith("tested on IDRiD-D")


def test_one_class_graders_are_not_ranked(tmp_path):
    _write_grading(tmp_path, {"mtunet": 4.0, "densenet201": 0.5, "resnext101": None}, n=400)
    verdict, evidence = _claim(tmp_path, "mtunet_best_grading_idrid")
    assert verdict == REPRODUCED and "not ranked (predict one grade for every image): ResNeXt-101" in evidence
    _write_grading(tmp_path, {"mtunet": None, "densenet201": 0.5}, n=400)
    verdict, evidence = _claim(tmp_path, "mtunet_best_grading_idrid")
    assert verdict == INCONCLUSIVE and "MTUnet predicts one grade for every image" in evidence


def test_table4_claim(tmp_path):
    assert _claim(tmp_path, "mtunet_best_grading_sidrp")[0] == NOT_TESTABLE
    _write_grading(tmp_path, {"mtunet": 4.0, "densenet201": 0.3}, name="table4_grading_external", n=400)
    verdict, evidence = _claim(tmp_path, "mtunet_best_grading_sidrp")
    assert verdict == REPRODUCED and evidence.startswith("tested on a stand-in for SiDRP14-15")


def test_interval_cell():
    from mtunet.report.tables import interval_cell

    assert interval_cell(72.1, 3.0, 65.04, 79.2) == "72.10 ± 3.00 [65.04, 79.20]"
    assert interval_cell(72.1, float("nan"), 65.0, 79.2) == "72.10 [65.00, 79.20]"
    assert interval_cell(72.1, 3.0, float("nan"), float("nan")) == "72.10 ± 3.00"
    assert interval_cell(float("nan"), float("nan"), 1.0, 2.0) == ""


def test_the_manifest_calls_a_checkout_dirty_for_code_changes_not_for_results(tmp_path):
    import subprocess

    from mtunet.report.manifest import git_commit

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path,
                       check=True, capture_output=True)

    git("init", "-q")
    for name in ("lib/code.py", "results/cpu/table.csv", "figures/cpu/fig.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("1")
    git("add", ".")
    git("commit", "-qm", "start")
    assert git_commit(tmp_path)["dirty"] is False
    (tmp_path / "results/cpu/table.csv").write_text("2")
    (tmp_path / "figures/cpu/fig.png").write_text("2")
    assert git_commit(tmp_path)["dirty"] is False
    (tmp_path / "lib/code.py").write_text("2")
    assert git_commit(tmp_path)["dirty"] is True


def test_the_kaggle_claim_is_decided_on_the_label_pool(tmp_path):
    assert _claims(tmp_path).loc["kaggle_1914_per_grade", "verdict"] == NOT_TESTABLE
    def pool(counts):
        write_table(pd.DataFrame({"grade": range(5), "pooled": counts,
                                  "balanced": [min(c, counts[4]) for c in counts]}),
                    tmp_path, "kaggle_label_pool")
        return _claims(tmp_path).loc["kaggle_1914_per_grade"]

    row = pool([65343, 6205, 13153, 2087, 1914])
    assert row.verdict == REPRODUCED and "grade 4 has 1,914" in row.evidence
    assert pool([65343, 6205, 13153, 2087, 1915]).verdict == NOT_REPRODUCED   # another count
    assert pool([65343, 6205, 13153, 1000, 1914]).verdict == NOT_REPRODUCED   # grade 3 rarer



@pytest.mark.realdata
def test_the_kaggle_label_pool_of_the_real_files(real_data_dir):
    from mtunet.study.datasets import kaggle_label_files, kaggle_label_pool

    if kaggle_label_files(real_data_dir) is None:
        pytest.skip(f"Kaggle trainLabels.csv or the test solution not under {real_data_dir}")
    table = kaggle_label_pool(real_data_dir).set_index("grade")
    assert int(table["pooled"].sum()) == 88702 and int(table.loc[4, "pooled"]) == 1914
    assert (table["balanced"] == 1914).all()
