"""APTOS 2019 Blindness Detection reader (Kaggle; Aravind Eye Hospital, India).

Kaggle layout: ``train.csv`` (columns id_code,diagnosis; grades 0-4) and ``train_images/<id_code>.<ext>``
(the staged copy under ``../shared/data/aptos2019`` holds 224 x 224 JPEGs). APTOS publishes no patient
ids, so each image is its own patient: a split can only be by image.
"""
from __future__ import annotations

from pathlib import Path

from mtunet.data.eyepacs import load_label_csv, parse_label_rows
from mtunet.data.idrid import list_images, require_dir
from mtunet.data.records import GradedSet, match_images

SOURCE = "aptos2019"
LABEL_FILE = "train.csv"
IMAGE_DIR = "train_images"
LABEL_COLUMNS = ("id_code", "diagnosis")


def read_aptos_labels(csv_path: Path) -> list[tuple[str, int]]:
    """(id_code, grade) rows of ``train.csv``; DataError on missing columns, bad grades, duplicates."""
    return parse_label_rows(load_label_csv(csv_path, LABEL_COLUMNS), csv_path, *LABEL_COLUMNS)


def read_aptos(root) -> GradedSet:
    """The graded APTOS training images under ``root`` (split "train", patient_id = image id).

    Label rows whose image is absent are counted in ``n_missing`` (not an error, as for EyePACS);
    images without a label row are listed in ``unlabelled``. DataError (naming the file) for a
    missing/unreadable label file, missing columns, a grade that is not an integer 0-4, a duplicate
    id_code, a missing or empty ``train_images/``, or two image files with one stem.
    """
    root = require_dir(Path(root))
    csv_path = root / LABEL_FILE
    rows = read_aptos_labels(csv_path)
    images = list_images(root / IMAGE_DIR)
    return match_images(rows, images, SOURCE, patient_of=lambda image_id: image_id, label_file=csv_path)
