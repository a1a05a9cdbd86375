"""Subsets of the study's images that keep whole groups: held-out splits, per-grade caps,
stratified test subsets and seeded image limits (:mod:`mtunet.study.roles` applies them).

Every choice is seeded (``split_seed``) and made on sorted ids, so a profile draws the same images
on every machine and every rerun: the run cache keys on a run's data, and tables made on
different days must rest on the same images to be compared.
"""
from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from mtunet.data.records import Record
from mtunet.errors import UserError


def group_of(record: Record) -> str:
    """The unit that never straddles two roles: "<source>:<patient_id>" (EyePACS patient,
    Messidor-2 guessed examination, otherwise the image)."""
    return f"{record.source}:{record.patient_id or record.image_id}"


def _groups(records: Sequence[Record], key: Callable[[Record], str]) -> dict[str, list[Record]]:
    groups: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        groups[key(r)].append(r)
    return groups


def _worst_grade(records: Sequence[Record]) -> int:
    grades = [r.grade for r in records if r.grade is not None]
    return max(grades) if grades else -1


def split_groups(records: Sequence[Record], test_fraction: float, seed: int,
                 key: Callable[[Record], str] = group_of) -> list[Record]:
    """Records with ``split`` set to "train"/"test" by group (all images of a group on one side).

    Groups are stratified by their worst grade; within each stratum a seeded shuffle of the sorted
    group ids sends round(test_fraction * n) groups to test (the rule of
    :func:`mtunet.data.eyepacs.split_by_patient`, which it reproduces for one set). Order is kept.
    """
    if not 0.0 <= test_fraction <= 1.0:
        raise UserError(f"grade_test_fraction must be in [0, 1], got {test_fraction}")
    groups = _groups(records, key)
    strata: dict[int, list[str]] = defaultdict(list)
    for gid, rs in groups.items():
        strata[_worst_grade(rs)].append(gid)
    rng = np.random.default_rng(seed)
    test: set[str] = set()
    for stratum in sorted(strata):
        gids = sorted(strata[stratum])
        order = rng.permutation(len(gids))
        test.update(gids[i] for i in order[:int(round(test_fraction * len(gids)))])
    return [dataclasses.replace(r, split="test" if key(r) in test else "train") for r in records]


def cap_per_grade(records: Sequence[Record], n: int | None, seed: int) -> list[Record]:
    """At most ``n`` records per grade (a seeded choice; order kept). None: all."""
    if n is None:
        return list(records)
    if n < 1:
        raise UserError(f"grading_train_per_grade must be >= 1 or None, got {n}")
    by_grade: dict[Any, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        by_grade[r.grade].append(i)
    rng = np.random.default_rng(seed)
    keep: set[int] = set()
    for grade in sorted(by_grade, key=lambda g: (g is None, g or 0)):
        idx = by_grade[grade]
        chosen = rng.choice(len(idx), size=min(n, len(idx)), replace=False)
        keep.update(idx[j] for j in chosen)
    return [r for i, r in enumerate(records) if i in keep]


def equal_allocation(sizes: Mapping[Any, int], n: int) -> dict[Any, int]:
    """Images per stratum for a subset of ``n``: as equal as the strata allow (a stratum smaller
    than its share gives all it has, the rest is shared by the larger ones; water-filling)."""
    target = {k: 0 for k in sizes}
    left = min(n, sum(sizes.values()))
    open_ = [k for k in sizes if sizes[k] > 0]
    while left > 0 and open_:
        share = max(left // len(open_), 1)
        for k in sorted(open_, key=lambda k: (sizes[k] - target[k], str(k))):
            take = min(share, sizes[k] - target[k], left)
            target[k] += take
            left -= take
        open_ = [k for k in open_ if target[k] < sizes[k]]
    return target


def stratified_subset(records: Sequence[Record], n: int | None, seed: int,
                      key: Callable[[Record], str] = group_of) -> list[Record]:
    """A subset of about ``n`` images (at least ``n`` when the set has them), whole groups only.

    Strata are the groups' worst grades; each stratum gets an *equal* share of ``n`` where it has
    the images (:func:`equal_allocation`), so rare grades keep as many positives as possible —
    per-grade ROC AUC does not depend on prevalence, its interval does on the number of
    positives. Within a stratum, groups are taken in a seeded random order until its share is
    reached (a two-image group can overshoot it by one). None or n >= len(records): all of them.
    """
    if n is None or n >= len(records):
        return list(records)
    if n < 1:
        raise UserError(f"a test subset needs at least 1 image, got {n}")
    groups = _groups(records, key)
    strata: dict[int, list[str]] = defaultdict(list)
    for gid, rs in groups.items():
        strata[_worst_grade(rs)].append(gid)
    sizes = {s: sum(len(groups[g]) for g in gids) for s, gids in strata.items()}
    target = equal_allocation(sizes, n)
    rng = np.random.default_rng(seed)
    chosen: set[str] = set()
    for stratum in sorted(strata):
        gids = sorted(strata[stratum])
        taken = 0
        for i in rng.permutation(len(gids)):
            if taken >= target[stratum]:
                break
            chosen.add(gids[i])
            taken += len(groups[gids[i]])
    return [r for r in records if key(r) in chosen]


def seeded_subset(records: Sequence[Record], n: int | None, seed: int, name: str) -> list[Record]:
    """At most ``n`` records, a seeded choice among the sorted image ids (order kept). None: all.

    For sets whose images have no grade to stratify by (IDRiD-S): a miniature profile trains and
    scores on a few of them, and the same few every time (seeded, not the first ``n``, so the
    subset is not the set's first patients only). ``name`` is the parameter, for the error.
    """
    if n is None:
        return list(records)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UserError(f"{name} must be a whole number >= 1 or None (all images), got {n!r}")
    if n >= len(records):
        return list(records)
    ids = sorted({r.key for r in records})
    rng = np.random.default_rng(seed)
    keep = {ids[i] for i in rng.permutation(len(ids))[:n]}
    return [r for r in records if r.key in keep]
