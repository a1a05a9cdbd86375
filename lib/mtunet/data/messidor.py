"""Messidor-2 reader (Decencière et al. 2014) with the adjudicated ICDR grades of Krause et al. 2018.

Layout: ``messidor_data.csv`` (columns id_code, diagnosis, adjudicated_dme, adjudicated_gradable) and
``images/<stem>.<ext>``. ``id_code`` is the ORIGINAL file name (``…_PP.png`` or ``IM….JPG``); the staged
copy under ``../shared/data/messidor-2`` re-encoded the images as ``<stem>.jpg``, so rows and images
are matched by stem. Messidor-2 has two images (one per eye) per examination, but the pairing table is
not part of this release: :func:`exam_ids` guesses it from the file names.
"""
from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

import pandas as pd

from mtunet.errors import DataError
from mtunet.data.eyepacs import load_label_csv, parse_label_rows
from mtunet.data.idrid import list_images, require_dir
from mtunet.data.records import GradedSet, match_images

SOURCE = "messidor-2"
LABEL_FILE = "messidor_data.csv"
IMAGE_DIR = "images"
LABEL_COLUMNS = ("id_code", "diagnosis")
GRADABLE_COLUMN = "adjudicated_gradable"  # optional; rows with 0 have no adjudicated grade

# Messidor-Original names: <yyyymmdd>_<seconds since midnight>_<department>_PP; LaTIM names: IM<counter>.
_PP = re.compile(r"^(?P<date>\d{8})_(?P<time>\d+)_(?P<dept>\d{4})_PP$", re.IGNORECASE)
_IM = re.compile(r"^IM(?P<num>\d+)$", re.IGNORECASE)
PP_MAX_GAP_S = 600  # both eyes of one examination are photographed within minutes
IM_MAX_GAP = 9  # the two images of an examination are 1-2 counter steps apart; exams 6+ apart


def _series(stem: str) -> tuple[tuple[str, ...], int, int] | None:
    """(series, position in it, largest gap inside one examination), or None for an unknown name."""
    m = _PP.match(stem)
    if m:
        return ("PP", m["date"], m["dept"]), int(m["time"]), PP_MAX_GAP_S
    m = _IM.match(stem)
    if m:
        return ("IM",), int(m["num"]), IM_MAX_GAP
    return None


def _pair_neighbours(items: list[tuple[int, str]], max_gap: int) -> list[list[str]]:
    """Split sorted (position, stem) items into pairs of neighbours and single images.

    Dynamic programming: as many pairs as possible whose positions are at most ``max_gap`` apart,
    ties broken by the smallest total gap, so one lost image does not shift every later pair.
    """
    n = len(items)
    best = [(0, 0)] * (n + 1)  # for items[i:]: (-number of pairs, total gap)
    pair = [False] * (n + 1)
    for i in range(n - 2, -1, -1):
        best[i] = best[i + 1]
        gap = items[i + 1][0] - items[i][0]
        if gap <= max_gap:
            cand = (best[i + 2][0] - 1, best[i + 2][1] + gap)
            if cand < best[i]:
                best[i], pair[i] = cand, True
    groups: list[list[str]] = []
    i = 0
    while i < n:
        size = 2 if pair[i] else 1
        groups.append([stem for _, stem in items[i:i + size]])
        i += size
    return groups


def exam_ids(stems: Iterable[str]) -> dict[str, str]:
    """stem -> guessed examination id (the first stem of its group). A GUESS: the pairing is unpublished.

    Rule: names are split into series — ``<date>_<time>_<dept>_PP`` by (date, department), ordered by
    the time field (seconds since midnight); ``IM<n>`` in one series ordered by n; any other name is
    its own examination. Within a series, neighbours are paired (as many pairs as possible, ties to
    the smallest total gap) when at most 600 s (``_PP``) or 9 counter steps (``IM``) apart; an image
    left over is an examination of one. Never pairs across dates. On the staged 1,744 images this
    gives 883 examinations (861 pairs + 22 singles; the LaTIM part gives exactly its published 345)
    against the 874 of the paper, so some true pairs are split: use it to keep likely fellow eyes on
    one side of a split, not as ground truth.
    """
    stems = list(stems)
    out = {stem: stem for stem in stems}
    series: dict[tuple[str, ...], list[tuple[int, str]]] = defaultdict(list)
    gaps: dict[tuple[str, ...], int] = {}
    for stem in stems:
        found = _series(stem)
        if found is not None:
            key, position, gaps[key] = found
            series[key].append((position, stem))
    for key, items in series.items():
        for group in _pair_neighbours(sorted(items), gaps[key]):
            for stem in group:
                out[stem] = group[0]
    return out


def read_messidor_labels(csv_path: Path) -> tuple[list[tuple[str, int]], list[str]]:
    """((image stem, grade) rows, stems of ungradable rows left out) of ``messidor_data.csv``.

    DataError naming the file for: missing/unreadable file, missing id_code/diagnosis column, a grade
    that is not an integer 0-4, a duplicate id_code, or two id_codes with one stem (``a.png``, ``a.JPG``:
    they would match the same image file). Rows with adjudicated_gradable 0 carry no grade and are
    returned apart, not parsed.
    """
    df = load_label_csv(csv_path, LABEL_COLUMNS)
    gradable = (df[GRADABLE_COLUMN].str.strip() != "0" if GRADABLE_COLUMN in df.columns
                else pd.Series(True, index=df.index))
    rows = parse_label_rows(df[gradable], csv_path, *LABEL_COLUMNS)
    lines = [int(i) + 2 for i in df.index[gradable]]
    out: list[tuple[str, int]] = []
    seen: dict[str, tuple[int, str]] = {}
    for (name, grade), line in zip(rows, lines):
        stem = PurePosixPath(name).stem
        if stem in seen:
            raise DataError(csv_path, f"line {line}: duplicate image stem {stem!r} ({name!r}; also line "
                                      f"{seen[stem][0]}: {seen[stem][1]!r})")
        seen[stem] = (line, name)
        out.append((stem, grade))
    excluded = [PurePosixPath(n.strip()).stem for n in df.loc[~gradable, LABEL_COLUMNS[0]]]
    return out, excluded


def read_messidor(root) -> GradedSet:
    """The graded Messidor-2 images under ``root`` (split "train", patient_id = :func:`exam_ids` guess).

    As for EyePACS, label rows without an image are counted in ``n_missing``, not errors; images
    without a label row are listed in ``unlabelled``; ungradable rows are counted in ``n_excluded``.
    DataError for the CSV problems of :func:`read_messidor_labels`, a missing or empty ``images/``, or
    two image files with one stem.
    """
    root = require_dir(Path(root))
    csv_path = root / LABEL_FILE
    rows, excluded = read_messidor_labels(csv_path)
    images = list_images(root / IMAGE_DIR)
    exams = exam_ids([stem for stem, _ in rows] + excluded)
    graded = match_images(rows, images, SOURCE, patient_of=exams.__getitem__, label_file=csv_path)
    skipped = set(excluded)
    graded.unlabelled = [p for p in graded.unlabelled if p.stem not in skipped]
    graded.n_excluded = len(excluded)
    return graded
