"""The real datasets (skipped when absent): counts from the SOURCE.md files, mask formats, splits."""
from __future__ import annotations

import collections
import csv

import numpy as np
import pytest

from mtunet.cli import main
from mtunet.data import balanced_downsample, read_eyepacs, read_grading, read_segmentation, split_by_patient
from mtunet.data.preprocess import prepare_example, read_mask

pytestmark = pytest.mark.realdata

COUNTS = {"train": {"images": 54, "MA": 54, "HE": 53, "EX": 54, "SE": 26, "OD": 54},
          "test": {"images": 27, "MA": 27, "HE": 27, "EX": 27, "SE": 14, "OD": 27}}
GT = "A. Segmentation/2. All Segmentation Groundtruths"


def test_segmentation_counts(real_idrid_dir):
    recs = read_segmentation(real_idrid_dir)
    for split, want in COUNTS.items():
        rs = [r for r in recs if r.split == split]
        got = {"images": len(rs), **{c: sum(c in r.masks for r in rs) for c in ("MA", "HE", "EX", "SE", "OD")}}
        assert got == want


def test_check_cli(real_idrid_dir, capsys):
    assert main(["data", "check", str(real_idrid_dir)]) == 0
    out = capsys.readouterr().out
    assert "81 images (54 train/27 test), 363 masks" in out
    assert "missing images: 516" in out


def test_grading_labels(real_idrid_dir):
    gs = read_grading(real_idrid_dir)
    assert gs.n_labels == 516
    assert gs.grade_counts == {"train": [134, 20, 136, 74, 49], "test": [34, 5, 32, 19, 13]}


def _manifest(real_idrid_dir):
    with open(real_idrid_dir / "STAGING_MANIFEST_A_Segmentation.csv", newline="") as f:
        return {row["file"]: row for row in csv.DictReader(f)}


@pytest.mark.parametrize("rel", ["b. Testing Set/3. Hard Exudates/IDRiD_81_EX.tif",
                                 "a. Training Set/1. Microaneurysms/IDRiD_01_MA.tif"])
def test_real_mask_round_trip(real_idrid_dir, rel):
    path = real_idrid_dir / GT / rel
    mask = read_mask(path)
    assert mask.dtype == bool and mask.shape == (680, 1024)
    manifest = _manifest(real_idrid_dir)
    if path.name in manifest:
        assert int(mask.sum()) == int(manifest[path.name]["dst_pos"])
    else:
        assert mask.any()


def test_real_microaneurysms_survive_at_64(real_idrid_dir):
    rec = read_segmentation(real_idrid_dir)[0]
    image, label = prepare_example(rec, 64)
    assert image.shape == (64, 64, 3) and (label == 1).any()


def test_eyepacs_subset(real_eyepacs_dir):
    es = read_eyepacs(real_eyepacs_dir)
    assert len(es.records) == 130 and es.n_labels == 35126 and es.n_missing == 35126 - 130
    assert collections.Counter(r.grade for r in es.records) == {0: 50, 1: 20, 2: 20, 3: 20, 4: 20}
    split = split_by_patient(es.records, test_fraction=0.3, seed=0)
    sides = collections.defaultdict(set)
    for r in split:
        sides[r.patient_id].add(r.split)
    assert all(len(s) == 1 for s in sides.values())
    assert 0.2 < np.mean([r.split == "test" for r in split]) < 0.4
    bal = balanced_downsample(es.records, seed=0)
    assert collections.Counter(r.grade for r in bal) == {g: 20 for g in range(5)}
