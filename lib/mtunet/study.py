"""The study's data roles and the hand-over files between notebooks.

Roles (the paper's datasets, as far as they exist here):

    seg_train / seg_test   IDRiD-S, 54 / 27 images with lesion masks (Table 2, Fig. 6; the seed
                           segmenter of Fig. 7)
    grade_train            Kaggle/EyePACS, balanced per grade (paper: 1,914 per grade), the
                           patients not held out; gets pseudo masks (Fig. 7) for Tables 1 and 3
    grade_test             the held-out EyePACS patients (grading test set when IDRiD-D images
                           are absent)
    idrid_grading_test     IDRiD-D test images (Table 3's set in the paper), when present
    external_test          an external graded set (the paper's private SiDRP14-15, Table 4)

Notebook 01 decides the roles and writes `results/<profile>/splits.csv` with paths relative to
the data folder; later notebooks read it back (papermill runs each notebook in a fresh kernel).
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from mtunet.config import REPO_ROOT
from mtunet.data.records import Record
from mtunet.errors import UserError

ROLES = ("seg_train", "seg_test", "grade_train", "grade_test", "idrid_grading_test", "external_test")
SPLITS_FILE = "splits.csv"
STUDY_FILE = "study.json"


def synthetic_data_dir(synthetic: dict[str, Any]) -> Path:
    """Where the built-in synthetic set for these generator settings lives (git-ignored)."""
    tag = "-".join(f"{k}{synthetic[k]}" for k in sorted(synthetic))
    return REPO_ROOT / "data" / f"synthetic-{tag}"


def resolve_data_dir(data_dir: str | None, synthetic: dict[str, Any]) -> Path:
    """The data folder to use: the given one, or the synthetic set (generated on first use)."""
    if data_dir:
        path = Path(data_dir)
        if not path.is_absolute():
            path = (REPO_ROOT / path).resolve()  # relative paths are relative to the project
        if not path.is_dir():
            raise UserError(f"{data_dir}: data folder not found (expected IDRiD/ and/or "
                            "kaggle-eyepacs-subset/ inside)")
        return path
    from mtunet.data.synthetic import write_synthetic

    path = synthetic_data_dir(synthetic)
    if not (path / ".complete").exists():
        write_synthetic(path, **synthetic)
        (path / ".complete").write_text("ok\n")
    return path


@dataclasses.dataclass
class StudySplits:
    roles: dict[str, list[Record]]
    notes: dict[str, str]               # role -> what it is / why it is empty

    def __getitem__(self, role: str) -> list[Record]:
        return self.roles.get(role, [])

    def summary(self) -> pd.DataFrame:
        rows = []
        for role in ROLES:
            records = self[role]
            grades = pd.Series([r.grade for r in records if r.grade is not None], dtype="Int64")
            rows.append({"role": role, "images": len(records),
                         "with_masks": sum(r.has_masks for r in records),
                         **{f"grade_{g}": int((grades == g).sum()) for g in range(5)},
                         "note": self.notes.get(role, "")})
        return pd.DataFrame(rows)


def build_splits(data_dir: Path, grade_test_fraction: float = 0.3, split_seed: int = 0,
                 balance: bool = True, external_grading_dir: str | None = None) -> StudySplits:
    """Read every dataset present under `data_dir` and assign the study's roles."""
    from mtunet.data import load_data_root
    from mtunet.data.eyepacs import balanced_downsample, split_by_patient

    root = load_data_root(data_dir)
    roles: dict[str, list[Record]] = {role: [] for role in ROLES}
    notes: dict[str, str] = {}
    roles["seg_train"] = [r for r in root.idrid_seg if r.split == "train"]
    roles["seg_test"] = [r for r in root.idrid_seg if r.split == "test"]
    notes["seg_train"] = notes["seg_test"] = "IDRiD-S (A. Segmentation)"
    if root.eyepacs is not None and root.eyepacs.records:
        pool = root.eyepacs.records
        if balance:
            pool = balanced_downsample(pool, seed=split_seed)
        split = split_by_patient(pool, test_fraction=grade_test_fraction, seed=split_seed)
        roles["grade_train"] = [r for r in split if r.split == "train"]
        roles["grade_test"] = [r for r in split if r.split == "test"]
        notes["grade_train"] = (f"Kaggle/EyePACS, {'balanced per grade, ' if balance else ''}"
                                f"{len(root.eyepacs.records)} images with labels present, "
                                f"{root.eyepacs.n_missing} label rows without image")
        notes["grade_test"] = f"Kaggle/EyePACS held-out patients ({grade_test_fraction:.0%})"
    else:
        notes["grade_train"] = notes["grade_test"] = "no Kaggle/EyePACS folder found"
    grading = root.idrid_grading
    if grading is not None and any(r.split == "test" for r in grading.records):
        roles["idrid_grading_test"] = [r for r in grading.records if r.split == "test"]
        notes["idrid_grading_test"] = f"IDRiD-D test images ({len(grading.missing)} listed images missing)"
    else:
        n_missing = len(grading.missing) if grading is not None else 0
        notes["idrid_grading_test"] = (f"IDRiD-D grading images not available ({n_missing} listed, "
                                       "none present)" if grading is not None else
                                       "no IDRiD grading labels found")
    if external_grading_dir:
        external = Path(external_grading_dir)
        roles["external_test"] = read_external(external if external.is_absolute()
                                               else REPO_ROOT / external)
        notes["external_test"] = f"external graded set: {Path(external_grading_dir).name}"
    else:
        notes["external_test"] = "no external graded set supplied (--external-grading-dir)"
    return StudySplits(roles, notes)


