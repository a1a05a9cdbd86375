"""Loss selection on a validation split of IDRiD-S train (mtunet.selection)."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mtunet.cli import main
from mtunet.study import loss_selection as selection
from mtunet.data.records import Record
from mtunet.errors import UserError


def _records(n):
    return [Record(f"IDRiD_{i:02d}", Path(f"/x/IDRiD_{i:02d}.jpg"), None, has_masks=True) for i in range(n)]


def test_validation_split_is_seeded_disjoint_and_order_free():
    records = _records(12)
    fit, val = selection.validation_split(records, 3)
    assert len(fit) == 9 and len(val) == 3
    assert not {r.image_id for r in fit} & {r.image_id for r in val}
    again = selection.validation_split(list(reversed(records)), 3)
    assert [r.image_id for r in again[1]] == [r.image_id for r in val]
    assert [r.image_id for r in selection.validation_split(records, 3, seed=1)[1]] != \
        [r.image_id for r in val]
    with pytest.raises(UserError, match="between 1 and 11"):
        selection.validation_split(records, 12)


def test_the_rule_never_picks_a_flood_or_a_collapse():
    table = pd.DataFrame({"mean_dice": [40.0, 30.0, 20.0, 10.0],
                          "red_area_ratio": [28.0, 1.2, 0.9, 0.05],      # flood, ok, ok, collapse
                          "yellow_area_ratio": [1.0, 2.5, 1.0, 1.0]})
    assert selection.choose(table) == [False, True, False, False]
    table["red_area_ratio"] = [28.0, 3.5, 0.2, 0.05]
    assert not selection.eligible(table).any()
    # the fallback: nearest the band, whatever the Dice (3.5 is nearer 3 than 0.2 is to 1/3)
    assert selection.choose(table) == [False, True, False, False]
    table["red_area_ratio"] = [0.0, 0.0, 0.0, 0.0]
    assert selection.choose(table) == [False] * 4                       # all collapse: none


def test_distance_to_the_bounds_is_zero_inside_and_logarithmic_outside():
    table = pd.DataFrame({"red_area_ratio": [1.0, 6.0, 1 / 6, 0.0], "yellow_area_ratio": [2.0, 1.0, 1.0, 1.0]})
    distance = selection.distance_to_bounds(table)
    assert distance[0] == 0 and distance[1] == pytest.approx(np.log(2)) == pytest.approx(distance[2])
    assert np.isinf(distance[3])


def test_parse_candidates():
    assert selection.parse_candidates("bce:8, dice:16:1e-3") == [("bce", 8), ("dice", 16, 1e-3)]
    for bad in ("nosuch:8", "bce", "bce:0", "", "dice:8:x", "dice:8:0", "dice:8:1e-3:2"):
        with pytest.raises(argparse.ArgumentTypeError):
            selection.parse_candidates(bad)


def test_selection_on_synthetic_data_writes_the_table(synthetic_root, tmp_path):
    from mtunet.report.executions import read_rows

    code = main(["select-loss", "--profile", "smoke", "--data-dir", str(synthetic_root),
                 "--out", str(tmp_path / "res"), "--runs-dir", str(tmp_path / "runs"),
                 "--candidates", "bce:1,dice:1:1e-3", "--set", "image_size=32", "--set", "patch_size=32",
                 "--set", "encoder_weights=random", "--val-images", "2"])
    assert code == 0
    table = pd.read_csv(tmp_path / "res" / "loss_selection.csv")
    assert list(table["seg_loss"]) == ["bce", "dice"] and table["chosen"].sum() <= 1
    assert list(table["optimiser"]) == ["Adam 0.0001", "Adam 0.001"]
    assert table["chosen"].tolist() == selection.choose(table)
    note = (tmp_path / "res" / "loss_selection.md").read_text()
    assert "scored at the masks' own size on the other 2" in note and "[0.33, 3]" in note
    rows = read_rows(tmp_path / "runs" / "executions.csv")      # its time joins the profile's total
    assert [(r["notebook"], r["outcome"]) for r in rows] == [("select-loss", "done")]


def test_selection_refuses_a_missing_data_folder(tmp_path, capsys):
    assert main(["select-loss", "--data-dir", str(tmp_path / "nowhere")]) == 2
    assert "nowhere: data folder not found" in capsys.readouterr().err


def test_selection_refuses_an_unknown_parameter(capsys):
    with pytest.raises(SystemExit):
        main(["select-loss", "--set", "image_sise=32"])
    assert "image_sise=32" in capsys.readouterr().err


def test_the_command_line_builds_without_the_backend_and_parses_the_default_candidates(synthetic_root):
    """`data check` and `--help` stay quick: building the parser imports no Keras (the loss
    names are only checked when select-loss runs), and select-loss still gets parsed defaults."""
    import subprocess
    import sys

    code = ("import sys; from mtunet.cli import main; "
            f"main(['data', 'check', {str(synthetic_root / 'IDRiD')!r}]); "
            "sys.exit(10 + int('keras' in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 10
    from mtunet.cli import build_parser
    from mtunet.commands.select_loss import DEFAULT_CANDIDATES
    from mtunet.study.loss_selection import parse_candidates

    args = build_parser().parse_args(["select-loss"])
    assert args.candidates == parse_candidates(DEFAULT_CANDIDATES) and len(args.candidates) > 1
