"""Kaggle "Diabetic Retinopathy Detection" (EyePACS) reader, patient split and grade balancing.

Kaggle layout: ``train/<patient>_<left|right>.jpeg`` and ``trainLabels.csv`` (columns image,level).
The test images (``test/``) have labels in ``retinopathy_solution.csv`` (image,level,Usage); the paper
pools train and test labels before downsampling, so both are read when present.
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from mtunet.errors import DataError
from mtunet.data.idrid import IMAGE_SUFFIXES, list_files, parse_grade, require_dir
from mtunet.data.records import Record

LABEL_COLUMNS = ("image", "level")
# label file -> image folder it describes (the defaults, when present)
DEFAULT_LABEL_FILES = {"trainLabels.csv": "train", "testLabels.csv": "test",
                       "retinopathy_solution.csv": "test"}
_PATIENT = re.compile(r"^(?P<pid>.+?)_(left|right)$", re.IGNORECASE)


def patient_of(image_id: str) -> str:
    """"10_left" -> "10"; a name without _left/_right is its own patient."""
    m = _PATIENT.match(image_id)
    return m["pid"] if m else image_id


@dataclass
class EyepacsSet:
    """records: label rows whose image exists; n_missing: label rows without an image."""

    records: list[Record]
    n_missing: int
    n_labels: int = 0
    missing_examples: list[str] = field(default_factory=list)  # first few missing names
    label_files: list[Path] = field(default_factory=list)


def load_label_csv(csv_path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """A label CSV as stripped strings; DataError if the file is missing, unreadable or lacks ``columns``.

    Shared by the Kaggle, Messidor-2 and APTOS readers so all three fail with the same one-liners.
    The row index is kept: row ``i`` is line ``i + 2`` of the file (see :func:`parse_label_rows`).
    """
    if not Path(csv_path).is_file():
        raise DataError(csv_path, "missing label file")
    try:
        df = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(csv_path, f"unreadable CSV ({str(exc).splitlines()[0]})") from None
    df.columns = [str(c).strip() for c in df.columns]
    absent = [c for c in columns if c not in df.columns]
    if absent:
        raise DataError(csv_path, f"CSV lacks column(s) {', '.join(map(repr, absent))}; "
                                  f"expected '{','.join(columns)}', found {list(df.columns)}")
    return df


def parse_label_rows(df: pd.DataFrame, csv_path: Path, id_column: str,
                     grade_column: str) -> list[tuple[str, int]]:
    """(id, grade) per row of ``df``; DataError naming the line for an empty id, a grade that is not
    an integer 0-4, or a duplicate id. Line numbers come from the index (rows may have been filtered)."""
    names = df[id_column].str.strip().tolist()
    levels = df[grade_column].str.strip().tolist()
    lines = [int(i) + 2 for i in df.index]
    fast = pd.to_numeric(pd.Series(levels, dtype=object), errors="coerce")
    out: list[tuple[str, int]] = []
    for line, name, level, num in zip(lines, names, levels, fast):
        if not name:
            raise DataError(csv_path, f"line {line}: empty image name")
        if num in (0, 1, 2, 3, 4) and level.isdigit():
            grade = int(level)
        else:
            grade = parse_grade(level, csv_path, line, name)
        out.append((name, grade))
    dup = pd.Series(names, dtype=object).duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise DataError(csv_path, f"line {lines[i]}: duplicate image id {names[i]!r}")
    return out


def read_labels(csv_path: Path) -> list[tuple[str, int]]:
    """(image, level) rows of a Kaggle label CSV; DataError on missing columns, bad grades, duplicates."""
    return parse_label_rows(load_label_csv(csv_path, LABEL_COLUMNS), csv_path, *LABEL_COLUMNS)


def read_eyepacs(root, label_files=None) -> EyepacsSet:
    """Kaggle/EyePACS graded images under ``root``.

    ``label_files``: CSVs with columns image,level, pooled (default: trainLabels.csv, and
    testLabels.csv / retinopathy_solution.csv when present). An image is looked up in ``root/train``
    and, if that folder exists, ``root/test``; its Record.split is the folder it was found in.
    Records are made for rows whose image exists; the rest are counted in ``n_missing``.
    """
    root = require_dir(Path(root))
    if label_files is None:
        label_files = [root / name for name in DEFAULT_LABEL_FILES if (root / name).is_file()]
        if not label_files:
            raise DataError(root / "trainLabels.csv", "missing label file")
    label_files = [Path(p) for p in label_files]
    train_dir = require_dir(root / "train")
    folders = {"train": train_dir}
    if (root / "test").is_dir():
        folders["test"] = root / "test"
    present: dict[str, tuple[str, Path]] = {}
    for split, folder in folders.items():
        for path in list_files(folder, IMAGE_SUFFIXES):
            present.setdefault(path.stem, (split, path))
    records: list[Record] = []
    missing: list[str] = []
    seen: dict[str, Path] = {}
    n_labels = 0
    for csv_path in label_files:
        for name, grade in read_labels(csv_path):
            if name in seen:
                raise DataError(csv_path, f"duplicate image id {name!r} (also in {seen[name].name})")
            seen[name] = csv_path
            n_labels += 1
            hit = present.get(name)
            if hit is None:
                missing.append(name)
                continue
            split, path = hit
            records.append(Record(image_id=name, image_path=path, grade=grade, masks={}, split=split,
                                  patient_id=patient_of(name), source="eyepacs", has_masks=False))
    return EyepacsSet(records=records, n_missing=len(missing), n_labels=n_labels,
                      missing_examples=missing[:5], label_files=label_files)


def split_by_patient(records, test_fraction: float = 0.3, seed: int = 0) -> list[Record]:
    """Records with ``split`` reassigned to "train"/"test" per patient (both eyes on the same side).

    Patients are stratified by their worst eye's grade: within each stratum a seeded shuffle sends
    round(test_fraction * n) patients to test, so every grade keeps about the same share on both
    sides. The order of ``records`` is kept.
    """
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction}")
    by_patient: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        by_patient[r.patient_id].append(r)
    strata: dict[int, list[str]] = defaultdict(list)
    for pid, rs in by_patient.items():
        grades = [r.grade for r in rs if r.grade is not None]
        strata[max(grades) if grades else -1].append(pid)
    rng = np.random.default_rng(seed)
    test_patients: set[str] = set()
    for stratum in sorted(strata):
        pids = sorted(strata[stratum])
        order = rng.permutation(len(pids))
        n_test = int(round(test_fraction * len(pids)))
        test_patients.update(pids[i] for i in order[:n_test])
    return [replace(r, split="test" if r.patient_id in test_patients else "train") for r in records]


BALANCE_RULES = ("grade4", "rarest")


def balanced_downsample(records, seed: int = 0, rule: str = "grade4") -> list[Record]:
    """Downsample every grade to a common count (seeded choice; the original order is kept).

    ``rule="grade4"`` is the paper's: "we downsample the images by the number of images with DR
    severity level of 4" (Kaggle train + test pooled: 1,914 per grade); a grade with fewer images
    than grade 4 keeps all of its own (APTOS 2019 has fewer of grade 3 than of grade 4), and
    without grade-4 images the rarest grade sets the count. ``rule="rarest"``: every grade down to
    the rarest grade's count (strictly equal grades). Ungraded records are dropped.
    """
    if rule not in BALANCE_RULES:
        raise ValueError(f"rule must be one of {BALANCE_RULES}, got {rule!r}")
    by_grade: dict[int, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        if r.grade is not None:
            by_grade[r.grade].append(i)
    if not by_grade:
        return []
    rarest = min(len(v) for v in by_grade.values())
    n = len(by_grade[4]) if rule == "grade4" and 4 in by_grade else rarest
    rng = np.random.default_rng(seed)
    keep: set[int] = set()
    for grade in sorted(by_grade):
        idx = by_grade[grade]
        keep.update(idx[j] for j in rng.choice(len(idx), size=min(n, len(idx)), replace=False))
    return [r for i, r in enumerate(records) if i in keep]


@dataclass(frozen=True)
class PooledGrades:
    """Grade counts of Kaggle label files pooled, and the per-grade size of the paper's balanced set.

    counts:       grade 0-4 -> label rows of that grade over all the files (every grade listed).
    per_grade:    the paper's rule, "downsample the images by the number of images with DR severity
                  level of 4": the count of grade 4 (the paper reports 1,914).
    rarest_grade: the grade with the fewest rows (ties: the highest); per_grade can only be kept for
                  every grade when this is 4.
    file_counts:  label file -> its own grade counts.
    """

    counts: dict[int, int]
    per_grade: int
    rarest_grade: int
    file_counts: dict[Path, dict[int, int]]

    @property
    def n_rows(self) -> int:
        return sum(self.counts.values())


def pooled_grade_counts(train_labels, test_labels) -> PooledGrades:
    """The paper's Kaggle label pool: ``trainLabels.csv`` (image,level) and the test solution
    ``retinopathy_solution.csv`` (image,level,Usage) read, pooled, and counted per grade.

    Labels only: no image is looked up (the staged subset holds 130 of the 88,702 images).
    DataError naming the file for a missing file, a missing image/level column, a grade that is not
    an integer 0-4, or an image id listed twice (within a file, or in both).
    """
    counts = {g: 0 for g in range(5)}
    file_counts: dict[Path, dict[int, int]] = {}
    seen: dict[str, Path] = {}
    for csv_path in (Path(train_labels), Path(test_labels)):
        own = {g: 0 for g in range(5)}
        for name, grade in read_labels(csv_path):
            if name in seen:
                raise DataError(csv_path, f"image id {name!r} is also in {seen[name]}: "
                                          "the pool would count it twice")
            seen[name] = csv_path
            own[grade] += 1
        file_counts[csv_path] = own
        for g, n in own.items():
            counts[g] += n
    rarest = min(sorted(counts, reverse=True), key=counts.__getitem__)
    return PooledGrades(counts=counts, per_grade=counts[4], rarest_grade=rarest, file_counts=file_counts)


def grade_counts(records) -> dict[int, int]:
    """grade -> number of records (ungraded ones under None)."""
    return dict(sorted(Counter(r.grade for r in records).items(), key=lambda kv: (kv[0] is None, kv[0] or 0)))
