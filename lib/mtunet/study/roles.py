"""The study's data roles: which images play which part, and the splits file notebook 01 hands on.

Roles (the paper's datasets, as far as they exist here):

    seg_train / seg_test   IDRiD-S, 54 / 27 images with lesion masks (Table 2, Fig. 6; the seed
                           segmenter of Fig. 7)
    grade_train            the grading training set, in the role of the paper's balanced Kaggle set
                           (1,914 per grade): the sets named by ``grading_train_sets``, pooled,
                           balanced per grade, the groups not held out; gets pseudo masks (Fig. 7)
                           for Tables 1 and 3
    grade_test             the held-out groups of the same pool (the training population)
    table3_test            Table 3's test set (the paper's IDRiD-D), chosen by ``table3_set``
    table4_test            Table 4's test set (the paper's private SiDRP14-15), chosen by
                           ``table4_set`` or ``--external-grading-dir``

**The mapping** is data (profile parameters), not code. The paper trains its graders on one
population and tests them on two others. The ``cpu`` and ``paper`` profiles map that as: train on
APTOS 2019 (India; a Kaggle competition set, balanced by the paper's rule), Table 3 on Messidor-2
(France; a public benchmark, in IDRiD-D's role), Table 4 on the Kaggle/EyePACS subset (USA; the
paper's own training population, which our graders never see). The defaults (smoke) keep the
layout the synthetic generator writes: EyePACS for training, IDRiD-D (else the held-out EyePACS
patients) for Table 3, Table 4 only with an external folder. A named set that is absent from the
data folder falls back to those defaults, and the role's note says so.

**Leakage.** A group is the unit that never straddles two roles: an EyePACS patient (both eyes),
a Messidor-2 examination (both eyes; guessed from file names, :func:`mtunet.data.messidor.exam_ids`),
an APTOS image. Byte-identical files are one photograph: within the graded sets, copies that agree
on the grade are kept once, copies that disagree (30 of APTOS's 123 groups) are dropped entirely
(their label is unknown). Test sets are drawn after the training pool, from what it left, so no
group and no file content is on two sides; :func:`split_integrity` checks it afterwards by image,
file hash and group.

Notebook 01 decides the roles and writes ``results/<profile>/splits.csv`` with paths relative to
the data folder; later notebooks read it back (papermill runs each notebook in a fresh kernel).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from mtunet.config import project_root, resolve_path
from mtunet.data.records import Record
from mtunet.errors import UserError
# the subset rules live in mtunet.study.subsets; their names stay importable from here
from mtunet.study.subsets import (cap_per_grade, equal_allocation, group_of,  # noqa: F401
                                  seeded_subset, split_groups, stratified_subset)

ROLES = ("seg_train", "seg_test", "grade_train", "grade_test", "table3_test", "table4_test")
SPLITS_FILE = "splits.csv"
STUDY_FILE = "study.json"

# The graded sets a role can be drawn from (Record.source values), with what they stand for.
GRADED_SETS: dict[str, str] = {
    "eyepacs": "Kaggle/EyePACS subset (USA)",
    "aptos2019": "APTOS 2019 (India, Aravind Eye Hospital)",
    "messidor-2": "Messidor-2 (France)",
    "idrid-grading": "IDRiD-D test images (India)",
}
TRAIN_SETS = ("eyepacs", "aptos2019", "messidor-2")
# Choices for table3_set / table4_set besides the graded sets.
TEST_CHOICES = ("auto", "grade_test", "external", "none", *GRADED_SETS)
PAPER_SETS = {"table3_test": "IDRiD-D", "table4_test": "SiDRP14-15"}
DEFAULT_TRAIN_SETS = ("eyepacs",)


@dataclasses.dataclass
class StudySplits:
    roles: dict[str, list[Record]]
    notes: dict[str, str]               # role -> what it is / why it is empty
    origins: dict[str, str] = dataclasses.field(default_factory=dict)
    # role -> where it came from: a GRADED_SETS name, "grade_test" (held out of the training
    # pool), "external" (--external-grading-dir) or "none"

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

    def is_stand_in(self, role: str) -> bool:
        """True when a test role is not the paper's own set (always, for Table 4's SiDRP14-15)."""
        return not (role == "table3_test" and self.origins.get(role) == "idrid-grading")


def grading_test_set(splits: StudySplits, role: str = "auto") -> tuple[str, list[Record]]:
    """The grading test role of Table 1's ROC and Table 3: ``table3_test`` when it holds images
    ("auto"), else ``grade_test``; or the role named."""
    if role == "auto":
        role = "table3_test" if splits["table3_test"] else "grade_test"
    if role not in ROLES:
        raise UserError(f"grading_test_role {role!r}: expected 'auto' or one of {ROLES}")
    return role, splits[role]


# ---------------------------------------------------------------------------------------------
# Duplicates
# ---------------------------------------------------------------------------------------------

def file_digest(path: Path) -> str:
    """sha1 of the file's bytes (byte-identical copies of one photograph share it)."""
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def file_digests(records: Iterable[Record]) -> dict[str, str]:
    """image path -> sha1 of its bytes."""
    return {str(r.image_path): file_digest(r.image_path) for r in records}


