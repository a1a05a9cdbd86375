"""Fig. 7, step 2: lesion masks for the grade-only training images, from the seed segmenter.

The masks live under the git-ignored runs/ folder; ``results/<profile>/pseudo_labels.json`` names
that folder *and the content hash of the masks*, so a later notebook that finds them missing or
changed stops with an error naming the notebook to rerun, instead of training on empty masks.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Sequence

import pandas as pd

from mtunet.config import LESIONS, relative_to_project, resolve_path
from mtunet.data.records import Record
from mtunet.errors import UserError
from mtunet.files import write_text
from mtunet.study.runs import Context, RunSpec
from mtunet.study.seed_segmenter import seed_segmenter, seed_spec

TABLE = "pseudo_labels"
HANDOVER = "pseudo_labels.json"
NOTEBOOK = "03_pseudo_labelling"


def mask_dir(ctx: Context, spec: RunSpec, seed_records: Sequence[Record]) -> Path:
    """Where the pseudo masks of this seed segmenter go (under runs/, git-ignored)."""
    return ctx.runs_dir / "pseudo_labels" / spec.key(seed_records)


def masks_fingerprint(records: Sequence[Record], folder: Path) -> tuple[int, str]:
    """(number of mask files, sha1 over their names and bytes) for the records' masks in `folder`."""
    digest, count = hashlib.sha1(), 0
    for record in sorted(records, key=lambda r: r.image_id):
        for lesion in LESIONS:
            path = Path(folder) / f"{record.image_id}_{lesion}.tif"
            if path.exists():
                digest.update(path.name.encode())
                digest.update(path.read_bytes())
                count += 1
    return count, digest.hexdigest()


def save(results: Path, table: pd.DataFrame, records: Sequence[Record], folder: Path) -> None:
    """pseudo_labels.csv (per image) and the hand-over file naming the masks and their hash."""
    from mtunet.report.tables import write_table

    write_table(table, results, TABLE, "Pseudo masks of the grade-only training images")
    count, fingerprint = masks_fingerprint(records, folder)
    payload = {"mask_dir": relative_to_project(folder), "mask_files": count,
               "fingerprint": fingerprint}
    write_text(Path(results) / HANDOVER, json.dumps(payload, indent=2))


def load(results: Path, records: Sequence[Record]) -> list[Record]:
    """The grade-only training records with the masks notebook 03 wrote, after checking that
    the masks are still those it wrote (a UserError naming the notebook to rerun otherwise)."""
    from mtunet.pseudo_labels import attach_masks

    meta = Path(results) / HANDOVER
    if not meta.exists():
        raise UserError(f"{meta}: missing; run notebook {NOTEBOOK} first")
    handover = json.loads(meta.read_text())
    folder = resolve_path(handover["mask_dir"])
    if not folder.is_dir():
        raise UserError(f"{meta}: its mask folder {handover['mask_dir']} is missing (a cleaned "
                        f"runs/ or another machine); rerun notebook {NOTEBOOK}")
    count, fingerprint = masks_fingerprint(records, folder)
    if (count, fingerprint) != (handover.get("mask_files"), handover.get("fingerprint")):
        raise UserError(f"{meta}: the masks in {handover['mask_dir']} are not the ones notebook "
                        f"{NOTEBOOK} wrote ({count} files, expected {handover.get('mask_files')}); "
                        f"rerun notebook {NOTEBOOK}")
    return attach_masks(records, folder)


def label_grade_only_images(ctx: Context, splits, seed_model: str, seed_epochs: int,
                            results: Path):
    """Predict masks for the graded training images with the seed segmenter; write the table
    and the hand-over. Returns the PseudoLabels (None in a dry run)."""
    from mtunet.pseudo_labels import pseudo_label

    spec = seed_spec(ctx, seed_model, seed_epochs)
    folder = mask_dir(ctx, spec, splits["seg_train"])
    if ctx.dry_run:
        seed_segmenter(ctx, splits["seg_train"], seed_model, seed_epochs)
        return None
    from mtunet.evaluate import model_at_size

    labelled = cached_labels(folder, splits["grade_train"])
    if labelled is None:
        model = seed_segmenter(ctx, splits["seg_train"], seed_model, seed_epochs)
        # predicted at the scoring size (work_size), like the test images, then mapped back to
        # each image's own size
        labelled = pseudo_label(model_at_size(model, spec.scoring_size, name=spec.model),
                                splits["grade_train"], spec.scoring_size, folder)
        remember_labels(folder, splits["grade_train"], labelled.table)
    save(results, labelled.table, splits["grade_train"], folder)
    return labelled