def read_external(path: Path) -> list[Record]:
    """An external graded set in the Kaggle layout or the IDRiD grading layout (all its images)."""
    from mtunet.data import detect_layout
    from mtunet.data.eyepacs import read_eyepacs
    from mtunet.data.idrid import read_grading

    layout = detect_layout(path)
    if layout == "eyepacs":
        records = read_eyepacs(path).records
    elif layout == "idrid":
        records = read_grading(path).records
    else:
        raise UserError(f"{path}: external grading set must be a Kaggle-style folder "
                        f"(train/ + trainLabels.csv) or an IDRiD folder; found layout {layout!r}")
    if not records:
        raise UserError(f"{path}: no graded images found")
    return [dataclasses.replace(r, split="test") for r in records]


def inventory_text(data_dir: Path) -> str:
    """`mtunet data check` for a notebook: the inventory, the data folder named relative to the
    project (an executed notebook names no machine paths)."""
    from mtunet.data import check_dataset

    text = check_dataset(data_dir).format()
    return text.replace(str(data_dir), os.path.relpath(data_dir, REPO_ROOT))


def _relative(path: Path, base: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


def save_splits(splits: StudySplits, results_dir: Path, data_dir: Path) -> Path:
    """splits.csv (paths relative to the data folder) and study.json (the data folder, notes)."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for role in ROLES:
        for r in splits[role]:
            rows.append({"role": role, "image_id": r.image_id,
                         "image_path": _relative(r.image_path, data_dir),
                         "grade": r.grade, "split": r.split, "patient_id": r.patient_id,
                         "source": r.source, "has_masks": r.has_masks,
                         "masks": json.dumps({k: _relative(v, data_dir) for k, v in r.masks.items()})})
    frame = pd.DataFrame(rows, columns=["role", "image_id", "image_path", "grade", "split",
                                        "patient_id", "source", "has_masks", "masks"])
    frame["grade"] = frame["grade"].astype("Int64")
    frame.to_csv(results_dir / SPLITS_FILE, index=False)
    study = {"data_dir": os.path.relpath(data_dir, REPO_ROOT), "notes": splits.notes}
    (results_dir / STUDY_FILE).write_text(json.dumps(study, indent=2))
    return results_dir / SPLITS_FILE


def load_splits(results_dir: Path) -> tuple[StudySplits, Path]:
    """Read back what notebook 01 wrote; returns the splits and the data folder."""
    results_dir = Path(results_dir)
    path = results_dir / SPLITS_FILE
    if not path.exists():
        raise UserError(f"{path}: missing; run notebook 01_data_preparation first")
    study = json.loads((results_dir / STUDY_FILE).read_text())
    data_dir = (REPO_ROOT / study["data_dir"]).resolve()
    frame = pd.read_csv(path, dtype={"image_id": str, "patient_id": str}, keep_default_na=False)
    roles: dict[str, list[Record]] = {role: [] for role in ROLES}
    for row in frame.itertuples(index=False):
        grade = None if row.grade in ("", None) else int(row.grade)
        masks = {k: data_dir / v for k, v in json.loads(row.masks).items()}
        roles[row.role].append(Record(row.image_id, data_dir / row.image_path, grade, masks,
                                      row.split, str(row.patient_id), row.source,
                                      str(row.has_masks) == "True"))
    return StudySplits(roles, study["notes"]), data_dir


def split_integrity(splits: StudySplits) -> pd.DataFrame:
    """Leakage checks: no image id, file or EyePACS patient on both sides of a split."""
    def overlap(a: list[Record], b: list[Record], attr) -> set:
        return {attr(r) for r in a} & {attr(r) for r in b}

    checks = [
        ("IDRiD-S: no image in both train and test", splits["seg_train"], splits["seg_test"],
         lambda r: r.image_id),
        ("IDRiD-S: no file in both train and test", splits["seg_train"], splits["seg_test"],
         lambda r: Path(r.image_path).resolve()),
        ("EyePACS: no image in both train and test", splits["grade_train"], splits["grade_test"],
         lambda r: r.image_id),
        ("EyePACS: no patient in both train and test", splits["grade_train"], splits["grade_test"],
         lambda r: r.patient_id),
    ]
    rows = []
    for name, a, b, attr in checks:
        shared = overlap(a, b, attr)
        rows.append({"check": name, "ok": not shared, "overlap": len(shared),
                     "examples": ", ".join(sorted(map(str, shared))[:3])})
    return pd.DataFrame(rows)


def lesion_pixel_fractions(records: list[Record], image_size: int) -> pd.DataFrame:
    """Fraction of pixels (0-1) each lesion covers in the prepared masks of `records`."""
    from mtunet.config import CLASS_INDEX, LESIONS
    from mtunet.data.pipeline import load_arrays

    if not records:
        return pd.DataFrame(columns=["lesion", "fraction"])
    _, labels, _ = load_arrays(records, image_size, progress=False)
    return pd.DataFrame({"lesion": list(LESIONS),
                         "fraction": [float((labels == CLASS_INDEX[l]).mean()) for l in LESIONS]})


LESION_SIZE_COLUMNS = ["lesion", "image_size", "components", "median_diameter_px",
                       "share_below_1px", "share_below_3px", "mask_inflation"]


def lesion_sizes(records: list[Record], sizes=(128, 256, 512)) -> pd.DataFrame:
    """How big each lesion is at each working resolution: why red-lesion Dice depends on it.

    Lesions are the 8-connected components of each mask inside the fundus crop (the crop and
    square pad of :func:`mtunet.data.preprocess.prepare_example`); a component of area A pixels on
    a square of side L has the equivalent diameter 2·sqrt(A/π)·S/L at working size S. Per lesion
    type and size: the number of components, their median diameter, the share under 1 and 3
    pixels across, and ``mask_inflation`` = lesion pixels after the any-overlap resize / the
    lesion's true area at that size (how much fatter the training and scoring masks are).
    ``image_size`` "native" is the files' own resolution.
    """
    import cv2
    import numpy as np

    from mtunet.config import LESIONS
    from mtunet.data.preprocess import fundus_bbox, load_rgb, pad_to_square, read_mask, resize_mask

    diameters: dict[str, list[np.ndarray]] = {code: [] for code in LESIONS}
    area: dict[tuple[str, object], float] = {}
    for record in records:
        image = load_rgb(record.image_path)
        y0, y1, x0, x1 = fundus_bbox(image)
        side = max(y1 - y0, x1 - x0)
        for code in LESIONS:
            path = (record.masks or {}).get(code)
            if path is None:
                continue
            mask = read_mask(path)[y0:y1, x0:x1]
            n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
            areas = stats[1:n, cv2.CC_STAT_AREA].astype(float)
            diameters[code].append(2 * np.sqrt(areas / np.pi) / side)   # in units of the side
            square = pad_to_square(mask)
            true_area = float(areas.sum())
            for size in sizes:
                key = (code, size)
                area[key] = area.get(key, 0.0) + float(resize_mask(square, size).sum())
                area[(code, size, "true")] = (area.get((code, size, "true"), 0.0)
                                              + true_area * (size / side) ** 2)
            area[(code, "native_side")] = area.get((code, "native_side"), 0.0) + side
            area[(code, "n_images")] = area.get((code, "n_images"), 0.0) + 1
    rows = []
    for code in LESIONS:
        relative = np.concatenate(diameters[code]) if diameters[code] else np.zeros(0)
        if not len(relative):
            continue
        native = area[(code, "native_side")] / area[(code, "n_images")]
        for size in ("native", *sizes):
            scale = native if size == "native" else size
            d = relative * scale
            inflation = (area[(code, size)] / area[(code, size, "true")]
                         if size != "native" and area[(code, size, "true")] else 1.0)
            rows.append({"lesion": code, "image_size": size if size != "native" else f"native (~{native:.0f})",
                         "components": int(len(d)), "median_diameter_px": float(np.median(d)),
                         "share_below_1px": float(np.mean(d < 1)), "share_below_3px": float(np.mean(d < 3)),
                         "mask_inflation": float(inflation)})
    return pd.DataFrame(rows, columns=LESION_SIZE_COLUMNS)


def sample_examples(records: list[Record], image_size: int, n: int = 4, by_grade: bool = False):
    """(images, class maps, titles) of the first `n` records (one per grade when `by_grade`)."""
    from mtunet.data.pipeline import load_arrays

    chosen = list(records[:n])
    if by_grade:
        first = {}
        for r in records:
            first.setdefault(r.grade, r)
        chosen = [first[g] for g in sorted(first, key=lambda g: -1 if g is None else g)][:n]
    if not chosen:
        return [], [], []
    images, labels, _ = load_arrays(chosen, image_size, progress=False)
    titles = [r.image_id + ("" if r.grade is None else f" (grade {r.grade})") for r in chosen]
    return list(images), list(labels), titles