@dataclasses.dataclass
class Deduplicated:
    records: list[Record]               # one record per photograph, in the input order
    copies_removed: int                 # extra copies of a photograph whose grades agree
    conflicts: list[list[Record]]       # photographs whose copies disagree on the grade (dropped)


def deduplicate(records: Sequence[Record], digests: Mapping[str, str]) -> Deduplicated:
    """Byte-identical files are one photograph: keep the first copy (by image id) when every copy
    has the same grade, drop them all when the grades disagree (the label is unknown)."""
    by_digest: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        by_digest[digests[str(r.image_path)]].append(r)
    drop: set[int] = set()
    conflicts, removed = [], 0
    for copies in by_digest.values():
        if len(copies) < 2:
            continue
        if len({r.grade for r in copies}) > 1:
            conflicts.append(sorted(copies, key=lambda r: r.image_id))
            drop.update(id(r) for r in copies)
        else:
            keep = min(copies, key=lambda r: r.image_id)
            drop.update(id(r) for r in copies if r is not keep)
            removed += len(copies) - 1
    return Deduplicated([r for r in records if id(r) not in drop], removed, conflicts)


# ---------------------------------------------------------------------------------------------
# The roles
# ---------------------------------------------------------------------------------------------

def _counts(records: Sequence[Record]) -> str:
    c = Counter(r.grade for r in records)
    return "/".join(str(c.get(g, 0)) for g in range(5))


def _graded_sets(root) -> dict[str, list[Record]]:
    """The graded sets present under a data root (source -> records); IDRiD-D: its test split."""
    sets: dict[str, list[Record]] = {}
    if root.eyepacs is not None and root.eyepacs.records:
        sets["eyepacs"] = list(root.eyepacs.records)
    if root.aptos is not None and root.aptos.records:
        sets["aptos2019"] = list(root.aptos.records)
    if root.messidor is not None and root.messidor.records:
        sets["messidor-2"] = list(root.messidor.records)
    if root.idrid_grading is not None:
        test = [r for r in root.idrid_grading.records if r.split == "test"]
        if test:
            sets["idrid-grading"] = test
    return sets


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise UserError(f"{name} = {value!r}: expected one of {', '.join(map(repr, choices))}")


