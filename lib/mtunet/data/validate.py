"""Dataset checks with one-line errors, and the inventory that ``python -m mtunet data check`` prints.

:func:`check_dataset` reads a dataset through the same readers as training (so a set that passes is
a set that loads), then verifies what the readers do not: every image decodes fully and is RGB,
every mask decodes and has its image's size, no image is in both train and test (by id and by the
sha1 of the file bytes). Each problem is a :class:`mtunet.errors.DataError` naming the file.
Label rows whose image is absent (the real IDRiD grading images are not staged; the Kaggle subset
has 130 of 35,126 images) and, for Messidor-2 / APTOS, images without a label row are counted in the
inventory, not errors.
"""
from __future__ import annotations

import hashlib
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from mtunet.config import N_GRADES
from mtunet.errors import DataError
from mtunet.data import aptos, eyepacs, idrid, messidor
from mtunet.data.preprocess import read_mask
from mtunet.data.records import MASK_CODES, GradedSet

IDRID_DIR = "IDRiD"
EYEPACS_DIR = "kaggle-eyepacs-subset"
MESSIDOR_DIR = "messidor-2"
APTOS_DIR = "aptos2019"
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}
_BAR_MIN = 200  # progress bar when verifying at least this many images


def detect_layout(path) -> str:
    """"idrid" | "eyepacs" | "messidor" | "aptos" | "data-root" (a folder holding any of IDRiD/,
    kaggle-eyepacs-subset/, messidor-2/, aptos2019/).

    Messidor-2 and APTOS are also recognised by their folder name, so a copy that lost its label
    CSV reports "missing label file" rather than "not a dataset".
    """
    path = Path(path)
    if not path.exists():
        raise DataError(path, "missing folder")
    if not path.is_dir():
        raise DataError(path, "not a folder")
    if (path / idrid.SEGMENTATION).is_dir() or (path / idrid.GRADING).is_dir():
        return "idrid"
    if (path / "trainLabels.csv").is_file() or (path / "train").is_dir():
        return "eyepacs"
    if (path / messidor.LABEL_FILE).is_file() or path.name == MESSIDOR_DIR:
        return "messidor"
    if (path / aptos.LABEL_FILE).is_file() or (path / aptos.IMAGE_DIR).is_dir() or path.name == APTOS_DIR:
        return "aptos"
    if any((path / name).is_dir() for name in (IDRID_DIR, EYEPACS_DIR, MESSIDOR_DIR, APTOS_DIR)):
        return "data-root"
    raise DataError(path, f"not a dataset: expected '{idrid.SEGMENTATION}'/'{idrid.GRADING}' (IDRiD), "
                          f"trainLabels.csv + train/ (Kaggle), {messidor.LABEL_FILE} (Messidor-2), "
                          f"{aptos.LABEL_FILE} + {aptos.IMAGE_DIR}/ (APTOS), or {IDRID_DIR}/ / "
                          f"{EYEPACS_DIR}/ / {MESSIDOR_DIR}/ / {APTOS_DIR}/ (data root)")


