"""The paper profile's full-size data layouts, built here from the staged data: a full Kaggle/EyePACS
download (``train/``, ``test/``, ``trainLabels.csv``, ``retinopathy_solution.csv``) and a full IDRiD
(``B. Disease Grading`` with its 516 images), read by the same discovery, role and leakage code
the profile runs.

What is real and what is made up:

- Kaggle: both label files are the official ones (symlinks to the staged copies, under the
  official names, side by side), so every count that comes from labels is the paper's: 88,702
  rows, 1,914 of grade 4. Of the 88,702 images, 9,914 are materialised: the 130 staged training
  images (symlinks, real names) plus tiny generated JPEGs, enough for every grade to fill the
  paper's balanced set: all 1,914 of grade 4 and 2,000 of each other grade (up to 1,000 from
  ``train/``, the rest from ``test/``). Materialising all 88,702 would only slow the test; the
  rest are counted as label rows without an image, as the reader does for any partial download.
- IDRiD: the two grading CSVs are the real ones (symlinks); the 413 + 103 grading images are tiny
  generated JPEGs under the official names; "A. Segmentation" is a symlink to the real one.
- Every generated image has its own pixels (a 4x4 bit pattern of its index, and a colour per
  dataset), so no two files collapse under the content deduplication (``roles.deduplicate``) or
  the content leakage checks.

Needs ../shared/data (``realdata``); skipped with the conftest's message where it is absent.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mtunet.commands.run_notebooks import load_profile
from mtunet.data import check_dataset, detect_layout, load_data_root, read_eyepacs
from mtunet.data import idrid
from mtunet.data.eyepacs import balanced_downsample, patient_of, pooled_grade_counts, read_labels
from mtunet.data.records import Record
from mtunet.errors import DataError
from mtunet.study import roles
from mtunet.study.datasets import KAGGLE_FOLDER, kaggle_label_files, kaggle_label_pool
from mtunet.study.parameters import DEFAULTS

pytestmark = pytest.mark.realdata

# The official label files' counts (SOURCE.md of kaggle-eyepacs-subset).
KAGGLE_TRAIN_ROWS, KAGGLE_TEST_ROWS = 35_126, 53_576
POOLED = {0: 25_810 + 39_533, 1: 2_443 + 3_762, 2: 5_292 + 7_861, 3: 873 + 1_214, 4: 708 + 1_206}
PAPER_PER_GRADE = 1_914
# What the Kaggle layout materialises: every grade-4 image, this many of each other grade.
IMAGES_PER_OTHER_GRADE = 2_000
FROM_TRAIN_AT_MOST = 1_000
KAGGLE_IMAGES = PAPER_PER_GRADE + 4 * IMAGES_PER_OTHER_GRADE            # 9,914
# IDRiD grading (SOURCE.md of IDRiD): the official split and its grades 0-4.
IDRID_GRADES = {"train": [134, 20, 136, 74, 49], "test": [34, 5, 32, 19, 13]}
# Generated images: a colour per dataset keeps the sets' pixels apart too.
KAGGLE_COLOUR, IDRID_COLOUR = 60, 160


def tiny_jpeg(index: int, colour: int) -> bytes:
    """An 8x8 JPEG whose pixels spell ``index`` (16 bits, 2x2 blocks): distinct bytes and pixels."""
    bits = (index >> np.arange(16)) & 1
    plane = (bits.reshape(4, 4) * 255).astype(np.uint8).repeat(2, 0).repeat(2, 1)
    rgb = np.stack([plane, 255 - plane, np.full_like(plane, colour)], -1)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _real_label_files(real_eyepacs_dir: Path) -> tuple[Path, Path]:
    files = kaggle_label_files(real_eyepacs_dir.parent)
    if files is None:
        pytest.skip(f"the Kaggle test labels (retinopathy_solution.csv) are not under {real_eyepacs_dir}")
    return files


@functools.lru_cache(maxsize=None)
def official_rows(csv_path: Path) -> tuple[tuple[str, int], ...]:
    """(image, level) rows of an official label file, read once per session (88,702 rows in all)."""
    return tuple(read_labels(csv_path))


def _real_grading_csvs(real_idrid_dir: Path) -> dict[str, Path]:
    gt = real_idrid_dir / idrid.GRADING / idrid.GRADING_GROUNDTRUTHS
    csvs = {split: gt / name for split, name in idrid.GRADING_CSVS.items()}
    if not all(p.is_file() for p in csvs.values()):
        pytest.skip(f"the IDRiD grading label CSVs are not under {gt}")
    return csvs


# --- building the layouts -----------------------------------------------------------------------

@dataclasses.dataclass
class KaggleLayout:
    """What a written Kaggle layout holds, for the tests to compare the readers against."""

    root: Path
    folder_of: dict[str, str]       # image id -> "train" / "test": the images materialised
    grade_of: dict[str, int]        # image id -> grade, over both label files
    staged: set[str]                # ids whose file is a staged real image


def choose_kaggle_images(train_rows, test_rows, staged: set[str]) -> dict[str, str]:
    """image id -> folder: the staged images, every grade-4 row, and IMAGES_PER_OTHER_GRADE rows of
    each other grade (first up to FROM_TRAIN_AT_MOST from the training file, then the test file)."""
    chosen = {name: "train" for name, _ in train_rows if name in staged}
    count = collections.Counter(grade for name, grade in train_rows if name in staged)
    for folder, rows, cap in (("train", train_rows, FROM_TRAIN_AT_MOST),
                              ("test", test_rows, IMAGES_PER_OTHER_GRADE)):
        for name, grade in rows:
            if name not in chosen and (grade == 4 or count[grade] < cap):
                chosen[name] = folder
                count[grade] += 1
    assert count == {4: PAPER_PER_GRADE, **{g: IMAGES_PER_OTHER_GRADE for g in range(4)}}, count
    return chosen


def write_kaggle_layout(root: Path, real_eyepacs_dir: Path, folder_of=None) -> KaggleLayout:
    """A full Kaggle download under ``root``: the official label files side by side (symlinks) and
    the images of ``folder_of`` (default: :func:`choose_kaggle_images`) in train/ and test/."""
    train_labels, test_labels = _real_label_files(real_eyepacs_dir)
    root.mkdir(parents=True)
    os.symlink(train_labels, root / "trainLabels.csv")
    os.symlink(test_labels, root / "retinopathy_solution.csv")     # the official name and place
    train_rows, test_rows = list(official_rows(train_labels)), list(official_rows(test_labels))
    staged_files = {p.stem: p for p in (real_eyepacs_dir / "train").glob("*.jpeg")}
    folder_of = folder_of or choose_kaggle_images(train_rows, test_rows, set(staged_files))
    for folder in ("train", "test"):
        (root / folder).mkdir()
    for index, (name, folder) in enumerate(folder_of.items()):
        target = root / folder / f"{name}.jpeg"
        if name in staged_files and folder == "train":
            os.symlink(staged_files[name], target)
        else:
            target.write_bytes(tiny_jpeg(index, KAGGLE_COLOUR))
    return KaggleLayout(root, dict(folder_of), dict(train_rows + test_rows),
                        set(staged_files) & {n for n, f in folder_of.items() if f == "train"})


def write_idrid_layout(root: Path, real_idrid_dir: Path, segmentation: bool = True) -> Path:
    """A full IDRiD under ``root``: the real grading CSVs (symlinks), a generated image per label
    row under "B. Disease Grading/1. Original Images", and the real "A. Segmentation" (symlink)."""
    csvs = _real_grading_csvs(real_idrid_dir)
    grading = root / idrid.GRADING
    (grading / idrid.GRADING_GROUNDTRUTHS).mkdir(parents=True)
    index = 0
    for split, csv_path in csvs.items():
        os.symlink(csv_path, grading / idrid.GRADING_GROUNDTRUTHS / csv_path.name)
        folder = grading / idrid.IMAGES / idrid.SPLIT_FOLDERS[split]
        folder.mkdir(parents=True)
        for name, _ in idrid.read_grading_labels(csv_path):
            (folder / f"{name}.jpg").write_bytes(tiny_jpeg(index, IDRID_COLOUR))
            index += 1
    if segmentation:
        os.symlink(real_idrid_dir / idrid.SEGMENTATION, root / idrid.SEGMENTATION)
    return root


@pytest.fixture(scope="module")
def full_layouts(tmp_path_factory, real_eyepacs_dir, real_idrid_dir) -> tuple[Path, KaggleLayout]:
    """A data root as the paper profile expects it: kaggle-eyepacs-subset/ holding a full Kaggle
    download, IDRiD/ a full IDRiD; plus links to the real APTOS and Messidor-2 where staged
    (profiles/paper.yaml as written trains on APTOS and tests Table 3 on Messidor-2). Read-only."""
    data = tmp_path_factory.mktemp("full") / "data"
    kaggle = write_kaggle_layout(data / KAGGLE_FOLDER, real_eyepacs_dir)
    write_idrid_layout(data / "IDRiD", real_idrid_dir)
    for name in ("aptos2019", "messidor-2"):
        if (real_eyepacs_dir.parent / name).is_dir():
            os.symlink(real_eyepacs_dir.parent / name, data / name)
    return data, kaggle


@pytest.fixture(scope="module")
def full_root(full_layouts) -> Path:
    return full_layouts[0]


@pytest.fixture(scope="module")
def kaggle(full_layouts) -> KaggleLayout:
    return full_layouts[1]


# --- Kaggle: discovery, the pool, the balancing ---------------------------------------------------

def test_kaggle_discovery_pools_both_label_files_and_finds_both_folders(kaggle):
    assert detect_layout(kaggle.root) == "eyepacs"
    es = read_eyepacs(kaggle.root)
    assert [p.name for p in es.label_files] == ["trainLabels.csv", "retinopathy_solution.csv"]
    assert es.n_labels == KAGGLE_TRAIN_ROWS + KAGGLE_TEST_ROWS
    assert len(es.records) == KAGGLE_IMAGES and es.n_missing == es.n_labels - KAGGLE_IMAGES
    assert {r.image_id: r.split for r in es.records} == kaggle.folder_of
    assert all(r.grade == kaggle.grade_of[r.image_id] for r in es.records)
    assert all(r.patient_id == patient_of(r.image_id) and r.source == "eyepacs" for r in es.records)
    grades = collections.Counter(r.grade for r in es.records)
    assert grades == {4: PAPER_PER_GRADE, **{g: IMAGES_PER_OTHER_GRADE for g in range(4)}}
    by_folder = collections.Counter(r.split for r in es.records)
    assert by_folder["train"] > 0 and by_folder["test"] > 0
    assert len(kaggle.staged) == 130                # the staged real images sit among them
    assert all(kaggle.folder_of[name] == "train" for name in kaggle.staged)


def test_kaggle_pool_gives_the_papers_1914_per_grade(kaggle, full_root):
    pool = pooled_grade_counts(kaggle.root / "trainLabels.csv", kaggle.root / "retinopathy_solution.csv")
    assert pool.counts == POOLED and pool.n_rows == KAGGLE_TRAIN_ROWS + KAGGLE_TEST_ROWS
    assert pool.per_grade == PAPER_PER_GRADE and pool.rarest_grade == 4
    # the notebook's table finds the solution file under its official name, beside trainLabels.csv
    assert kaggle_label_files(full_root) == (kaggle.root / "trainLabels.csv",
                                             kaggle.root / "retinopathy_solution.csv")
    table = kaggle_label_pool(full_root).set_index("grade")
    assert table["pooled"].to_dict() == POOLED
    assert table["balanced"].tolist() == [PAPER_PER_GRADE] * 5


def test_balancing_the_pooled_labels_gives_1914_of_every_grade(kaggle):
    """The rule on all 88,702 label rows (it needs grades, not pixels) and on the images present."""
    every_row = [Record(name, kaggle.root / "none" / f"{name}.jpeg", grade, {}, "train",
                        patient_of(name), "eyepacs", False) for name, grade in kaggle.grade_of.items()]
    balanced = balanced_downsample(every_row, seed=0)
    assert collections.Counter(r.grade for r in balanced) == {g: PAPER_PER_GRADE for g in range(5)}
    assert sum(r.grade == 4 for r in balanced) == sum(r.grade == 4 for r in every_row)   # all of grade 4
    assert balanced_downsample(every_row, seed=0) == balanced                             # seeded
    assert balanced_downsample(every_row, seed=1) != balanced
    present = balanced_downsample(read_eyepacs(kaggle.root).records, seed=0)
    assert collections.Counter(r.grade for r in present) == {g: PAPER_PER_GRADE for g in range(5)}


def test_kaggle_data_check_verifies_both_folders(kaggle):
    inv = check_dataset(kaggle.root)          # decodes every image; train/test content compared
    e = inv.eyepacs
    assert e["labels"] == KAGGLE_TRAIN_ROWS + KAGGLE_TEST_ROWS and e["present"] == KAGGLE_IMAGES
    assert e["splits"] == dict(collections.Counter(kaggle.folder_of.values()))
    assert e["grades"] == [IMAGES_PER_OTHER_GRADE] * 4 + [PAPER_PER_GRADE]
    assert e["label_files"] == ["trainLabels.csv", "retinopathy_solution.csv"] and e["unlabelled"] == 0
    assert "Kaggle/EyePACS: 9,914 of 88,702 label rows have an image (78,788 missing)" in inv.format()


# --- IDRiD: the grading images and their official split -------------------------------------------

def test_idrid_grading_images_are_found_with_the_labels_of_the_csvs(full_root, real_idrid_dir):
    csvs = _real_grading_csvs(real_idrid_dir)
    gs = idrid.read_grading(full_root / "IDRiD", require_images=True)
    assert gs.missing == [] and gs.n_labels == 516
    assert collections.Counter(r.split for r in gs.records) == {"train": 413, "test": 103}
    assert gs.grade_counts == IDRID_GRADES
    for split, csv_path in csvs.items():
        folder = full_root / "IDRiD" / idrid.GRADING / idrid.IMAGES / idrid.SPLIT_FOLDERS[split]
        got = {r.image_id: (r.grade, r.image_path) for r in gs.records if r.split == split}
        assert got == {name: (grade, folder / f"{name}.jpg") for name, grade in idrid.read_grading_labels(csv_path)}


def test_idrid_data_check_sees_both_parts(full_root):
    """Decodes the 81 real segmentation images and their masks too (a few seconds)."""
    inv = check_dataset(full_root / "IDRiD")
    assert {s: (row["labels"], row["images"]) for s, row in inv.grading.items()} == {
        "train": (413, 413), "test": (103, 103)}
    assert {s: row["grades"] for s, row in inv.grading.items()} == IDRID_GRADES
    assert inv.grading_missing == []
    assert {s: row["images"] for s, row in inv.segmentation.items()} == {"train": 54, "test": 27}


# --- the roles ------------------------------------------------------------------------------------

def _paper_parameters(**overrides):
    return {**DEFAULTS, **load_profile("paper")["parameters"], **overrides}


@pytest.fixture(scope="module")
def paper_own_splits(full_root):
    """The paper's own mapping, as profiles/paper.yaml describes it for a full Kaggle download:
    grading_train_sets [eyepacs], Table 3 on IDRiD-D ("auto" takes it when its images exist), and
    Table 4 only from --external-grading-dir (none given here)."""
    params = _paper_parameters(grading_train_sets=["eyepacs"], table3_set="auto", table4_set="external")
    assert params["grade_test_fraction"] == 0.1 and params["balance_grades"] is True
    return roles.splits_from_parameters(full_root, params)


def test_paper_mapping_trains_on_the_balanced_kaggle_pool(paper_own_splits, kaggle):
    splits = paper_own_splits
    assert splits.origins == {"grade_train": "eyepacs", "grade_test": "eyepacs",
                              "table3_test": "idrid-grading", "table4_test": "none"}
    assert not any("fell back" in note for note in splits.notes.values())
    assert f"{KAGGLE_IMAGES} distinct graded images, balanced per grade" in splits.notes["grade_train"]
    pool = splits["grade_train"] + splits["grade_test"]
    assert collections.Counter(r.grade for r in pool) == {g: PAPER_PER_GRADE for g in range(5)}
    assert {r.source for r in pool} == {"eyepacs"}
    assert {r.image_path.parent.name for r in pool} == {"train", "test"}    # train and test pooled
    assert all(r.image_id in kaggle.folder_of for r in pool)
    patients = {side: {r.patient_id for r in splits[side]} for side in ("grade_train", "grade_test")}
    assert not patients["grade_train"] & patients["grade_test"]             # both eyes on one side
    share = len(patients["grade_test"]) / (len(patients["grade_train"]) + len(patients["grade_test"]))
    assert abs(share - 0.1) < 0.01                                         # grade_test_fraction
    assert splits["table4_test"] == [] and "no external graded set" in splits.notes["table4_test"]


def test_paper_mapping_tests_table3_on_idrid_d_apart_from_idrid_s(paper_own_splits, full_root):
    splits = paper_own_splits
    three = splits["table3_test"]
    assert len(three) == 103 and {r.source for r in three} == {"idrid-grading"}
    assert all(r.split == "test" and not r.has_masks for r in three)
    assert collections.Counter(r.grade for r in three) == dict(enumerate(IDRID_GRADES["test"]))
    test_folder = full_root / "IDRiD" / idrid.GRADING / idrid.IMAGES / idrid.SPLIT_FOLDERS["test"]
    assert {r.image_path.parent for r in three} == {test_folder}
    assert not splits.is_stand_in("table3_test") and "the paper's own Table 3 set" in splits.notes["table3_test"]
    # IDRiD-D's 413 training images play no role (the paper trains its graders on Kaggle)
    every = [r for role in roles.ROLES for r in splits[role]]
    assert not [r for r in every if r.source == "idrid-grading" and r.split != "test"]
    # IDRiD-S keeps its own 54 / 27, with masks, and shares no file with IDRiD-D
    seg = splits["seg_train"] + splits["seg_test"]
    assert (len(splits["seg_train"]), len(splits["seg_test"])) == (54, 27)
    assert {r.source for r in seg} == {"idrid-segmentation"} and all(r.has_masks for r in seg)
    digests = roles.file_digests(seg + three)
    assert not {digests[str(r.image_path)] for r in seg} & {digests[str(r.image_path)] for r in three}
    integrity = roles.split_integrity(splits)
    assert integrity["ok"].all(), integrity[~integrity["ok"]]
    assert len(integrity) == 2 + 3 * len(roles.GRADING_SIDES)


def test_paper_with_the_whole_balanced_set_trains_on_1914_per_grade(full_root):
    """The paper trains on all of its balanced set: no held-out share leaves 1,914 per grade."""
    splits = roles.splits_from_parameters(full_root, _paper_parameters(
        grading_train_sets=["eyepacs"], grade_test_fraction=0.0, table3_set="auto", table4_set="none"))
    assert collections.Counter(r.grade for r in splits["grade_train"]) == {g: PAPER_PER_GRADE for g in range(5)}
    assert splits["grade_test"] == [] and len(splits["table3_test"]) == 103


def test_paper_profile_as_written_on_the_full_layout(full_root, real_aptos_dir, real_messidor_dir):
    """profiles/paper.yaml unchanged: APTOS trains, Messidor-2 is Table 3 (the IDRiD-D images are
    then unused), and Table 4 is every Kaggle image present, none of which a grader saw."""
    splits = roles.splits_from_parameters(full_root, _paper_parameters())
    assert splits.origins == {"grade_train": "aptos2019", "grade_test": "aptos2019",
                              "table3_test": "messidor-2", "table4_test": "eyepacs"}
    assert not any("fell back" in note for note in splits.notes.values())
    four = splits["table4_test"]
    assert len(four) == KAGGLE_IMAGES and {r.split for r in four} == {"test"}
    assert {r.image_path.parent.name for r in four} == {"train", "test"}
    assert len(splits["table3_test"]) == 1740
    assert not [r for role in roles.ROLES for r in splits[role] if r.source == "idrid-grading"]
    integrity = roles.split_integrity(splits)
    assert integrity["ok"].all(), integrity[~integrity["ok"]]


# --- leaking layouts ------------------------------------------------------------------------------

def _small_kaggle(root: Path, real_eyepacs_dir: Path, n_per_file: int = 20) -> KaggleLayout:
    """A full Kaggle layout (both official label files) with the first rows' images of each file."""
    train_labels, test_labels = _real_label_files(real_eyepacs_dir)
    folder_of = {name: "train" for name, _ in official_rows(train_labels)[:n_per_file]}
    folder_of.update({name: "test" for name, _ in official_rows(test_labels)[:n_per_file]})
    return write_kaggle_layout(root, real_eyepacs_dir, folder_of)