def build_splits(data_dir: Path, grade_test_fraction: float = 0.3, split_seed: int = 0,
                 balance: bool = True, external_grading_dir: str | None = None, *,
                 grading_train_sets: Sequence[str] = DEFAULT_TRAIN_SETS,
                 grading_train_per_grade: int | None = None,
                 table3_set: str = "auto", table3_test_images: int | None = None,
                 table4_set: str = "auto", table4_test_images: int | None = None,
                 seg_train_images: int | None = None, seg_test_images: int | None = None,
                 grade_train_images: int | None = None,
                 grade_test_images: int | None = None) -> StudySplits:
    """Read every dataset present under `data_dir` and assign the study's roles.

    grading_train_sets       graded sets pooled for grade_train / grade_test (see TRAIN_SETS)
    grading_train_per_grade  cap on grade_train images per grade after balancing (None: no cap)
    grade_test_fraction      share of the pool's groups held out as grade_test
    balance                  the paper's rule: as many images per grade as the rarest grade has
    table3_set, table4_set   a graded set (GRADED_SETS), "grade_test", "none", "auto" (Table 3:
                             IDRiD-D when its images exist, else grade_test; Table 4: the external
                             folder if given, else none) or "external" (Table 4)
    table3/4_test_images     a stratified subset of that many images (whole groups; None: all)
    seg_train/test_images    a seeded subset of that many IDRiD-S train / test images (None: all)
    grade_train/test_images  a stratified subset of grade_train (after the cap per grade) /
                             grade_test (whole groups; None: all); the images left out stay out
                             of every other role
    external_grading_dir     a graded folder for Table 4; when given it is Table 4's set

    The image limits make a miniature of a profile (every step on a few images, the same ones on
    every run: :mod:`mtunet.study.subsets`); None keeps the paper's sets whole.
    """
    from mtunet.data import load_data_root

    for name in grading_train_sets:
        _check_choice("grading_train_sets", name, TRAIN_SETS)
    _check_choice("table3_set", table3_set, TEST_CHOICES)
    _check_choice("table4_set", table4_set, TEST_CHOICES)
    root = load_data_root(data_dir)
    splits = StudySplits({role: [] for role in ROLES}, {}, {})
    _segmentation_roles(splits, root.idrid_seg, seg_train_images, seg_test_images, split_seed)
    # Only the sets this mapping can draw from are read byte by byte (hashes, duplicates).
    needed = {*grading_train_sets, *DEFAULT_TRAIN_SETS, table3_set, table4_set, "idrid-grading"}
    available = {k: v for k, v in _graded_sets(root).items() if k in needed}
    external = (read_external(resolve_path(Path(external_grading_dir)))
                if external_grading_dir else None)
    digests = file_digests([r for rs in available.values() for r in rs] + (external or []))
    dedup = {name: deduplicate(rs, digests) for name, rs in available.items()}
    drawn = _Drawn(digests)
    train_sets = _training_pool(splits, dedup, grading_train_sets, grading_train_per_grade,
                                grade_test_fraction, split_seed, balance, drawn)
    for role, n in (("grade_train", grade_train_images), ("grade_test", grade_test_images)):
        _limit_graded(splits, role, n, split_seed)
    # Tables 3 and 4, drawn in that order from what the pool (and Table 3) left.
    for role, choice, n_images in (("table3_test", table3_set, table3_test_images),
                                   ("table4_test", table4_set, table4_test_images)):
        if external is not None and role == "table4_test":
            origin, records = "external", external
            note = f"external graded set: {Path(external_grading_dir).name}"
            if choice not in ("auto", "external"):
                note += f" (--external-grading-dir overrides table4_set = {choice!r})"
        else:
            origin, records, note = _test_set(role, choice, dedup, splits, train_sets)
        if origin != "grade_test" and records:
            records, note = _drawn_test_set(records, note, n_images, split_seed, drawn)
            extra = _dedup_note(origin, dedup[origin]) if origin in dedup else ""
            note += f"; grades 0-4: {_counts(records)}" + (f"; {extra}" if extra else "")
        splits.roles[role], splits.notes[role], splits.origins[role] = records, note, origin
    return splits


def _segmentation_roles(splits: StudySplits, idrid_seg: Sequence[Record], n_train: int | None,
                        n_test: int | None, seed: int) -> None:
    """seg_train / seg_test: IDRiD-S as published, or a seeded subset of each (a miniature)."""
    for role, split, n, name in (("seg_train", "train", n_train, "seg_train_images"),
                                 ("seg_test", "test", n_test, "seg_test_images")):
        published = [r for r in idrid_seg if r.split == split]
        splits.roles[role] = seeded_subset(published, n, seed, name)
        note = "IDRiD-S (A. Segmentation)"
        if len(splits.roles[role]) < len(published):
            note += f"; seeded subset of {len(splits.roles[role])} of its {len(published)} images"
        splits.notes[role] = note