def _done_file(folder: Path, records: Sequence[Record]) -> Path:
    from mtunet.study.runs import data_fingerprint

    return Path(folder) / f"labelled-{data_fingerprint(records)}.json"


def remember_labels(folder: Path, records: Sequence[Record], table: pd.DataFrame) -> None:
    """Mark the masks of `records` in `folder` complete, with their table and content hash:
    a re-executed notebook 03 then reads them instead of predicting them again (minutes)."""
    count, fingerprint = masks_fingerprint(records, folder)
    write_text(_done_file(folder, records), json.dumps(
        {"mask_files": count, "fingerprint": fingerprint, "table": table.to_dict("records")}))


def cached_labels(folder: Path, records: Sequence[Record]):
    """The PseudoLabels an earlier execution wrote for exactly these records with this seed
    segmenter (the folder is keyed by its run), or None: none marked complete (a kill while
    labelling leaves no mark), or masks changed since."""
    from mtunet.pseudo_labels import PseudoLabels, attach_masks

    done = _done_file(folder, records)
    try:
        marked = json.loads(done.read_text())
    except (OSError, ValueError):
        return None
    if masks_fingerprint(records, folder) != (marked.get("mask_files"), marked.get("fingerprint")):
        return None
    return PseudoLabels(attach_masks(records, folder), pd.DataFrame(marked["table"]))


def area_by_grade(table: pd.DataFrame, results: Path | None = None) -> pd.DataFrame:
    """Mean predicted lesion area (% of pixels) per grade: do the pseudo masks follow the grade?"""
    from mtunet.report.tables import write_table

    columns = [c for c in table if c.endswith("_fraction")]
    by_grade = (table.groupby("grade")[columns].mean() * 100).reset_index()
    by_grade["images"] = table.groupby("grade").size().to_numpy()
    if results is not None:
        write_table(by_grade, results, "pseudo_labels_by_grade",
                    "Mean predicted lesion area (% of pixels) per grade")
    return by_grade


def pseudo_labelled(ctx: Context, splits, results: Path) -> list[Record]:
    """The graded training images with their pseudo masks: what the baseline graders of Tables
    3 and 4 train on (in a dry run, which trains nothing, the images without masks)."""
    if ctx.dry_run:
        return list(splits["grade_train"])
    return load(results, splits["grade_train"])


def multitask_train(ctx: Context, splits, results: Path, pseudo_ignored: Sequence[str] = ()
                    ) -> list[Record]:
    """What Table 1's networks (and so every MTUnet the later tables reuse) train on: the
    IDRiD-S training images with their true masks (no grade) and the graded images with their
    pseudo masks, whose lesions in `pseudo_ignored` the segmentation loss skips.

    The paper's semi-supervised step is "to increase the number of images to train the proposed
    network": the pseudo-labelled images join the annotated ones. Skipped lesions: a pseudo mask
    made on a 224-px image (APTOS 2019) cannot carry red lesions, most of which are under a pixel
    there, and where vessels look like haemorrhages, so it would teach vessels as lesions.
    """
    unknown = sorted(set(pseudo_ignored) - set(LESIONS))
    if unknown:
        raise UserError(f"pseudo_ignored names {unknown}; lesion codes are {list(LESIONS)}")
    graded = pseudo_labelled(ctx, splits, results)
    if not ctx.dry_run:
        graded = [dataclasses.replace(r, ignored=tuple(pseudo_ignored)) for r in graded]
    return list(splits["seg_train"]) + graded
