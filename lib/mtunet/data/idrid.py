"""IDRiD readers: "A. Segmentation" (81 images with lesion masks) and "B. Disease Grading" (labels).

The folder and file names are those of the official IDRiD release (Porwal et al., Data 2018)::

    A. Segmentation/1. Original Images/{a. Training Set,b. Testing Set}/IDRiD_01.jpg
    A. Segmentation/2. All Segmentation Groundtruths/{a. Training Set,b. Testing Set}/
        1. Microaneurysms/IDRiD_01_MA.tif ... 5. Optic Disc/IDRiD_01_OD.tif
    B. Disease Grading/1. Original Images/{a. Training Set,b. Testing Set}/IDRiD_001.jpg
    B. Disease Grading/2. Groundtruths/a. IDRiD_Disease Grading_Training Labels.csv (and b. ... Testing)

IDRiD omits a mask file when the image has none of that lesion: such a record simply has no key
for it (``has_masks`` is True, so the absence means "empty").
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from mtunet.errors import DataError
from mtunet.data.records import Record

SEGMENTATION = "A. Segmentation"
GRADING = "B. Disease Grading"
IMAGES = "1. Original Images"
SEG_GROUNDTRUTHS = "2. All Segmentation Groundtruths"
GRADING_GROUNDTRUTHS = "2. Groundtruths"
SPLIT_FOLDERS = {"train": "a. Training Set", "test": "b. Testing Set"}
LESION_FOLDERS = {"MA": "1. Microaneurysms", "HE": "2. Haemorrhages", "EX": "3. Hard Exudates",
                  "SE": "4. Soft Exudates", "OD": "5. Optic Disc"}
GRADING_CSVS = {"train": "a. IDRiD_Disease Grading_Training Labels.csv",
                "test": "b. IDRiD_Disease Grading_Testing Labels.csv"}
GRADING_COLUMNS = ("Image name", "Retinopathy grade", "Risk of macular edema")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
MASK_SUFFIXES = (".tif", ".tiff")
MASK_NAME = re.compile(r"^(?P<id>.+)_(?P<code>MA|HE|EX|SE|OD)$")


def _segmentation_dir(idrid_root: Path) -> Path:
    idrid_root = Path(idrid_root)
    if idrid_root.name == SEGMENTATION:
        return idrid_root
    return idrid_root / SEGMENTATION


def require_dir(path: Path) -> Path:
    """Return ``path`` if it is a folder, else raise DataError("missing folder")."""
    if not path.is_dir():
        raise DataError(path, "missing folder" if not path.exists() else "not a folder")
    return path


def list_files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """Files of ``folder`` with one of ``suffixes`` (case-insensitive), sorted, hidden files skipped."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes)


def list_images(folder: Path) -> dict[str, Path]:
    """image_id -> image file in ``folder``; DataError on an empty folder or a duplicate image id."""
    files = list_files(require_dir(folder), IMAGE_SUFFIXES)
    if not files:
        raise DataError(folder, "empty folder: no images (.jpg/.jpeg/.png/.tif)")
    images: dict[str, Path] = {}
    for path in files:
        if path.stem in images:
            raise DataError(path, f"duplicate image id {path.stem!r} (also {images[path.stem].name})")
        images[path.stem] = path
    return images


def segmentation_mask_files(idrid_root: Path, split: str) -> dict[str, dict[str, Path]]:
    """lesion code -> {image_id -> mask file} for one split of "A. Segmentation".

    A ``.tif`` whose name is not ``<image_id>_<CODE>.tif`` with the CODE of its folder is an error.
    A missing lesion folder is treated as "no masks of that lesion".
    """
    gt = require_dir(_segmentation_dir(idrid_root) / SEG_GROUNDTRUTHS / SPLIT_FOLDERS[split])
    out: dict[str, dict[str, Path]] = {}
    for code, folder_name in LESION_FOLDERS.items():
        folder = gt / folder_name
        out[code] = {}
        if not folder.is_dir():
            continue
        for path in list_files(folder, MASK_SUFFIXES):
            m = MASK_NAME.match(path.stem)
            if m is None or m["code"] != code:
                raise DataError(path, f"unexpected mask name in '{folder_name}': expected <image id>_{code}.tif")
            out[code][m["id"]] = path
    return out