def _limit_graded(splits: StudySplits, role: str, n: int | None, seed: int) -> None:
    """A graded role cut to a stratified subset of ``n`` images (whole groups; None: all)."""
    held = splits[role]
    if n is None or len(held) <= n:
        return
    splits.roles[role] = stratified_subset(held, n, seed)
    splits.notes[role] += (f"; stratified subset of {len(splits[role])} of its {len(held)} images "
                           "(the rest are used nowhere)")


def _drawn_test_set(records: list[Record], note: str, n_images: int | None, seed: int,
                    drawn: "_Drawn") -> tuple[list[Record], str]:
    """A test set without the groups and files another role holds, cut to ``n_images``
    (stratified, whole groups); the note says what was left out."""
    kept = drawn.unused(records)
    if len(kept) < len(records):
        note += f"; {len(records) - len(kept)} images left out (their group or file is in another role)"
    records = [dataclasses.replace(r, split="test") for r in kept]
    if n_images is not None and len(records) > n_images:
        records = stratified_subset(records, n_images, seed)
        note += (f"; stratified subset of {len(records)} images, whole groups, as equal per "
                 "grade as the set allows")
    elif n_images is not None:
        note += f"; all {len(records)} images (a subset of {n_images} was asked for)"
    drawn.add(records)
    return records, note


class _Drawn:
    """The groups and file contents already given a role (a test set is drawn from the rest)."""

    def __init__(self, digests: Mapping[str, str]):
        self.digests, self.groups, self.files = digests, set(), set()

    def add(self, records: Iterable[Record]) -> None:
        for r in records:
            self.groups.add(group_of(r))
            self.files.add(self.digests[str(r.image_path)])

    def unused(self, records: Iterable[Record]) -> list[Record]:
        return [r for r in records
                if group_of(r) not in self.groups and self.digests[str(r.image_path)] not in self.files]


def _training_pool(splits: StudySplits, dedup: dict[str, "Deduplicated"], wanted: Sequence[str],
                   per_grade: int | None, test_fraction: float, seed: int, balance: bool,
                   drawn: _Drawn) -> list[str]:
    """Fill grade_train / grade_test from the named sets present (else the defaults, said in the
    note); returns the sets used."""
    from mtunet.data.eyepacs import balanced_downsample

    wanted = list(dict.fromkeys(wanted))
    train_sets = [s for s in wanted if s in dedup]
    fallback = ""
    if len(train_sets) < len(wanted):
        absent = [s for s in wanted if s not in train_sets]
        if not train_sets:
            train_sets = [s for s in DEFAULT_TRAIN_SETS if s in dedup]
        fallback = (f"; {', '.join(absent)} not in the data folder: fell back to "
                    f"{', '.join(train_sets) or 'none'}")
    pool = [r for s in train_sets for r in dedup[s].records]
    if not pool:
        splits.notes["grade_train"] = splits.notes["grade_test"] = f"no graded training set found{fallback}"
        return train_sets
    n_present = len(pool)
    if balance:
        pool = balanced_downsample(pool, seed=seed)
    split = split_groups(pool, test_fraction, seed)
    drawn.add(split)
    splits.roles["grade_train"] = cap_per_grade([r for r in split if r.split == "train"], per_grade, seed)
    splits.roles["grade_test"] = [r for r in split if r.split == "test"]
    names = " + ".join(GRADED_SETS[s] for s in train_sets)
    duplicates = "; ".join(filter(None, (_dedup_note(s, dedup[s]) for s in train_sets)))
    cap = f", at most {per_grade} per grade" if per_grade else ""
    splits.notes["grade_train"] = (f"{names}: {n_present} distinct graded images"
                                   f"{', balanced per grade' if balance else ''}, the groups not held "
                                   f"out{cap}{'; ' + duplicates if duplicates else ''}{fallback}")
    splits.notes["grade_test"] = (f"{names}: held-out groups ({test_fraction:.0%} of the balanced "
                                  "pool), the training population")
    splits.origins["grade_train"] = splits.origins["grade_test"] = "+".join(train_sets)
    return train_sets