def verify_image(path: Path) -> tuple[tuple[int, int], str]:
    """((width, height), sha1 of the file bytes) after a full decode; DataError if corrupt or grayscale."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DataError(path, f"unreadable file ({exc.strerror or exc})") from None
    if not data:
        raise DataError(path, "empty file (0 bytes)")
    try:
        im = Image.open(io.BytesIO(data))
        im.load()
    except Image.UnidentifiedImageError:
        raise DataError(path, "unreadable image: not an image file") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(path, f"corrupt or truncated image ({exc})") from None
    if im.mode in _GRAY_MODES:
        raise DataError(path, f"grayscale image (PIL mode {im.mode}), expected RGB")
    return im.size, hashlib.sha1(data).hexdigest()


def _verify_splits(records, what: str, check_ids: bool = True,
                   digests: dict[str, str] | None = None) -> dict[str, tuple[int, int]]:
    """Verify every image; DataError when an id or a file content is in more than one split.

    Returns image path -> (width, height); fills ``digests`` (image path -> sha1) when given.
    """
    sizes: dict[str, tuple[int, int]] = {}
    by_hash: dict[str, object] = {}
    by_id: dict[str, object] = {}
    for r in tqdm(records, desc=f"verifying {what}", unit="img", disable=len(records) < _BAR_MIN):
        size, digest = verify_image(r.image_path)
        sizes[str(r.image_path)] = size
        if digests is not None:
            digests[str(r.image_path)] = digest
        if check_ids:
            other = by_id.get(r.image_id)
            if other is not None and other.split != r.split:
                raise DataError(r.image_path, f"image id {r.image_id} is in both {other.split} and {r.split} "
                                              f"(also {other.image_path})")
            by_id.setdefault(r.image_id, r)
        other = by_hash.get(digest)
        if other is not None and other.split != r.split:
            raise DataError(r.image_path, f"same file content (sha1 {digest[:12]}) in {r.split} and "
                                          f"{other.split}: {other.image_path}")
        by_hash.setdefault(digest, r)
    return sizes


@dataclass
class Inventory:
    """What a dataset holds. ``format()`` renders it as the text table the CLI prints."""

    path: Path
    layout: str
    segmentation: dict[str, dict[str, int]] | None = None  # split -> {"images": n, "MA": n, ...}
    grading: dict[str, dict] | None = None  # split -> {"labels": n, "images": n, "grades": [5 ints]}
    grading_missing: list[Path] = field(default_factory=list)
    eyepacs: dict | None = None  # labels, present, missing, missing_examples, grades, splits, unlabelled
    messidor: dict | None = None  # as _graded_summary(): labels, present, missing, grades, sizes, exams, ...
    aptos: dict | None = None  # as _graded_summary()
    notes: list[str] = field(default_factory=list)

    @property
    def n_masks(self) -> int:
        if not self.segmentation:
            return 0
        return sum(row[c] for row in self.segmentation.values() for c in MASK_CODES)

    def format(self) -> str:
        lines = [f"dataset: {self.path} ({self.layout})"]
        if self.segmentation is not None:
            seg = self.segmentation
            total = {k: sum(row[k] for row in seg.values()) for k in ("images",) + MASK_CODES}
            split_txt = "/".join(f"{row['images']} {s}" for s, row in seg.items())
            lines += ["", f"IDRiD segmentation: {total['images']} images ({split_txt}), {self.n_masks} masks"]
            head = f"  {'split':<7}{'images':>7}" + "".join(f"{c:>6}" for c in MASK_CODES) + f"{'masks':>7}"
            lines.append(head)
            for name, row in list(seg.items()) + [("total", total)]:
                n = sum(row[c] for c in MASK_CODES)
                lines.append(f"  {name:<7}{row['images']:>7}" + "".join(f"{row[c]:>6}" for c in MASK_CODES)
                             + f"{n:>7}")
        if self.grading is not None:
            lines += ["", "IDRiD disease grading:"]
            lines.append(f"  {'split':<7}{'labels':>7}{'images':>7}{'missing':>8}"
                         + "".join(f"{'g' + str(g):>6}" for g in range(N_GRADES)))
            for name, row in self.grading.items():
                lines.append(f"  {name:<7}{row['labels']:>7}{row['images']:>7}{row['labels'] - row['images']:>8}"
                             + "".join(f"{n:>6}" for n in row["grades"]))
            if self.grading_missing:
                first = ", ".join(p.name for p in self.grading_missing[:3])
                lines.append(f"  missing images: {len(self.grading_missing)} "
                             f"(first: {first}) under {self.grading_missing[0].parent.parent}")
        if self.eyepacs is not None:
            e = self.eyepacs
            lines += ["", f"Kaggle/EyePACS: {e['present']:,} of {e['labels']:,} label rows have an image "
                          f"({e['missing']:,} missing)"]
            lines.append("  grades of present images: "
                         + ", ".join(f"{g}: {n}" for g, n in enumerate(e["grades"])))
            lines.append("  per folder: " + ", ".join(f"{s}: {n}" for s, n in e["splits"].items()))
            if e["missing_examples"]:
                lines.append(f"  missing, first: {', '.join(e['missing_examples'][:3])}")
            if e["unlabelled"]:
                lines.append(f"  images without a label row: {e['unlabelled']}")
        if self.messidor is not None:
            lines += ["", *_format_graded("Messidor-2", self.messidor)]
        if self.aptos is not None:
            lines += ["", *_format_graded("APTOS 2019", self.aptos)]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _format_graded(title: str, g: dict) -> list[str]:
    """Inventory lines of a Messidor-2 / APTOS summary (see :func:`_graded_summary`)."""
    lines = [f"{title}: {g['present']:,} of {g['labels']:,} label rows have an image "
             f"({g['missing']:,} missing)",
             "  grades of present images: " + ", ".join(f"{k}: {n}" for k, n in enumerate(g["grades"]))]
    if g.get("exams") is not None:
        lines.append(f"  examinations (guessed from file names): {g['exams']} "
                     f"({g['exam_pairs']} pairs, {g['exams'] - g['exam_pairs']} single images)")
    lines.append("  image sizes: " + (", ".join(f"{w}x{h}: {n:,}" for (w, h), n in g["sizes"].items())
                                      or "none"))
    if g["missing_examples"]:
        lines.append(f"  missing, first: {', '.join(g['missing_examples'][:3])}")
    if g["unlabelled"]:
        lines.append(f"  images without a label row: {g['unlabelled']} "
                     f"(first: {', '.join(g['unlabelled_examples'])})")
    if g["excluded"]:
        lines.append(f"  ungradable rows left out: {g['excluded']}")
    if g["identical"]:
        lines.append(f"  identical files under different ids: {g['identical']} groups "
                     f"({g['identical_disagree']} with different grades; "
                     f"first: {' = '.join(g['identical_first'])})")
    return lines


def _graded_summary(gs: GradedSet, sizes: dict[str, tuple[int, int]], digests: dict[str, str],
                   exams: bool = False) -> dict:
    """The inventory entry of a Messidor-2 / APTOS set; ``sizes`` / ``digests``: image path -> (w, h) /
    sha1, as verified."""
    identical = _identical_files(gs.records, digests)
    grades = [0] * N_GRADES
    for r in gs.records:
        grades[r.grade] += 1
    per_exam = Counter(r.patient_id for r in gs.records)
    return {"labels": gs.n_labels, "present": len(gs.records), "missing": gs.n_missing,
            "missing_examples": gs.missing_examples, "grades": grades,
            "sizes": dict(Counter(sizes.values()).most_common()),
            "exams": len(per_exam) if exams else None,
            "exam_pairs": sum(1 for n in per_exam.values() if n > 1) if exams else None,
            "unlabelled": len(gs.unlabelled), "unlabelled_examples": [p.name for p in gs.unlabelled[:3]],
            "excluded": gs.n_excluded, "identical": len(identical),
            "identical_disagree": sum(1 for rs in identical if len({r.grade for r in rs}) > 1),
            "identical_first": [r.image_path.name for r in identical[0][:3]] if identical else []}


def _identical_files(records, digests: dict[str, str]) -> list[list]:
    """Groups of records whose files are byte-identical: a split by image id would put copies of one
    photograph on both sides (the real APTOS set has 123 such groups)."""
    same: dict[str, list] = {}
    for r in records:
        same.setdefault(digests[str(r.image_path)], []).append(r)
    return [rs for rs in same.values() if len(rs) > 1]


def _check_messidor(root: Path, inv: Inventory) -> None:
    gs = messidor.read_messidor(root)
    digests: dict[str, str] = {}
    sizes = _verify_splits(gs.records, "Messidor-2 images", digests=digests)
    inv.messidor = _graded_summary(gs, sizes, digests, exams=True)


def _check_aptos(root: Path, inv: Inventory) -> None:
    gs = aptos.read_aptos(root)
    digests: dict[str, str] = {}
    inv.aptos = _graded_summary(gs, _verify_splits(gs.records, "APTOS images", digests=digests), digests)


def _check_segmentation(root: Path) -> dict[str, dict[str, int]]:
    records = idrid.read_segmentation(root)
    sizes = _verify_splits(records, "IDRiD segmentation images")
    table: dict[str, dict[str, int]] = {}
    for r in records:
        row = table.setdefault(r.split, {"images": 0, **{c: 0 for c in MASK_CODES}})
        row["images"] += 1
        w, h = sizes[str(r.image_path)]
        for code, path in r.masks.items():
            mask = read_mask(path)  # one full decode: catches truncated TIFFs
            if mask.shape != (h, w):
                raise DataError(path, f"mask is {mask.shape[1]}x{mask.shape[0]} but image "
                                      f"{r.image_path.name} is {w}x{h}")
            row[code] += 1
    return table


def _check_grading(root: Path, inv: Inventory) -> None:
    gs = idrid.read_grading(root)
    # IDRiD numbers train and test from IDRiD_001 each: only file contents are compared across splits.
    _verify_splits(gs.records, "IDRiD grading images", check_ids=False)
    inv.grading = {}
    for split, counts in gs.grade_counts.items():
        inv.grading[split] = {"labels": sum(counts), "grades": counts,
                              "images": sum(1 for r in gs.records if r.split == split)}
    inv.grading_missing = gs.missing


def _check_idrid(root: Path, inv: Inventory) -> None:
    seg, grading = root / idrid.SEGMENTATION, root / idrid.GRADING
    if not seg.exists() and not grading.exists():
        raise DataError(seg, "missing folder (neither IDRiD part is present)")
    if seg.exists():
        inv.segmentation = _check_segmentation(root)
    else:
        inv.notes.append(f"no '{idrid.SEGMENTATION}' folder")
    if grading.exists():
        _check_grading(root, inv)
    else:
        inv.notes.append(f"no '{idrid.GRADING}' folder")


def _kaggle_image_files(root: Path) -> dict[str, Path]:
    """image id -> file over ``train/`` and, in a full download, ``test/``; DataError on an empty
    train/, an id twice in one folder, or an id in both (the reader would silently take train's)."""
    images = idrid.list_images(root / "train")
    test_dir = root / "test"
    if test_dir.is_dir() and idrid.list_files(test_dir, idrid.IMAGE_SUFFIXES):
        test_images = idrid.list_images(test_dir)
        both = sorted(set(images) & set(test_images))
        if both:
            raise DataError(test_images[both[0]], f"image id {both[0]} is in both train and test "
                                                  f"(also {images[both[0]]})")
        images.update(test_images)
    return images


def _check_eyepacs(root: Path, inv: Inventory) -> None:
    es = eyepacs.read_eyepacs(root)
    stems = _kaggle_image_files(root)
    _verify_splits(es.records, "Kaggle images")
    grades = [0] * N_GRADES
    splits: dict[str, int] = {}
    for r in es.records:
        grades[r.grade] += 1
        splits[r.split] = splits.get(r.split, 0) + 1
    labelled = {r.image_id for r in es.records}
    inv.eyepacs = {"labels": es.n_labels, "present": len(es.records), "missing": es.n_missing,
                   "missing_examples": es.missing_examples, "grades": grades, "splits": splits,
                   "unlabelled": sum(1 for s in stems if s not in labelled),
                   "label_files": [p.name for p in es.label_files]}


def check_dataset(path) -> Inventory:
    """Check an IDRiD, Kaggle, Messidor-2 or APTOS root, or a data root holding them; return its inventory.

    In a data root, messidor-2/ and aptos2019/ are optional extras: inventoried when present,
    not noted when absent (IDRiD/ and kaggle-eyepacs-subset/ are noted when absent, as before).

    Raises DataError(file, problem) for: missing folder, empty folder, unreadable/corrupt/grayscale
    image, truncated TIFF, mask size != image size, CSV without the expected columns, grade not an
    integer 0-4, duplicate image ids (Messidor-2: also two id_codes with one stem), the same image in
    train and test (by id or by file sha1).
    """
    path = Path(path)
    layout = detect_layout(path)
    inv = Inventory(path=path, layout=layout)
    if layout == "idrid":
        _check_idrid(path, inv)
    elif layout == "eyepacs":
        _check_eyepacs(path, inv)
    elif layout == "messidor":
        _check_messidor(path, inv)
    elif layout == "aptos":
        _check_aptos(path, inv)
    else:
        if (path / IDRID_DIR).is_dir():
            _check_idrid(path / IDRID_DIR, inv)
        else:
            inv.notes.append(f"no {IDRID_DIR}/ folder")
        if (path / EYEPACS_DIR).is_dir():
            _check_eyepacs(path / EYEPACS_DIR, inv)
        else:
            inv.notes.append(f"no {EYEPACS_DIR}/ folder")
        if (path / MESSIDOR_DIR).is_dir():
            _check_messidor(path / MESSIDOR_DIR, inv)
        if (path / APTOS_DIR).is_dir():
            _check_aptos(path / APTOS_DIR, inv)
    return inv
