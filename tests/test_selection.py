"""Loss selection on a validation split of IDRiD-S train (mtunet.selection)."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mtunet import selection
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


def test_area_ratio_tells_a_flood_from_a_collapse():
    truth = np.zeros((1, 8, 8), np.uint8)
    truth[0, :2, :2] = 2                                 # 4 HE pixels
    flood = np.full_like(truth, 1)                        # 64 MA pixels
    assert selection.area_ratio(flood, truth, "red") == 16.0
    assert selection.area_ratio(np.zeros_like(truth), truth, "red") == 0.0
    assert np.isnan(selection.area_ratio(flood, truth, "yellow"))


def test_parse_candidates():
    assert selection.parse_candidates("bce:8, dice:16:1e-3") == [("bce", 8), ("dice", 16, 1e-3)]
    for bad in ("focal:8", "bce", "bce:0", "", "dice:8:x", "dice:8:0", "dice:8:1e-3:2"):
        with pytest.raises(argparse.ArgumentTypeError):
            selection.parse_candidates(bad)


def test_selection_on_synthetic_data_writes_the_table(synthetic_root, tmp_path):
    code = selection.main(["--data-dir", str(synthetic_root), "--out", str(tmp_path / "res"),
                           "--runs-dir", str(tmp_path / "runs"), "--candidates", "bce:1,dice:1:1e-3",
                           "--image-size", "32", "--val-images", "2", "--encoder-weights", "random"])
    assert code == 0
    table = pd.read_csv(tmp_path / "res" / "loss_selection.csv")
    assert list(table["seg_loss"]) == ["bce", "dice"] and table["chosen"].sum() == 1
    assert list(table["optimiser"]) == ["Adam 0.0001", "Adam 0.001"]
    assert table.loc[table["chosen"], "mean_dice"].item() == table["mean_dice"].max()
    assert "scored on the other 2" in (tmp_path / "res" / "loss_selection.md").read_text()


def test_selection_refuses_a_missing_data_folder(tmp_path, capsys):
    assert selection.main(["--data-dir", str(tmp_path / "nowhere")]) == 2
    assert "nowhere: no such data folder" in capsys.readouterr().err
