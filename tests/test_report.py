"""Tables beside the paper, and verdicts on the claims."""
from __future__ import annotations

import pandas as pd

from mtunet import paper
from mtunet.claims import INCONCLUSIVE, NOT_REPRODUCED, NOT_TESTABLE, REPRODUCED, claims_table
from mtunet.report import compare_with_paper, write_table


def _runs(values):
    return pd.DataFrame([{"network": n, "seed": s, "metric": m, "value": v}
                         for (n, m), vs in values.items() for s, v in enumerate(vs)])


def test_compare_keeps_every_paper_row_and_computes_differences():
    ours = _runs({("MTUNet", "red"): [70.0, 72.0, 74.0], ("UNet", "red"): [50.0, 52.0]})
    table = compare_with_paper(ours, paper.table2_frame())
    assert len(table) == len(paper.table2_frame())
    row = table[(table.network == "MTUNet") & (table.metric == "red")].iloc[0]
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
    seg = _runs({("MTUNet", "red"): [80, 82], ("MTUNet", "yellow"): [60, 62],
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

    clear = {("MTUNet", "red"): [80, 82], ("MTUNet", "yellow"): [70, 71],
             ("UNet", "red"): [70, 71], ("UNet", "yellow"): [60, 61]}
    assert verdict(clear)[0] == REPRODUCED
    noisy = {**clear, ("MTUNet", "yellow"): [50, 80]}          # mean 65 > 60.5, std 21
    got, evidence = verdict(noisy)
    assert got == INCONCLUSIVE and "MTUNet 65.00 ± 21.21" in evidence
    behind = {**clear, ("UNet", "red"): [90, 91]}
    assert verdict(behind)[0] == NOT_REPRODUCED
