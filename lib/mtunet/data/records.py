"""One image of any dataset, as the rest of the library sees it.

Every reader (IDRiD segmentation, IDRiD grading, Kaggle/EyePACS, Messidor-2, APTOS 2019, the
synthetic generator through the same readers) returns :class:`Record` objects, so preprocessing, the
Keras pipeline and the evaluation code never look at folder layouts.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

MASK_CODES: tuple[str, ...] = ("MA", "HE", "EX", "SE", "OD")
SOURCES: tuple[str, ...] = ("idrid-segmentation", "idrid-grading", "eyepacs", "messidor-2", "aptos2019")


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
    patient_id: EyePACS: the number before _left/_right; Messidor-2: a guessed examination id
                (see mtunet.data.messidor.exam_ids); IDRiD, APTOS: the image_id.
    source:     one of SOURCES.
    has_masks:  True for lesion-annotated images (absent mask = empty), False for grade-only images.
    ignored:    lesion codes whose pixels the segmentation loss skips rather than learns: masks
                that cannot carry those lesions (pseudo masks of 224-px images and red lesions;
                see mtunet.study.pseudo_labelling.multitask_train). Empty for true masks.
    """

    image_id: str
    image_path: Path
    grade: int | None
    masks: dict[str, Path] = field(default_factory=dict, hash=False, compare=True)
    split: str = "train"
    patient_id: str = ""
    source: str = ""
    has_masks: bool = False
    ignored: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """A unique, stable id across sources and splits: "<source>/<split>/<image_id>"."""
        return f"{self.source}/{self.split}/{self.image_id}"

    def __hash__(self) -> int:  # masks is a dict: hash the identity fields only
        return hash((self.image_id, str(self.image_path), self.grade, self.split, self.source))


@dataclass
class GradedSet:
    """A graded set read from one label CSV and one image folder (Messidor-2, APTOS 2019).

    records:   one Record per label row whose image exists (CSV order).
    n_missing: label rows without an image (counted, not an error, as for EyePACS).
    unlabelled: image files that have no label row (counted by ``data check``).
    n_excluded: label rows skipped on purpose (Messidor-2: adjudicated ungradable).
    """

    records: list[Record]
    n_missing: int
    n_labels: int = 0
    missing_examples: list[str] = field(default_factory=list)  # first few missing ids
    unlabelled: list[Path] = field(default_factory=list)
    n_excluded: int = 0
    label_file: Path | None = None

    @property
    def n_patients(self) -> int:
        """Distinct patient_id values (Messidor-2: guessed examinations)."""
        return len({r.patient_id for r in self.records})


def match_images(rows: Iterable[tuple[str, int]], images: dict[str, Path], source: str,
                 patient_of: Callable[[str], str], label_file: Path | None = None) -> GradedSet:
    """Join (image id, grade) label rows with ``images`` (image id -> file) into a GradedSet."""
    records: list[Record] = []
    missing: list[str] = []
    labelled: set[str] = set()
    for image_id, grade in rows:
        labelled.add(image_id)
        path = images.get(image_id)
        if path is None:
            missing.append(image_id)
            continue
        records.append(Record(image_id=image_id, image_path=path, grade=grade, masks={}, split="train",
                              patient_id=patient_of(image_id), source=source, has_masks=False))
    unlabelled = [p for stem, p in images.items() if stem not in labelled]
    return GradedSet(records=records, n_missing=len(missing), n_labels=len(labelled),
                     missing_examples=missing[:5], unlabelled=unlabelled, label_file=label_file)


def data_fingerprint(records: Iterable[Record]) -> str:
    """Hash of the ids, grades, mask files and ignored lesions of the training records (not the
    pixels; records without ignored lesions hash as before that field existed): what a training
    run's key and a cached score's file name say of their data."""
    import hashlib
    import json

    rows = sorted((r.image_id, r.grade, r.split, tuple(sorted((k, Path(v).name) for k, v in r.masks.items())))
                  + ((tuple(r.ignored),) if r.ignored else ()) for r in records)
    return hashlib.sha1(json.dumps(rows, default=str).encode()).hexdigest()[:12]
