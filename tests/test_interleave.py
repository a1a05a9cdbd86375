"""Multi-task training under crops: crop and whole-image batches interleaved, tasks switched off
by sample weight, the budget in crop steps, and the same batches after a resume."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mtunet.data.interleave import InterleavedSequence, interleave_order


class Part:
    """A tiny PyDataset-like part: batch j of epoch e is (e, j)."""

    def __init__(self, n, name):
        self.n, self.name, self.epoch = n, name, 0

    def __len__(self):
        return self.n

    def __getitem__(self, j):
        x = np.full((1, 2), [self.epoch, j], np.float32)
        return x, {"seg": x, "grade": x}, {"seg": np.ones(1), "grade": np.ones(1)}

    def set_epoch(self, e):
        self.epoch = e

    def on_epoch_end(self):
        self.epoch += 1


def test_every_batch_once_each_part_spread_over_the_epoch():
    order = interleave_order([4, 2])
    assert sorted(order) == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1)]
    assert [p for p, _ in order] == [0, 1, 0, 0, 1, 0]
    assert [j for p, j in order if p == 0] == [0, 1, 2, 3]          # each part in its own order


def test_switched_off_tasks_get_zero_weight_and_limits_cap_a_part():
    seq = InterleavedSequence([Part(3, "crops"), Part(10, "whole")],
                              switch_off=[("grade",), ("seg",)], limits=[None, 3])
    assert len(seq) == 6
    for i in range(len(seq)):
        part, _ = seq.order[i]
        _, _, sw = seq[i]
        assert sw["grade" if part == 0 else "seg"].sum() == 0
        assert sw["seg" if part == 0 else "grade"].sum() == 1
    with pytest.raises(IndexError):
        seq[6]


def test_a_resumed_epoch_sees_the_same_batches():
    def epoch_batches(seq):
        return [seq[i][0].tolist() for i in range(len(seq))]

    seq = InterleavedSequence([Part(3, "a"), Part(2, "b")])
    seq.on_epoch_end()
    seq.on_epoch_end()
    second = epoch_batches(seq)
    fresh = InterleavedSequence([Part(3, "a"), Part(2, "b")])
    fresh.set_epoch(2)
    assert epoch_batches(fresh) == second


def test_a_multitask_run_on_crops_interleaves_and_a_segmenter_takes_crops(synthetic_root):
    from mtunet.data import read_segmentation
    from mtunet.data.crops import LesionCropSequence
    from mtunet.errors import UserError
    from mtunet.study.run_training import training_sequence
    from mtunet.study.runs import RunSpec, check_crop_settings

    records = [r for r in read_segmentation(synthetic_root / "IDRiD") if r.split == "train"]
    graded = [r.__class__(**{**r.__dict__, "grade": 2}) for r in records]
    spec = RunSpec("mtunet", image_size=32, work_size=64, patch_size=32, steps_per_epoch=3,
                   batch_size=2, augment=False, grade_batches="interleaved")
    seq = training_sequence(graded, spec, ("seg", "grade"))
    assert isinstance(seq, InterleavedSequence) and len(seq) == 4   # 3 crop + 1 whole batch
    x, y, sw = seq[0]
    assert x.shape == (2, 32, 32, 3) and set(y) == {"seg", "grade"}
    assert isinstance(training_sequence(records, spec, ("seg",)), LesionCropSequence)
    assert not isinstance(training_sequence(records, spec, ("grade",)), LesionCropSequence)
    with pytest.raises(UserError, match="patch_size=48 must equal image_size=32"):
        check_crop_settings(RunSpec("unet", image_size=32, work_size=64, patch_size=48))


def test_in_a_multitask_epoch_the_grade_batches_shape_the_segmentation(synthetic_root):
    """The grade batches of an interleaved epoch reach the shared encoder: switching their grade
    loss off changes what the segmentation learns (a saturated grade head once made them inert)."""
    import keras

    from mtunet.data import read_segmentation
    from mtunet.study.run_training import build_untrained, training_sequence
    from mtunet.study.runs import RunSpec
    from mtunet.train import TrainConfig, compile_model

    records = [r for r in read_segmentation(synthetic_root / "IDRiD") if r.split == "train"]
    graded = [r.__class__(**{**r.__dict__, "grade": i % 5}) for i, r in enumerate(records)]
    spec = RunSpec("mtunet", image_size=32, work_size=64, patch_size=32, steps_per_epoch=8,
                   batch_size=2, augment=False, grade_batches="interleaved")

    def seg_kernel_after_one_epoch(grade_on: bool):
        seq = training_sequence(graded, spec, ("seg", "grade"))
        assert isinstance(seq, InterleavedSequence)
        if not grade_on:
            seq.switch_off[1] = ("seg", "grade")
        keras.utils.set_random_seed(0)
        model = build_untrained(spec)
        compile_model(model, TrainConfig(epochs=1, learning_rate=1e-3, seg_loss="dice_focal",
                                         lr_schedule="constant"))
        history = model.fit(seq, epochs=1, verbose=0).history
        return history, model.get_layer("seg").get_weights()[0]

    with_grade, kernel_with = seg_kernel_after_one_epoch(True)
    without_grade, kernel_without = seg_kernel_after_one_epoch(False)
    assert with_grade["grade_loss"][0] > 0 and without_grade["grade_loss"][0] == 0
    assert np.abs(kernel_with - kernel_without).max() > 1e-5


def test_ungraded_lesion_images_feed_the_crops_and_only_graded_images_the_grade_batches(synthetic_root):
    """Table 1 trains on IDRiD-S images (true masks, no grade) and graded pseudo-labelled images:
    the whole-image grade batches must draw only the graded ones (an ungraded image there is a
    batch slot with no loss), the crops every lesion-annotated one."""
    from mtunet.data import read_segmentation
    from mtunet.study.run_training import training_sequence
    from mtunet.study.runs import RunSpec

    records = [r for r in read_segmentation(synthetic_root / "IDRiD") if r.split == "train"]
    graded = [dataclasses.replace(r, grade=2, image_id=f"g{r.image_id}") for r in records[:3]]
    spec = RunSpec("mtunet", image_size=32, work_size=64, patch_size=32, steps_per_epoch=4,
                   batch_size=2, augment=False, grade_batches="interleaved")
    seq = training_sequence(records + graded, spec, ("seg", "grade"))
    crops, whole = seq.parts
    assert len(crops.records) == len(records) + len(graded)
    assert [r.image_id for r in whole.records] == [r.image_id for r in graded]
    step2 = training_sequence(records + graded, spec, ("grade",))     # variant B's grader step
    assert [r.image_id for r in step2.records] == [r.image_id for r in graded]
