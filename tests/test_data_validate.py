"""Every bad-input case gives exit code != 0 and one line `error: <file>: <problem>` naming the file."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from mtunet.cli import main
from mtunet.data.synthetic import write_palette_mask
from mtunet.data.validate import check_dataset

SEG = "IDRiD/A. Segmentation"
IMG_TRAIN = f"{SEG}/1. Original Images/a. Training Set"
IMG_TEST = f"{SEG}/1. Original Images/b. Testing Set"
GT_TRAIN = f"{SEG}/2. All Segmentation Groundtruths/a. Training Set"
GRADING_CSV = "IDRiD/B. Disease Grading/2. Groundtruths/a. IDRiD_Disease Grading_Training Labels.csv"
KAGGLE = "kaggle-eyepacs-subset"


def _fails(root, capsys, *needles):
    rc = main(["data", "check", str(root)])
    err = capsys.readouterr().err
    assert rc != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_clean_synthetic_passes(synthetic_copy, capsys):
    assert main(["data", "check", str(synthetic_copy)]) == 0
    out = capsys.readouterr().out
    assert "IDRiD segmentation: 3 images (2 train/1 test)" in out
    inv = check_dataset(synthetic_copy / "IDRiD")
    assert inv.layout == "idrid" and inv.segmentation["train"]["images"] == 2 and inv.n_masks >= 6


def test_missing_folder(synthetic_copy, capsys):
    shutil.rmtree(synthetic_copy / IMG_TEST)
    _fails(synthetic_copy, capsys, "b. Testing Set", "missing folder")


def test_not_a_dataset(tmp_path, capsys):
    _fails(tmp_path, capsys, str(tmp_path), "not a dataset")
    _fails(tmp_path / "nope", capsys, "nope", "missing folder")


def test_empty_folder(synthetic_copy, capsys):
    for p in (synthetic_copy / KAGGLE / "train").iterdir():
        p.unlink()
    _fails(synthetic_copy / KAGGLE, capsys, "train", "empty folder")


def test_corrupt_image(synthetic_copy, capsys):
    (synthetic_copy / IMG_TRAIN / "IDRiD_01.jpg").write_bytes(b"garbage")
    _fails(synthetic_copy, capsys, "IDRiD_01.jpg", "unreadable image")


def test_truncated_image(synthetic_copy, capsys):
    p = synthetic_copy / KAGGLE / "train"
    victim = sorted(p.iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:500])
    _fails(synthetic_copy, capsys, victim.name, "truncated")


def test_grayscale_image(synthetic_copy, capsys):
    p = synthetic_copy / IMG_TRAIN / "IDRiD_02.jpg"
    Image.open(p).convert("L").save(p)
    _fails(synthetic_copy, capsys, "IDRiD_02.jpg", "grayscale")


def test_truncated_tiff(synthetic_copy, capsys):
    p = synthetic_copy / GT_TRAIN / "1. Microaneurysms" / "IDRiD_01_MA.tif"
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    _fails(synthetic_copy, capsys, "IDRiD_01_MA.tif")


def test_mask_size_mismatch(synthetic_copy, capsys):
    p = synthetic_copy / GT_TRAIN / "5. Optic Disc" / "IDRiD_01_OD.tif"
    write_palette_mask(p, np.zeros((10, 12), bool))
    _fails(synthetic_copy, capsys, "IDRiD_01_OD.tif", "mask is 12x10 but image IDRiD_01.jpg is 64x")


def test_mask_without_image_and_bad_name(synthetic_copy, capsys):
    folder = synthetic_copy / GT_TRAIN / "5. Optic Disc"
    shutil.copy(folder / "IDRiD_01_OD.tif", folder / "IDRiD_77_OD.tif")
    _fails(synthetic_copy, capsys, "IDRiD_77_OD.tif", "mask without an image")
    (folder / "IDRiD_77_OD.tif").rename(folder / "IDRiD_01_MA.tif")
    _fails(synthetic_copy, capsys, "IDRiD_01_MA.tif", "unexpected mask name")


@pytest.mark.parametrize("header", ["Image,Grade,Risk", "Image name,Risk of macular edema"])
def test_csv_without_columns(synthetic_copy, capsys, header):
    p = synthetic_copy / GRADING_CSV
    lines = p.read_text().splitlines()
    p.write_text("\n".join([header] + lines[1:]) + "\n")
    _fails(synthetic_copy, capsys, "Training Labels.csv", "lacks column")


def test_kaggle_csv_without_columns(synthetic_copy, capsys):
    p = synthetic_copy / KAGGLE / "trainLabels.csv"
    p.write_text("name,grade\n" + "\n".join(p.read_text().splitlines()[1:]) + "\n")
    _fails(synthetic_copy / KAGGLE, capsys, "trainLabels.csv", "'image'")


@pytest.mark.parametrize("bad", ["7", "-1", "two", "2.5"])
def test_bad_grade(synthetic_copy, capsys, bad):
    p = synthetic_copy / GRADING_CSV
    lines = p.read_text().splitlines()
    name, _, risk = lines[1].split(",")
    lines[1] = f"{name},{bad},{risk}"
    p.write_text("\n".join(lines) + "\n")
    _fails(synthetic_copy, capsys, "Training Labels.csv", "line 2", "0-4")


def test_bad_kaggle_grade(synthetic_copy, capsys):
    p = synthetic_copy / KAGGLE / "trainLabels.csv"
    p.write_text(p.read_text() + "77777_left,5\n")
    _fails(synthetic_copy / KAGGLE, capsys, "trainLabels.csv", "77777_left", "outside 0-4")


def test_duplicate_ids(synthetic_copy, capsys):
    p = synthetic_copy / KAGGLE / "trainLabels.csv"
    lines = p.read_text().splitlines()
    p.write_text("\n".join(lines + [lines[1]]) + "\n")
    _fails(synthetic_copy / KAGGLE, capsys, "trainLabels.csv", "duplicate image id")


def test_duplicate_image_files(synthetic_copy, capsys):
    src = synthetic_copy / IMG_TRAIN / "IDRiD_01.jpg"
    Image.open(src).save(src.with_suffix(".png"))
    _fails(synthetic_copy, capsys, "IDRiD_01", "duplicate image id")


def test_same_image_in_train_and_test_by_id(synthetic_copy, capsys):
    shutil.copy(synthetic_copy / IMG_TRAIN / "IDRiD_01.jpg", synthetic_copy / IMG_TEST / "IDRiD_01.jpg")
    _fails(synthetic_copy, capsys, "IDRiD_01.jpg", "in both train and test")


def test_same_image_in_train_and_test_by_content(synthetic_copy, capsys):
    shutil.copy(synthetic_copy / IMG_TRAIN / "IDRiD_01.jpg", synthetic_copy / IMG_TEST / "IDRiD_99.jpg")
    _fails(synthetic_copy, capsys, "IDRiD_99.jpg", "same file content", "IDRiD_01.jpg")


def test_missing_grading_images_are_not_an_error(synthetic_copy, capsys):
    shutil.rmtree(synthetic_copy / "IDRiD/B. Disease Grading/1. Original Images")
    assert main(["data", "check", str(synthetic_copy / "IDRiD")]) == 0
    assert "missing images: 3 (first: IDRiD_001.jpg" in capsys.readouterr().out
