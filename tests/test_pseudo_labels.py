"""The semi-supervised step: grade-0 suppression and masks the data layer reads back."""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from mtunet.data import read_segmentation
from mtunet.data.preprocess import fundus_bbox, pad_to_square, load_rgb, prepare_example, restore_label_map
from mtunet.pseudo_labels import attach_masks, suppress_lesions_for_grade0, write_lesion_masks


def test_grade0_loses_red_and_yellow_only():
    class_map = np.array([[0, 1, 2], [3, 4, 5]], np.uint8)
    assert suppress_lesions_for_grade0(class_map, 0).tolist() == [[0, 0, 0], [0, 0, 5]]
    assert suppress_lesions_for_grade0(class_map, 2).tolist() == class_map.tolist()


def test_restore_label_map_inverts_fit_square():
    small = np.zeros((64, 64), np.uint8)
    small[20:40, 10:30] = 2
    box = (10, 690, 100, 1100)                       # a fundus crop wider than tall
    full = restore_label_map(small, (700, 1200), box)
    assert full.shape == (700, 1200) and full[:10].max() == 0 and full[:, :100].max() == 0
    y0, y1, x0, x1 = box
    again = cv2.resize(pad_to_square(full[y0:y1, x0:x1]), (64, 64), interpolation=cv2.INTER_NEAREST)
    assert (again[22:38, 12:28] == 2).all()          # the block comes back where it was
    assert (again == small).mean() > 0.97            # up to one pixel at its borders


def test_written_masks_read_back_as_any_mask(synthetic_root, tmp_path):
    record = read_segmentation(synthetic_root / "IDRiD")[0]
    image = load_rgb(record.image_path)
    _, small = prepare_example(record, 64)
    full = restore_label_map(small, image.shape[:2], fundus_bbox(image))
    written = write_lesion_masks(full, tmp_path, record.image_id)
    assert set(written) == {name for name, i in (("MA", 1), ("HE", 2), ("EX", 3), ("SE", 4))
                            if (full == i).any()}
    grade_only = dataclasses.replace(record, masks={}, has_masks=False, grade=3)
    [labelled] = attach_masks([grade_only], tmp_path)
    assert labelled.has_masks and labelled.masks == written
    _, relabelled = prepare_example(labelled, 64)
    lesion = small > 0
    assert (relabelled[lesion] > 0).mean() > 0.95    # every predicted lesion is read back
    assert (relabelled[lesion] == small[lesion]).mean() > 0.8


def test_multitask_training_set_is_the_true_masks_and_the_pseudo_masks_minus_skipped_lesions(
        synthetic_root, tmp_path, monkeypatch):
    """Table 1's training images: IDRiD-S train (true masks, no grade, nothing skipped) plus the
    graded pseudo-labelled images, whose red lesions the loss skips; the run key sees the skip."""
    from mtunet.errors import UserError
    from mtunet.study import pseudo_labelling
    from mtunet.study.runs import data_fingerprint

    seg_train = [r for r in read_segmentation(synthetic_root / "IDRiD") if r.split == "train"]
    graded = [dataclasses.replace(r, grade=1, image_id=f"g{r.image_id}") for r in seg_train[:3]]
    splits = {"seg_train": seg_train, "grade_train": graded}
    monkeypatch.setattr(pseudo_labelling, "load", lambda results, records: list(records))

    class Ctx:
        dry_run = False

    train = pseudo_labelling.multitask_train(Ctx(), splits, tmp_path, ["MA", "HE"])
    assert train[:len(seg_train)] == seg_train and all(not r.ignored for r in train[:len(seg_train)])
    assert [r.ignored for r in train[len(seg_train):]] == [("MA", "HE")] * 3
    plain = pseudo_labelling.multitask_train(Ctx(), splits, tmp_path, [])
    assert data_fingerprint(plain) != data_fingerprint(train)
    assert data_fingerprint(graded) == data_fingerprint(pseudo_labelling.pseudo_labelled(Ctx(), splits, tmp_path))
    with pytest.raises(UserError, match=r"pseudo_ignored names \['XX'\]"):
        pseudo_labelling.multitask_train(Ctx(), splits, tmp_path, ["XX"])