def _same_grade_pair(layout: KaggleLayout) -> tuple[str, str]:
    """A train image and a test image of the same grade."""
    test = {layout.grade_of[n]: n for n, f in layout.folder_of.items() if f == "test"}
    name = next(n for n, f in layout.folder_of.items() if f == "train" and layout.grade_of[n] in test)
    return name, test[layout.grade_of[name]]


def test_data_check_reports_one_photograph_under_a_train_and_a_test_name(tmp_path, real_eyepacs_dir):
    layout = _small_kaggle(tmp_path / KAGGLE_FOLDER, real_eyepacs_dir)
    check_dataset(layout.root)                                      # distinct files: passes
    train_name, test_name = _same_grade_pair(layout)
    shutil.copyfile(layout.root / "train" / f"{train_name}.jpeg", layout.root / "test" / f"{test_name}.jpeg")
    with pytest.raises(DataError, match=r"same file content \(sha1 [0-9a-f]{12}\) in test and train") as err:
        check_dataset(layout.root)
    assert err.value.path == layout.root / "test" / f"{test_name}.jpeg"
    assert str(layout.root / "train" / f"{train_name}.jpeg") in str(err.value)


def test_data_check_reports_one_image_id_in_train_and_test(tmp_path, real_eyepacs_dir):
    """The reader takes train/'s file for an id in both folders; the check must say so."""
    layout = _small_kaggle(tmp_path / KAGGLE_FOLDER, real_eyepacs_dir)
    name = next(n for n, f in layout.folder_of.items() if f == "train")
    (layout.root / "test" / f"{name}.jpeg").write_bytes(tiny_jpeg(60_000, KAGGLE_COLOUR))
    with pytest.raises(DataError, match=f"image id {name} is in both train and test") as err:
        check_dataset(layout.root)
    assert err.value.path == layout.root / "test" / f"{name}.jpeg"