def _dedup_note(source: str, d: Deduplicated) -> str:
    if not d.copies_removed and not d.conflicts:
        return ""
    parts = []
    if d.copies_removed:
        parts.append(f"{d.copies_removed} byte-identical copies kept once")
    if d.conflicts:
        parts.append(f"{sum(map(len, d.conflicts))} images in {len(d.conflicts)} identical-file "
                     "groups with different grades dropped")
    return f"{source}: " + ", ".join(parts)


def _test_set(role: str, choice: str, dedup: dict[str, Deduplicated], splits: StudySplits,
              train_sets: Sequence[str]) -> tuple[str, list[Record], str]:
    """(origin, records, note) of Table 3's or Table 4's test set."""
    paper = PAPER_SETS[role]
    if choice == "auto":
        if role == "table3_test" and "idrid-grading" in dedup:
            choice = "idrid-grading"
        elif role == "table3_test":
            choice = "grade_test"
        else:
            return "none", [], f"no external graded set supplied (--external-grading-dir); {paper} is private"
    if choice == "none":
        return "none", [], f"not computed (table set 'none'); paper: {paper}"
    if choice == "external":
        return "none", [], f"no external graded set supplied (--external-grading-dir); paper: {paper}"
    if choice == "grade_test":
        return ("grade_test", list(splits["grade_test"]),
                f"grade_test (held-out groups of the training population) in {paper}'s role")
    if choice not in dedup:
        fallback = _test_set(role, "auto", dedup, splits, train_sets)
        return fallback[0], fallback[1], f"{choice} not in the data folder: fell back; " + fallback[2]
    if choice in train_sets:
        note = (f"{GRADED_SETS[choice]}: the groups the training pool left (same population as "
                f"training) in {paper}'s role")
    elif choice == "idrid-grading":
        note = f"{GRADED_SETS[choice]}: the paper's own Table 3 set"
    else:
        note = f"{GRADED_SETS[choice]}: a population the graders never saw, in {paper}'s role"
    return choice, list(dedup[choice].records), note


def splits_from_parameters(data_dir: Path, parameters: Mapping[str, Any]) -> StudySplits:
    """:func:`build_splits` with a profile's / notebook's parameters (missing names: defaults)."""
    from mtunet.study.parameters import with_defaults

    p = with_defaults(parameters)
    return build_splits(data_dir, p["grade_test_fraction"], p["split_seed"], p["balance_grades"],
                        p["external_grading_dir"], grading_train_sets=p["grading_train_sets"],
                        grading_train_per_grade=p["grading_train_per_grade"],
                        table3_set=p["table3_set"], table3_test_images=p["table3_test_images"],
                        table4_set=p["table4_set"], table4_test_images=p["table4_test_images"],
                        seg_train_images=p["seg_train_images"], seg_test_images=p["seg_test_images"],
                        grade_train_images=p["grade_train_images"],
                        grade_test_images=p["grade_test_images"])


def read_external(path: Path) -> list[Record]:
    """An external graded set in the Kaggle, IDRiD, Messidor-2 or APTOS layout (all its images)."""
    from mtunet.data import detect_layout, read_aptos, read_messidor
    from mtunet.data.eyepacs import read_eyepacs
    from mtunet.data.idrid import read_grading

    layout = detect_layout(path)
    readers = {"eyepacs": lambda p: read_eyepacs(p).records, "idrid": lambda p: read_grading(p).records,
               "messidor": lambda p: read_messidor(p).records, "aptos": lambda p: read_aptos(p).records}
    if layout not in readers:
        raise UserError(f"{path}: external grading set must be a Kaggle-style folder "
                        f"(train/ + trainLabels.csv), an IDRiD, Messidor-2 or APTOS folder; "
                        f"found layout {layout!r}")
    records = readers[layout](path)
    if not records:
        raise UserError(f"{path}: no graded images found")
    return [dataclasses.replace(r, split="test") for r in records]