def read_segmentation(idrid_root) -> list[Record]:
    """The IDRiD segmentation set ("A. Segmentation"): 54 train + 27 test images with lesion masks.

    ``idrid_root`` is the folder holding "A. Segmentation" (or that folder itself). Grades are None
    (IDRiD-S has no grades). A mask without an image is a DataError.
    """
    seg = require_dir(_segmentation_dir(idrid_root))
    records: list[Record] = []
    for split, split_folder in SPLIT_FOLDERS.items():
        images = list_images(seg / IMAGES / split_folder)
        masks = segmentation_mask_files(idrid_root, split)
        for code, by_id in masks.items():
            for image_id, path in by_id.items():
                if image_id not in images:
                    raise DataError(path, f"mask without an image: no {image_id} in "
                                          f"'{IMAGES}/{split_folder}'")
        for image_id, path in images.items():
            records.append(Record(
                image_id=image_id, image_path=path, grade=None,
                masks={code: by_id[image_id] for code, by_id in masks.items() if image_id in by_id},
                split=split, patient_id=image_id, source="idrid-segmentation", has_masks=True))
    return records


@dataclass
class GradingSet:
    """IDRiD grading labels and the images found for them.

    records: one Record per label row whose image exists; missing: image paths of label rows
    without an image; n_labels: label rows read (train + test).
    """

    records: list[Record]
    missing: list[Path] = field(default_factory=list)
    n_labels: int = 0
    grade_counts: dict[str, list[int]] = field(default_factory=dict)  # split -> counts of grades 0..4


def parse_grade(value, csv_path: Path, line: int, image_id: str) -> int:
    """An ICDRS grade 0..4 from a CSV cell; DataError naming the file and line otherwise."""
    text = str(value).strip()
    try:
        grade = int(text)
    except ValueError:
        try:
            as_float = float(text)
        except ValueError:
            as_float = None
        if as_float is None or not as_float.is_integer():
            raise DataError(csv_path, f"line {line}: grade {text!r} of {image_id} is not an integer 0-4") from None
        grade = int(as_float)
    if not 0 <= grade <= 4:
        raise DataError(csv_path, f"line {line}: grade {grade} of {image_id} is outside 0-4")
    return grade


def read_grading_labels(csv_path: Path) -> list[tuple[str, int]]:
    """(image name, DR grade) rows of an IDRiD grading CSV (tolerates CRLF and trailing empty columns)."""
    if not csv_path.is_file():
        raise DataError(csv_path, "missing label file")
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise DataError(csv_path, "empty CSV")
    header = [h.strip() for h in rows[0]]
    needed = GRADING_COLUMNS[:2]
    absent = [c for c in needed if c not in header]
    if absent:
        raise DataError(csv_path, f"CSV lacks column(s) {', '.join(map(repr, absent))}; "
                                  f"expected {', '.join(map(repr, needed))}, found {[h for h in header if h]}")
    i_name, i_grade = header.index(needed[0]), header.index(needed[1])
    out: list[tuple[str, int]] = []
    seen: dict[str, int] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        name = row[i_name].strip() if i_name < len(row) else ""
        if not name:
            raise DataError(csv_path, f"line {line}: empty image name")
        grade = parse_grade(row[i_grade] if i_grade < len(row) else "", csv_path, line, name)
        if name in seen:
            raise DataError(csv_path, f"line {line}: duplicate image id {name!r} (also line {seen[name]})")
        seen[name] = line
        out.append((name, grade))
    return out


def read_grading(idrid_root, require_images: bool = False) -> GradingSet:
    """The IDRiD grading set ("B. Disease Grading"): labels of 413 train + 103 test images.

    Records are made only for label rows whose image exists under "1. Original Images"; the others
    are listed in ``missing`` (the staged real copy has the labels but not the images). With
    ``require_images=True`` any missing image is a DataError. Note: train and test both number
    their images from IDRiD_001, so ``image_id`` repeats across splits (use ``Record.key``).
    """
    grading = require_dir(Path(idrid_root) / GRADING)
    gt = require_dir(grading / GRADING_GROUNDTRUTHS)
    records: list[Record] = []
    missing: list[Path] = []
    n_labels = 0
    counts: dict[str, list[int]] = {}
    for split, split_folder in SPLIT_FOLDERS.items():
        rows = read_grading_labels(gt / GRADING_CSVS[split])
        n_labels += len(rows)
        counts[split] = [0] * 5
        image_dir = grading / IMAGES / split_folder
        present = ({p.stem: p for p in list_files(image_dir, IMAGE_SUFFIXES)}
                   if image_dir.is_dir() else {})
        for name, grade in rows:
            counts[split][grade] += 1
            path = present.get(name)
            if path is None:
                missing.append(image_dir / f"{name}.jpg")
                continue
            records.append(Record(image_id=name, image_path=path, grade=grade, masks={}, split=split,
                                  patient_id=name, source="idrid-grading", has_masks=False))
    if require_images and missing:
        first = ", ".join(p.name for p in missing[:3])
        raise DataError(missing[0].parent, f"{len(missing)} of {n_labels} graded images are missing "
                                           f"(first: {first})")
    return GradingSet(records=records, missing=missing, n_labels=n_labels, grade_counts=counts)
