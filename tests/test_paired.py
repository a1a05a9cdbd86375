"""Multi-task training on crops in pairs: each step a crop batch through encoder and decoder and a
few whole images through the encoder and the grade head only (the decoder never sees them)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mtunet.data.interleave import GRADE_INPUT, SEG_INPUT, PairedSequence


class Part:
    """A tiny PyDataset-like part: batch j of epoch e holds (e, j)."""

    def __init__(self, n, task, batch):
        self.n, self.task, self.batch, self.epoch = n, task, batch, 0

    def __len__(self):
        return self.n

    def __getitem__(self, j):
        x = np.full((self.batch, 2), [self.epoch, j], np.float32)
        return x, {self.task: x}, {self.task: np.ones(self.batch)}

    def set_epoch(self, e):
        self.epoch = e

    def on_epoch_end(self):
        self.epoch += 1


def test_a_pair_holds_a_crop_batch_and_a_grade_batch_and_cycles_the_grades():
    seq = PairedSequence(Part(5, "seg", 4), Part(2, "grade", 1))
    assert len(seq) == 5
    x, y, sw = seq[3]
    assert set(x) == {SEG_INPUT, GRADE_INPUT} and set(y) == set(sw) == {"seg", "grade"}
    assert x[SEG_INPUT].shape == (4, 2) and x[GRADE_INPUT].shape == (1, 2)
    assert x[SEG_INPUT][0].tolist() == [0, 3] and x[GRADE_INPUT][0].tolist() == [0, 1]  # 3 % 2
    seq.on_epoch_end()
    assert seq[0][0][GRADE_INPUT][0].tolist() == [1, 0]
    seq.set_epoch(4)
    assert seq[1][0][SEG_INPUT][0].tolist() == [4, 1]
    with pytest.raises(IndexError):
        seq[5]
    with pytest.raises(ValueError, match="grade part"):
        PairedSequence(Part(5, "seg", 4), Part(0, "grade", 1))


@pytest.fixture(scope="module")
def graded_records(synthetic_root):
    from mtunet.data import read_segmentation

    records = [r for r in read_segmentation(synthetic_root / "IDRiD") if r.split == "train"]
    graded = [dataclasses.replace(r, grade=i % 5, image_id=f"g{r.image_id}")
              for i, r in enumerate(records)]
    return records + graded


def _spec(model="mtunet", **changes):
    from mtunet.study.runs import RunSpec

    return RunSpec(model, **{**dict(image_size=32, work_size=64, patch_size=32, steps_per_epoch=4,
                                       batch_size=4, augment=False, encoder_weights=None), **changes})


def test_a_multitask_run_on_crops_is_paired_by_default(graded_records):
    from mtunet.study.run_training import is_paired, training_sequence

    spec = _spec()
    assert is_paired(spec) and not is_paired(_spec(model="unet")) and not is_paired(_spec(patch_size=None, work_size=None))
    seq = training_sequence(graded_records, spec, ("seg", "grade"))
    assert isinstance(seq, PairedSequence) and len(seq) == 4
    x, y, sw = seq[0]
    assert x[SEG_INPUT].shape == (4, 32, 32, 3)
    assert x[GRADE_INPUT].shape == (4, 32, 32, 3)     # a whole batch: the grade head's batch norm
    assert all(r.grade is not None for r in seq.grades.records)
    assert sw["grade"].tolist() == sw["seg"].tolist() == [1.0] * 4
    from mtunet.errors import UserError
    with pytest.raises(UserError, match="grade_batches"):
        is_paired(_spec(grade_batches="sometimes"))


class WholeImagesReplaced(PairedSequence):
    """Every whole image of the pairs replaced by noise drawn from ``seed``."""

    def __init__(self, crops, grades, seed):
        super().__init__(crops, grades)
        self.seed = seed

    def __getitem__(self, i):
        x, y, sw = super().__getitem__(i)
        noise = np.random.default_rng([self.seed, i]).uniform(0, 255, x[GRADE_INPUT].shape)
        return {**x, GRADE_INPUT: noise.astype(np.float32)}, y, sw


def _train_one_epoch(spec, records, whole_images):
    import keras

    from mtunet.study.run_training import build_for_training, training_sequence
    from mtunet.train import TrainConfig, compile_model

    paired = training_sequence(records, spec, ("seg", "grade"))
    seq = WholeImagesReplaced(paired.crops, paired.grades, seed=whole_images)
    keras.utils.set_random_seed(0)
    model = build_for_training(spec)
    compile_model(model, TrainConfig(epochs=1, learning_rate=1e-3, seg_loss="dice_focal"))
    model.fit(seq, epochs=1, verbose=0)
    return model


@pytest.mark.backend
def test_whole_images_reach_the_encoder_but_never_the_decoder(graded_records):
    """The decoder's batch norms keep crop statistics only: after one step their moving means do
    not depend on the whole images (interleaved, a whole-image batch would move them), while the
    shared encoder does (the grade loss reaches it)."""
    from mtunet.models.paired import inference_model

    spec = _spec(steps_per_epoch=1)
    a = inference_model(_train_one_epoch(spec, graded_records, whole_images=1))
    b = inference_model(_train_one_epoch(spec, graded_records, whole_images=2))
    bn = "dec_stage5_conv2_bn"
    np.testing.assert_array_equal(a.get_layer(bn).moving_mean.numpy(), b.get_layer(bn).moving_mean.numpy())
    first = "block1_conv1"
    assert np.abs(a.get_layer(first).get_weights()[0] - b.get_layer(first).get_weights()[0]).max() > 0


@pytest.mark.backend
def test_a_paired_run_keeps_the_network_of_the_registry(graded_records, tmp_path):
    """final.npz of a paired run holds the network's weights in the registry's order: the run
    loads by name and predicts as the trained network does."""
    from mtunet.study.run_training import train_run
    from mtunet.train import load_run

    spec = _spec(steps_per_epoch=2, epochs=1)
    net = train_run(spec, graded_records, "paired", tmp_path, verbose=0)
    assert net.name == "mtunet" and set(net.output) == {"seg", "grade"}
    loaded = load_run(tmp_path / "paired")
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    for key in ("seg", "grade"):
        np.testing.assert_allclose(np.asarray(loaded(x)[key]), np.asarray(net(x)[key]), atol=1e-6)
