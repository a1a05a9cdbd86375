from __future__ import annotations

import collections
from dataclasses import replace

import pytest

from conftest import SYNTH
from mtunet.data import (balanced_downsample, detect_layout, load_data_root, read_eyepacs, read_grading,
                         read_segmentation, split_by_patient)
from mtunet.data.records import Record
from mtunet.errors import DataError


def test_read_segmentation(synthetic_root):
    recs = read_segmentation(synthetic_root / "IDRiD")
    assert len(recs) == SYNTH["n_seg"]
    splits = collections.Counter(r.split for r in recs)
    assert splits == {"train": 8, "test": 4}
    assert [r.image_id for r in recs][:2] == ["IDRiD_01", "IDRiD_02"]
    for r in recs:
        assert r.grade is None and r.has_masks and r.source == "idrid-segmentation"
        assert r.patient_id == r.image_id and r.image_path.is_file()
        assert "MA" in r.masks and "OD" in r.masks
        assert all(p.name == f"{r.image_id}_{c}.tif" for c, p in r.masks.items())
    # as in IDRiD, some images have no soft exudates: the key is absent
    assert any("SE" not in r.masks for r in recs)
    # the "A. Segmentation" folder itself is accepted too
    assert len(read_segmentation(synthetic_root / "IDRiD" / "A. Segmentation")) == len(recs)


def test_read_grading(synthetic_root):
    gs = read_grading(synthetic_root / "IDRiD")
    assert gs.n_labels == SYNTH["n_grading"] and len(gs.records) == gs.n_labels and gs.missing == []
    assert {r.split for r in gs.records} == {"train", "test"}
    assert all(r.grade in range(5) and not r.has_masks and r.source == "idrid-grading" for r in gs.records)
    assert gs.records[0].image_id == "IDRiD_001"
    assert len({r.key for r in gs.records}) == len(gs.records)


def test_read_grading_missing_images(synthetic_copy):
    root = synthetic_copy / "IDRiD"
    img = root / "B. Disease Grading/1. Original Images/a. Training Set/IDRiD_001.jpg"
    img.unlink()
    gs = read_grading(root)
    assert gs.missing == [img] and len(gs.records) == gs.n_labels - 1
    with pytest.raises(DataError, match=r"1 of 3 graded images are missing \(first: IDRiD_001.jpg\)"):
        read_grading(root, require_images=True)


def test_read_eyepacs(synthetic_root):
    es = read_eyepacs(synthetic_root / "kaggle-eyepacs-subset")
    assert len(es.records) == SYNTH["n_kaggle"]
    assert es.n_missing == 2 * (SYNTH["n_kaggle"] // 4) and es.n_labels == len(es.records) + es.n_missing
    for r in es.records:
        assert r.image_path.suffix == ".jpeg" and r.source == "eyepacs" and r.split == "train"
        assert r.image_id == f"{r.patient_id}_left" or r.image_id == f"{r.patient_id}_right"


def test_read_eyepacs_pools_label_files(synthetic_copy, tmp_path):
    root = synthetic_copy / "kaggle-eyepacs-subset"
    extra = tmp_path / "testLabels.csv"
    extra.write_text("image,level,Usage\n99999_left,4,Public\n")
    es = read_eyepacs(root, label_files=[root / "trainLabels.csv", extra])
    assert es.n_labels == read_eyepacs(root).n_labels + 1
    dup = tmp_path / "dup.csv"
    dup.write_text("image,level\n" + es.records[0].image_id + ",1\n")
    with pytest.raises(DataError, match="duplicate image id"):
        read_eyepacs(root, label_files=[root / "trainLabels.csv", dup])


def _fake(n_patients=40, seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    out = []
    for p in range(n_patients):
        g = int(rng.integers(0, 5))
        for eye in ("left", "right"):
            out.append(Record(f"{p}_{eye}", __import__("pathlib").Path(f"{p}_{eye}.jpeg"), g, {}, "train",
                              str(p), "eyepacs", False))
    return out


def test_split_by_patient():
    recs = _fake()
    split = split_by_patient(recs, test_fraction=0.3, seed=0)
    assert [r.image_id for r in split] == [r.image_id for r in recs]
    sides = collections.defaultdict(set)
    for r in split:
        sides[r.patient_id].add(r.split)
    assert all(len(s) == 1 for s in sides.values())
    n_test = sum(1 for s in sides.values() if s == {"test"})
    assert n_test == pytest.approx(12, abs=3)
    # stratified: every worst-grade stratum with >= 4 patients has patients on both sides
    by_grade = collections.defaultdict(set)
    for r in split:
        by_grade[r.grade].add(r.split)
    assert all(s == {"train", "test"} for s in by_grade.values())
    assert split == split_by_patient(recs, 0.3, seed=0)
    assert split != split_by_patient(recs, 0.3, seed=1)


def test_balanced_downsample():
    recs = _fake(60)
    counts = collections.Counter(r.grade for r in recs)
    out = balanced_downsample(recs, seed=0, rule="rarest")
    got = collections.Counter(r.grade for r in out)
    assert set(got.values()) == {min(counts.values())} and set(got) == set(counts)
    assert out == balanced_downsample(recs, seed=0, rule="rarest")
    assert balanced_downsample([replace(r, grade=None) for r in recs]) == []


def test_the_papers_balancing_downsamples_every_grade_to_the_count_of_grade_4():
    import pathlib

    counts = {0: 30, 1: 20, 2: 25, 3: 5, 4: 10}
    recs = [Record(f"{g}_{i}", pathlib.Path(f"{g}_{i}.png"), g) for g, n in counts.items()
            for i in range(n)]
    got = collections.Counter(r.grade for r in balanced_downsample(recs, seed=0))
    assert got == {0: 10, 1: 10, 2: 10, 3: 5, 4: 10}                 # grade 3 keeps its own 5
    with pytest.raises(ValueError, match="rule"):
        balanced_downsample(recs, rule="median")


def test_load_data_root_and_layout(synthetic_root):
    root = load_data_root(synthetic_root)
    assert len(root.idrid_seg) == SYNTH["n_seg"]
    assert len(root.idrid_grading.records) == SYNTH["n_grading"]
    assert len(root.eyepacs.records) == SYNTH["n_kaggle"]
    assert detect_layout(synthetic_root) == "data-root"
    assert detect_layout(synthetic_root / "IDRiD") == "idrid"
    assert detect_layout(synthetic_root / "kaggle-eyepacs-subset") == "eyepacs"


def test_load_data_root_partial(tmp_path):
    root = load_data_root(tmp_path)
    assert root.idrid_seg == [] and root.idrid_grading is None and root.eyepacs is None


def test_record_is_hashable_and_keyed(synthetic_root):
    recs = read_segmentation(synthetic_root / "IDRiD")
    assert len(set(recs)) == len(recs)
    assert recs[0].key == "idrid-segmentation/train/IDRiD_01"
