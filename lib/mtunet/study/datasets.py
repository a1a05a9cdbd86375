"""What the data look like: the data folder and its inventory, class balance, lesion sizes at each
working resolution, sample images with their masks (notebook 01)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from mtunet.config import project_root, resolve_path
from mtunet.data.records import Record
from mtunet.errors import UserError


def synthetic_data_dir(synthetic: dict[str, Any]) -> Path:
    """Where the built-in synthetic set for these generator settings lives (git-ignored)."""
    tag = "-".join(f"{k}{synthetic[k]}" for k in sorted(synthetic))
    return project_root() / "data" / f"synthetic-{tag}"


def resolve_data_dir(data_dir: str | None, synthetic: dict[str, Any]) -> Path:
    """The data folder to use: the given one, or the synthetic set (generated on first use)."""
    if data_dir:
        path = resolve_path(data_dir).resolve()   # relative paths are relative to the project
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


def inventory_text(data_dir: Path) -> str:
    """`mtunet data check` for a notebook: the inventory, the data folder named relative to the
    project (an executed notebook names no machine paths)."""
    from mtunet.data import check_dataset

    text = check_dataset(data_dir).format()
    return text.replace(str(data_dir), os.path.relpath(data_dir, project_root()))


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


def example_with_truth(records: Sequence[Record], image_size: int, index: int = 0):
    """(image, ground-truth class map) of one record at the working resolution (for overlays)."""
    from mtunet.data.preprocess import prepare_example

    return prepare_example(records[index], image_size)


def example_indexes(records: Sequence[Record], n: int = 2) -> list[int]:
    """Test images with the most annotated lesion types first (the most informative overlays)."""
    order = sorted(range(len(records)), key=lambda i: (-len(records[i].masks), records[i].image_id))
    return order[:n]


KAGGLE_FOLDER = "kaggle-eyepacs-subset"
KAGGLE_TEST_SOLUTION = ("retinopathy_solution.csv", "test-labels/retinopathy_solution.csv")


def kaggle_label_files(data_dir: Path) -> tuple[Path, Path] | None:
    """(trainLabels.csv, the test solution) of the Kaggle folder, or None where either is absent
    (the paper's pool of 88,702 labels needs both; the images are not needed)."""
    root = Path(data_dir) / KAGGLE_FOLDER
    train = root / "trainLabels.csv"
    test = next((root / name for name in KAGGLE_TEST_SOLUTION if (root / name).is_file()), None)
    return (train, test) if train.is_file() and test is not None else None


def kaggle_label_pool(data_dir: Path) -> pd.DataFrame:
    """Grade counts of Kaggle's train and test labels pooled as the paper did, one row per grade,
    with the balanced set the paper's rule gives (every grade downsampled to grade 4's count).
    Empty (with the columns) where the label files are absent."""
    from mtunet.data.eyepacs import pooled_grade_counts

    columns = ["grade", "train_labels", "test_labels", "pooled", "balanced"]
    files = kaggle_label_files(data_dir)
    if files is None:
        return pd.DataFrame(columns=columns)
    pool = pooled_grade_counts(*files)
    train, test = (pool.file_counts[p] for p in files)
    return pd.DataFrame([{"grade": g, "train_labels": train[g], "test_labels": test[g],
                          "pooled": pool.counts[g], "balanced": min(pool.counts[g], pool.per_grade)}
                         for g in range(5)], columns=columns)


CAMERA_ROLES = ("grade_train", "table3_test", "table4_test")   # APTOS, Messidor-2, EyePACS here


def camera_examples(splits, image_size: int, preprocessing: str, grade: int = 2,
                    roles: Sequence[str] = CAMERA_ROLES) -> list[tuple[str, Any, Any]]:
    """One image per grading role (a camera and population each): the first of ``grade`` by image
    id (else of any grade), as the model input and after ``preprocessing``; for the figure
    :func:`mtunet.report.figures.preprocessing_by_camera`."""
    from mtunet.data.pipeline import preprocess_grade_inputs
    from mtunet.data.preprocess import load_arrays

    out = []
    for role in roles:
        records = sorted(splits[role], key=lambda r: r.image_id)
        if not records:
            continue
        record = next((r for r in records if r.grade == grade), records[0])
        raw = load_arrays([record], image_size, progress=False)[0]
        done = preprocess_grade_inputs(raw, preprocessing)
        out.append((f"{record.source} ({role})\n{record.image_id[:24]}, grade {record.grade}",
                    raw[0], done[0]))
    return out