def test_data_check_counts_unlabelled_images_in_test_too(tmp_path, real_eyepacs_dir):
    layout = _small_kaggle(tmp_path / KAGGLE_FOLDER, real_eyepacs_dir)
    (layout.root / "test" / "unlisted_left.jpeg").write_bytes(tiny_jpeg(60_001, KAGGLE_COLOUR))
    inv = check_dataset(layout.root)
    assert inv.eyepacs["unlabelled"] == 1 and inv.eyepacs["present"] == len(layout.folder_of)
    assert "images without a label row: 1" in inv.format()


def test_roles_keep_a_copied_photograph_on_one_side_and_the_checker_sees_a_leak(tmp_path, real_eyepacs_dir):
    layout = _small_kaggle(tmp_path / "data" / KAGGLE_FOLDER, real_eyepacs_dir)
    train_name, test_name = _same_grade_pair(layout)
    shutil.copyfile(layout.root / "train" / f"{train_name}.jpeg", layout.root / "test" / f"{test_name}.jpeg")
    splits = roles.build_splits(tmp_path / "data", 0.3, 0, True, None, grading_train_sets=["eyepacs"],
                                table3_set="grade_test", table4_set="eyepacs")
    assert "eyepacs: 1 byte-identical copies kept once" in splits.notes["grade_train"]
    every = [r.image_id for role in roles.ROLES for r in splits[role]
             if not (role == "table3_test" and splits.origins[role] == "grade_test")]
    assert sum(name in (train_name, test_name) for name in every) <= 1
    assert roles.split_integrity(splits)["ok"].all()
    # the two copies put on the two sides by hand: caught by content, not by id or patient
    copies = {r.image_id: r for r in load_data_root(tmp_path / "data").eyepacs.records
              if r.image_id in (train_name, test_name)}
    leaky = roles.StudySplits({**{role: [] for role in roles.ROLES}, "grade_train": [copies[train_name]],
                               "grade_test": [copies[test_name]]}, {}, {})
    table = roles.split_integrity(leaky).set_index("check")
    assert not table.loc["grading: no file content in both grade_train and grade_test", "ok"]
    assert table.loc["grading: no file content in both grade_train and grade_test", "overlap"] == 1
    assert table.loc["grading: no image in both grade_train and grade_test", "ok"]
    assert table.loc["grading: no patient / examination in both grade_train and grade_test", "ok"]


def test_data_check_reports_an_idrid_grading_image_copied_across_the_split(tmp_path, real_idrid_dir):
    """IDRiD numbers both splits from IDRiD_001, so only contents are compared across them."""
    root = write_idrid_layout(tmp_path / "IDRiD", real_idrid_dir, segmentation=False)
    images = root / idrid.GRADING / idrid.IMAGES
    check_dataset(root)                                             # IDRiD_001..103 in both: fine
    copy = images / idrid.SPLIT_FOLDERS["test"] / "IDRiD_005.jpg"
    shutil.copyfile(images / idrid.SPLIT_FOLDERS["train"] / "IDRiD_001.jpg", copy)
    with pytest.raises(DataError, match="same file content .* in test and train") as err:
        check_dataset(root)
    assert err.value.path == copy