# ---------------------------------------------------------------------------------------------
# splits.csv
# ---------------------------------------------------------------------------------------------

def _relative(path: Path, base: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


def save_splits(splits: StudySplits, results_dir: Path, data_dir: Path) -> Path:
    """splits.csv (paths relative to the data folder) and study.json (the data folder, notes,
    origins)."""
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
    study = {"data_dir": os.path.relpath(data_dir, project_root()), "notes": splits.notes,
             "origins": splits.origins}
    (results_dir / STUDY_FILE).write_text(json.dumps(study, indent=2))
    return results_dir / SPLITS_FILE


def load_splits(results_dir: Path) -> tuple[StudySplits, Path]:
    """Read back what notebook 01 wrote; returns the splits and the data folder."""
    results_dir = Path(results_dir)
    path = results_dir / SPLITS_FILE
    if not path.exists():
        raise UserError(f"{path}: missing; run notebook 01_data_preparation first")
    study = json.loads((results_dir / STUDY_FILE).read_text())
    data_dir = resolve_path(study["data_dir"]).resolve()
    frame = pd.read_csv(path, dtype={"image_id": str, "patient_id": str}, keep_default_na=False)
    unknown = sorted(set(frame["role"]) - set(ROLES))
    if unknown:
        raise UserError(f"{path}: roles {unknown} are not this library's ({', '.join(ROLES)}); "
                        "rerun notebook 01_data_preparation")
    roles: dict[str, list[Record]] = {role: [] for role in ROLES}
    for row in frame.itertuples(index=False):
        grade = None if row.grade in ("", None) else int(row.grade)
        masks = {k: data_dir / v for k, v in json.loads(row.masks).items()}
        roles[row.role].append(Record(row.image_id, data_dir / row.image_path, grade, masks,
                                      row.split, str(row.patient_id), row.source,
                                      str(row.has_masks) == "True"))
    return StudySplits(roles, study["notes"], study.get("origins", {})), data_dir


# ---------------------------------------------------------------------------------------------
# Leakage checks
# ---------------------------------------------------------------------------------------------

GRADING_SIDES = (("grade_train", "grade_test"), ("grade_train", "table3_test"),
                 ("grade_train", "table4_test"), ("table3_test", "table4_test"))


def split_integrity(splits: StudySplits, digests: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Leakage checks: no image, file content or group (EyePACS patient, Messidor-2 examination)
    on both sides of a split — IDRiD-S train/test, and the grading training set against each
    grading test set (and Table 3's against Table 4's, so the two tables are independent).

    File contents are compared by sha1 of the bytes (``digests``: image path -> sha1, computed
    when not given), so a byte-identical copy under another id is caught.
    """
    records = [r for role in ROLES for r in splits[role]]
    if digests is None:
        digests = file_digests({str(r.image_path): r for r in records}.values())

    def content(r: Record) -> str:
        return digests[str(r.image_path)]

    checks = [("IDRiD-S", "seg_train", "seg_test", "image", lambda r: r.image_id),
              ("IDRiD-S", "seg_train", "seg_test", "file content", content)]
    for a, b in GRADING_SIDES:
        if splits.origins.get(a) == splits.origins.get(b) == "grade_test":
            continue                    # both tables on the held-out images, by choice
        checks += [("grading", a, b, "image", lambda r: f"{r.source}/{r.image_id}"),
                   ("grading", a, b, "file content", content),
                   ("grading", a, b, "patient / examination", group_of)]
    rows = []
    for what, a, b, unit, attr in checks:
        shared = {attr(r) for r in splits[a]} & {attr(r) for r in splits[b]}
        rows.append({"check": f"{what}: no {unit} in both {a} and {b}", "ok": not shared,
                     "overlap": len(shared), "examples": ", ".join(sorted(map(str, shared))[:3]),
                     "sizes": f"{len(splits[a])} / {len(splits[b])}"})
    return pd.DataFrame(rows)
