"""The paper's Kaggle label pool (train + test labels) and its "1,914 images per grade"
(mtunet.data.eyepacs.pooled_grade_counts)."""
from __future__ import annotations

import pytest

from mtunet.data.eyepacs import pooled_grade_counts
from mtunet.errors import DataError


def _write(path, text):
    path.write_text(text)
    return path


@pytest.fixture
def label_files(tmp_path):
    train = _write(tmp_path / "trainLabels.csv",
                   "image,level\n10_left,0\n10_right,0\n13_left,1\n15_left,2\n15_right,4\n16_left,3\n")
    test = _write(tmp_path / "retinopathy_solution.csv",
                  "image,level,Usage\r\n1_left,0,Private\r\n1_right,4,Public\r\n2_left,3,Private\r\n"
                  "2_right,3,Public\r\n3_left,2,Private\r\n")
    return train, test


def test_pools_both_files_and_gives_the_grade_4_count(label_files):
    train, test = label_files
    pooled = pooled_grade_counts(train, test)
    assert pooled.counts == {0: 3, 1: 1, 2: 2, 3: 3, 4: 2}
    assert pooled.file_counts[train] == {0: 2, 1: 1, 2: 1, 3: 1, 4: 1}
    assert pooled.file_counts[test] == {0: 1, 1: 0, 2: 1, 3: 2, 4: 1}
    assert pooled.n_rows == 11
    assert pooled.per_grade == 2            # the paper's rule: as many as grade 4 has
    assert pooled.rarest_grade == 1         # ... which here is not the rarest grade


def test_a_grade_absent_from_both_files_is_counted_as_zero(tmp_path):
    train = _write(tmp_path / "a.csv", "image,level\nx,0\ny,4\n")
    test = _write(tmp_path / "b.csv", "image,level\nz,4\n")
    pooled = pooled_grade_counts(train, test)
    assert pooled.counts == {0: 1, 1: 0, 2: 0, 3: 0, 4: 2} and pooled.per_grade == 2
    assert pooled.rarest_grade == 3         # ties: the highest of the empty grades


@pytest.mark.parametrize("which,text,problem", [
    ("test", "image,Usage\n1_left,Private\n", "lacks column.*'level'"),
    ("train", "name,level\n10_left,0\n", "lacks column.*'image'"),
    ("test", "image,level,Usage\n1_left,7,Private\n", "line 2: grade 7 of 1_left is outside 0-4"),
    ("train", "image,level\n10_left,0\n10_right,mild\n", "line 3: grade 'mild'"),
    ("test", "image,level\n1_left,0\n1_left,1\n", "duplicate image id '1_left'"),
    ("test", "image,level\n10_left,0\n", "also in"),        # an id in both files
])
def test_bad_label_files_are_data_errors_naming_the_file(label_files, which, text, problem):
    train, test = label_files
    bad = train if which == "train" else test
    _write(bad, text)
    with pytest.raises(DataError, match=problem) as err:
        pooled_grade_counts(train, test)
    assert err.value.path == bad


def test_a_missing_label_file_is_named(label_files, tmp_path):
    train, _ = label_files
    with pytest.raises(DataError, match="missing label file") as err:
        pooled_grade_counts(train, tmp_path / "nowhere.csv")
    assert err.value.path == tmp_path / "nowhere.csv"


@pytest.mark.realdata
def test_the_official_labels_give_the_papers_1914_per_grade(real_eyepacs_dir):
    test_labels = real_eyepacs_dir / "test-labels" / "retinopathy_solution.csv"
    if not test_labels.is_file():
        pytest.skip(f"the Kaggle test labels are not at {test_labels}")
    pooled = pooled_grade_counts(real_eyepacs_dir / "trainLabels.csv", test_labels)
    assert pooled.file_counts[real_eyepacs_dir / "trainLabels.csv"] == {0: 25810, 1: 2443, 2: 5292,
                                                                        3: 873, 4: 708}
    assert pooled.file_counts[test_labels] == {0: 39533, 1: 3762, 2: 7861, 3: 1214, 4: 1206}
    assert pooled.n_rows == 35126 + 53576
    assert pooled.per_grade == 1914 and pooled.rarest_grade == 4
