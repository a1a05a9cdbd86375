"""One image of any dataset, as the rest of the library sees it.

Every reader (IDRiD segmentation, IDRiD grading, Kaggle/EyePACS, the synthetic generator through
the same readers) returns :class:`Record` objects, so preprocessing, the Keras pipeline and the
evaluation code never look at folder layouts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

MASK_CODES: tuple[str, ...] = ("MA", "HE", "EX", "SE", "OD")
SOURCES: tuple[str, ...] = ("idrid-segmentation", "idrid-grading", "eyepacs")


@dataclass(frozen=True)
class Record:
    """One fundus image with whatever labels it has.

    image_id:   "IDRiD_01", "IDRiD_001", "10_left", ... (the file name without extension).
                IDRiD grading reuses IDRiD_001.. in train and test; use ``key`` for a unique id.
    image_path: the image file.
    grade:      DR grade 0..4 (ICDRS), None when the image is not graded (IDRiD segmentation).
    masks:      lesion code ("MA", "HE", "EX", "SE", "OD") -> mask file. When ``has_masks`` a missing
                key means the image has none of that lesion (IDRiD omits empty masks).
    split:      "train" | "test" (| "val").
    patient_id: EyePACS: the number before _left/_right; IDRiD: the image_id.
    source:     "idrid-segmentation" | "idrid-grading" | "eyepacs".
    has_masks:  True for lesion-annotated images (absent mask = empty), False for grade-only images.
    """

    image_id: str
    image_path: Path
    grade: int | None
    masks: dict[str, Path] = field(default_factory=dict, hash=False, compare=True)
    split: str = "train"
    patient_id: str = ""
    source: str = ""
    has_masks: bool = False

    @property
    def key(self) -> str:
        """A unique, stable id across sources and splits: "<source>/<split>/<image_id>"."""
        return f"{self.source}/{self.split}/{self.image_id}"

    def __hash__(self) -> int:  # masks is a dict: hash the identity fields only
        return hash((self.image_id, str(self.image_path), self.grade, self.split, self.source))
