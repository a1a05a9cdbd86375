"""The semi-supervised step of the paper's Fig. 7: lesion masks for images that only have a grade.

Paper: "We first use a small dataset where the ground truth segmentation mask is available to
obtain an initial network for the lesion segmentation task. With this initial network, we obtain
the segmentation masks for the training dataset where the images are only labeled with the DR
severity levels. Note that if an image in the training dataset has a severity level of 0, then
we ignore the red and yellow lesion outputs from the initial network."

The masks are written at each image's own size, as one 1-bit palette TIFF per lesion
(`<image_id>_<LESION>.tif`, the IDRiD convention), so the data layer reads them as any other
mask; an image with none of a lesion gets no file for it, as in IDRiD.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from mtunet.config import CLASS_INDEX, LESION_GROUPS, LESIONS
from mtunet.data.records import Record

RED_AND_YELLOW = tuple(i for group in LESION_GROUPS.values() for i in group)


def suppress_lesions_for_grade0(class_map: np.ndarray, grade: int | None) -> np.ndarray:
    """Grade 0 (no DR) has no lesions by definition: set red and yellow pixels to background."""
    if grade != 0:
        return class_map
    out = class_map.copy()
    out[np.isin(out, RED_AND_YELLOW)] = 0
    return out


def write_lesion_masks(class_map: np.ndarray, out_dir: Path, image_id: str,
                       lesions: Sequence[str] = LESIONS) -> dict[str, Path]:
    """One palette TIFF per lesion present in `class_map`; returns lesion -> file."""
    from mtunet.data.synthetic import write_palette_mask

    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for lesion in lesions:
        mask = class_map == CLASS_INDEX[lesion]
        path = out_dir / f"{image_id}_{lesion}.tif"
        if mask.any():
            write_palette_mask(path, mask)
            written[lesion] = path
        elif path.exists():
            path.unlink()  # a stale mask from an earlier segmenter
    return written


@dataclasses.dataclass
class PseudoLabels:
    records: list[Record]          # the input records, now with masks and has_masks=True
    table: pd.DataFrame            # image_id, grade, lesion pixel fractions, suppressed?


def pseudo_label(model, records: Sequence[Record], image_size: int, out_dir: Path,
                 batch_size: int = 4, zero_grade0: bool = True) -> PseudoLabels:
    """Predict lesion masks for grade-only `records` with the seed segmenter `model`."""
    from mtunet.data.preprocess import fit_square, fundus_bbox, load_rgb, restore_label_map
    from mtunet.evaluate import predict_batches

    out_dir = Path(out_dir)
    labelled, rows = [], []
    for start in tqdm(range(0, len(records), batch_size), desc="pseudo-labelling", unit="batch"):
        chunk = list(records[start:start + batch_size])
        originals = [load_rgb(r.image_path) for r in chunk]
        boxes = [fundus_bbox(image) for image in originals]
        batch = np.stack([fit_square(im, image_size, box) for im, box in zip(originals, boxes)])
        seg = predict_batches(model, batch, batch_size)["seg"]
        for record, image, box, probs in zip(chunk, originals, boxes, seg):
            small = probs.argmax(axis=-1).astype(np.uint8)
            small[small >= len(LESIONS) + 1] = 0  # an OD channel is not a lesion
            small = suppress_lesions_for_grade0(small, record.grade) if zero_grade0 else small
            full = restore_label_map(small, image.shape[:2], box)
            masks = write_lesion_masks(full, out_dir, record.image_id)
            labelled.append(dataclasses.replace(record, masks=masks, has_masks=True))
            row = {"image_id": record.image_id, "grade": record.grade,
                   "suppressed_grade0": bool(zero_grade0 and record.grade == 0)}
            row.update({f"{lesion}_fraction": float((small == CLASS_INDEX[lesion]).mean())
                        for lesion in LESIONS})
            rows.append(row)
    return PseudoLabels(labelled, pd.DataFrame(rows))


def attach_masks(records: Sequence[Record], mask_dir: Path) -> list[Record]:
    """Records with the pseudo masks found in `mask_dir` (written earlier by `pseudo_label`)."""
    mask_dir = Path(mask_dir)
    out = []
    for record in records:
        masks = {lesion: mask_dir / f"{record.image_id}_{lesion}.tif" for lesion in LESIONS}
        masks = {k: v for k, v in masks.items() if v.exists()}
        out.append(dataclasses.replace(record, masks=masks, has_masks=True))
    return out
