"""LesionCropSequence: batch format, repeatable crops, the lesion share, class balance, errors.

The sampler is numpy (the tests are not marked ``backend``); only the fit test, which trains a tiny
model for two steps on crop batches, runs again under JAX.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
keras = pytest.importorskip("keras")

from mtunet.data import crops, read_grading, read_segmentation  # noqa: E402
from mtunet.data.augment import Augmentation  # noqa: E402
from mtunet.data.crops import LesionCropSequence, window_size  # noqa: E402
from mtunet.data.preprocess import fundus_mask  # noqa: E402
from mtunet.data.synthetic import write_palette_mask  # noqa: E402

WORK, PATCH = 128, 32
FLIPS = Augmentation(rotation_range=0, width_shift=0, height_shift=0, shear_range=0, zoom_range=0,
                     channel_shift_range=0)


@pytest.fixture(scope="module")
def train_records(synthetic_root):
    """The 8 synthetic IDRiD-S training records (128 px wide): every lesion class present."""
    return [r for r in read_segmentation(synthetic_root / "IDRiD") if r.split == "train"]


def make(records, **kw):
    kw = {"work_size": WORK, "patch_size": PATCH, "batch_size": 8, "steps_per_epoch": 6, **kw}
    return LesionCropSequence(records, **kw)


def test_batch_format(train_records):
    seq = make(train_records, outputs=("seg", "grade"))
    assert len(seq) == 6
    x, y, sw = seq[0]
    assert x.shape == (8, PATCH, PATCH, 3) and x.dtype == np.float32 and 1.0 < x.max() <= 255.0
    assert y["seg"].shape == (8, PATCH, PATCH, 5) and y["seg"].dtype == np.float32
    assert np.array_equal(y["seg"].sum(-1), np.ones((8, PATCH, PATCH)))
    assert set(np.unique(y["seg"])) <= {0.0, 1.0}
    assert y["grade"].shape == (8, 5) and not y["grade"].any()
    assert list(sw["seg"]) == [1.0] * 8 and sw["grade"].shape == (8,) and not sw["grade"].any()
    x, y, sw = make(train_records)[0]  # default: segmentation only
    assert set(y) == set(sw) == {"seg"}
    x, y, sw = make(train_records, include_od=True, n_seg_classes=6, lesion_share=0.0)[0]
    assert y["seg"].shape[-1] == 6
    with pytest.raises(IndexError):
        seq[6]


def test_crops_are_the_prepared_pixels(train_records):
    seq = make(train_records)
    x, y, _ = seq[2]
    for j, spec in enumerate(seq.crop_specs(2)):
        image, label = seq.example(spec.record)
        window = np.s_[spec.y0:spec.y0 + PATCH, spec.x0:spec.x0 + PATCH]
        np.testing.assert_array_equal(x[j], image[window])
        np.testing.assert_array_equal(y["seg"][j].argmax(-1), label[window])


def test_same_seed_same_batches_any_order(train_records):
    a = make(train_records, seed=3, augmentation=Augmentation())
    b = make(train_records, seed=3, augmentation=Augmentation())
    late_first = b[4]  # another order (as parallel workers would fetch) changes nothing
    for i in range(len(a)):
        xa, ya, _ = a[i]
        xb, yb, _ = b[i]
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya["seg"], yb["seg"])
    np.testing.assert_array_equal(late_first[0], a[4][0])
    assert not np.array_equal(a[0][0], make(train_records, seed=4, augmentation=Augmentation())[0][0])


def test_new_epoch_new_crops_and_set_epoch_resumes(train_records):
    run = make(train_records, seed=1, augmentation=Augmentation())
    epoch0 = [run[i] for i in range(len(run))]
    run.on_epoch_end()
    epoch1 = [run[i] for i in range(len(run))]
    assert run.epoch == 1
    assert not np.array_equal(epoch0[0][0], epoch1[0][0])
    resumed = make(train_records, seed=1, augmentation=Augmentation())
    resumed.set_epoch(1)
    for i in range(len(resumed)):
        np.testing.assert_array_equal(resumed[i][0], epoch1[i][0])
        np.testing.assert_array_equal(resumed[i][1]["seg"], epoch1[i][1]["seg"])


@pytest.mark.parametrize("augmentation", [None, FLIPS], ids=["plain", "flips"])
def test_lesion_share_one_every_crop_holds_its_class(train_records, augmentation):
    seq = make(train_records, lesion_share=1.0, steps_per_epoch=20, augmentation=augmentation)
    for i in range(len(seq)):
        _, labels, specs = seq._batch(i)
        for label, spec in zip(labels, specs):
            assert spec.drawn in (1, 2, 3, 4)
            assert (label == spec.drawn).any(), spec


def test_lesion_share_zero_never_outside_the_fundus(train_records):
    seq = make(train_records, lesion_share=0.0, steps_per_epoch=30, augmentation=Augmentation())
    for i in range(len(seq)):
        for spec in seq.crop_specs(i):
            assert spec.drawn == crops.UNIFORM
            image, label = seq.example(spec.record)
            inside = fundus_mask(image)[spec.y0:spec.y0 + PATCH, spec.x0:spec.x0 + PATCH]
            assert inside.any(), spec


def test_uniform_crops_cover_the_fundus(train_records):
    seq = make(train_records, lesion_share=0.0, steps_per_epoch=40)
    centres = np.array([(s.y0 + PATCH // 2, s.x0 + PATCH // 2)
                        for i in range(len(seq)) for s in seq.crop_specs(i)])
    # centres spread over the disc (allowed range of a clamped centre: 16..112)
    assert centres.min() <= 30 and centres.max() >= 98


def test_lesion_share_is_honoured(train_records):
    seq = make(train_records, lesion_share=0.8, steps_per_epoch=60)
    drawn = np.array([s.drawn for i in range(len(seq)) for s in seq.crop_specs(i)])
    assert abs(np.mean(drawn != crops.UNIFORM) - 0.8) < 0.07  # 480 crops: sd 0.018


def test_classes_drawn_evenly_not_by_area(train_records):
    seq = make(train_records, lesion_share=1.0, steps_per_epoch=75)  # 600 crops
    stats = seq.stats(n_batches=75)
    assert stats["crops"] == 600 and seq.lesion_classes == (1, 2, 3, 4)
    image_px = stats["image_pixels"]
    assert image_px["EX"] > 2 * image_px["MA"]  # far more exudate than microaneurysm pixels ...
    for name in ("MA", "HE", "EX", "SE"):  # ... yet each class centres a quarter of the crops
        assert abs(stats["drawn"][name] - 0.25) < 0.07
    assert stats["drawn"]["uniform"] == 0.0
    # lesion crops enrich every lesion class over the whole image
    for name in ("MA", "HE", "EX", "SE", "red", "yellow"):
        assert stats["crop_pixels"][name] > 1.5 * image_px[name]
    assert sum(stats["crop_pixels"][c] for c in ("background", "MA", "HE", "EX", "SE")) == pytest.approx(1.0)


def test_window_keeps_augmentation_borders_out_of_the_patch():
    # rotation 90, zoom 0.1, shear 0.1; the crops never use the shifts
    aug = dataclasses.replace(Augmentation(), channel_shift_range=0, width_shift=0, height_shift=0)
    side = window_size(PATCH, aug)
    assert side > PATCH and (side - PATCH) % 2 == 0
    assert window_size(PATCH, FLIPS) == PATCH and window_size(PATCH, None) == PATCH
    bright = np.full((side, side, 3), 200, np.uint8)
    label = np.ones((side, side), np.uint8)
    m = (side - PATCH) // 2
    for k in range(300):
        out, out_label = aug.apply(bright, label, np.random.default_rng(k))
        assert out[m:m + PATCH, m:m + PATCH].min() > 0 and out_label[m:m + PATCH, m:m + PATCH].all()


def test_pickled_copy_gives_the_same_batches(train_records):
    import pickle

    seq = make(train_records, augmentation=Augmentation())
    seq.preload(progress=False)
    copy = pickle.loads(pickle.dumps(seq))
    np.testing.assert_array_equal(copy[1][0], seq[1][0])


def test_preload_caches_every_image(train_records, monkeypatch):
    seq = make(train_records)
    seq.preload(progress=False)
    first = seq[0][0]
    def no_io(*args, **kwargs):
        raise AssertionError("I/O after preload")
    from mtunet.data import preprocess

    monkeypatch.setattr(preprocess, "prepare_example", no_io)   # what the cache falls back to
    seq.on_epoch_end()
    seq.set_epoch(0)
    np.testing.assert_array_equal(seq[0][0], first)


def test_errors(train_records, synthetic_root, tmp_path):
    with pytest.raises(ValueError, match="patch_size"):
        make(train_records, patch_size=WORK + 1)
    graded = read_grading(synthetic_root / "IDRiD").records[:2]
    with pytest.raises(ValueError, match="has_masks"):
        make(train_records + graded)
    for share in (-0.1, 1.5):
        with pytest.raises(ValueError, match="lesion_share"):
            make(train_records, lesion_share=share)
    with pytest.raises(ValueError, match="jitter"):
        make(train_records, jitter=0.5)
    with pytest.raises(ValueError, match="n_seg_classes"):
        make(train_records, include_od=True)
    with pytest.raises(ValueError, match="outputs"):
        make(train_records, outputs=("seg", "od"))
    with pytest.raises(ValueError):
        make([])
    # annotated, but no lesion mask at all: fine for uniform crops only
    no_lesions = [dataclasses.replace(r, masks={"OD": r.masks["OD"]}) for r in train_records[:2]]
    with pytest.raises(ValueError, match="none of the 2 records has a lesion mask"):
        make(no_lesions)
    assert make(no_lesions, lesion_share=0.0)[0][0].shape == (8, PATCH, PATCH, 3)
    # mask files that are empty: found when the images are prepared
    empty = tmp_path / "empty_MA.tif"
    write_palette_mask(empty, np.zeros((85, 128), bool))  # synthetic images: 128 x 85
    blank = [dataclasses.replace(r, masks={"MA": empty}) for r in train_records[:2]]
    seq = make(blank)
    with pytest.raises(ValueError, match="no lesion pixel"):
        seq.preload(progress=False)


@pytest.mark.backend
def test_fit_on_crop_batches(train_records):
    from mtunet.losses import GradingCCE, segmentation_loss

    seq = make(train_records, steps_per_epoch=2, outputs=("seg", "grade"), augmentation=FLIPS)
    inp = keras.Input((PATCH, PATCH, 3))
    seg = keras.layers.Conv2D(5, 1, activation="softmax", name="seg")(keras.layers.Rescaling(1 / 255)(inp))
    pooled = keras.layers.GlobalAveragePooling2D()(seg)
    grade = keras.layers.Dense(5, activation="softmax", name="grade")(pooled)
    model = keras.Model(inp, {"seg": seg, "grade": grade})
    model.compile(optimizer="adam", loss={"seg": segmentation_loss("dice_focal"), "grade": GradingCCE()})
    hist = model.fit(seq, epochs=2, verbose=0)
    assert np.all(np.isfinite(hist.history["loss"]))
    # the grade loss is switched off by its zero sample weights
    assert all(v == pytest.approx(0.0, abs=1e-7) for v in hist.history["grade_loss"])



def test_ignored_lesions_are_never_crop_targets_and_carry_no_label(train_records):
    """Pseudo-labelled records whose red lesions the loss skips: no crop is centred on those
    pixels (red crops come from the true masks), and in a batch they are all-zero one-hot rows."""
    skipped = [dataclasses.replace(r, ignored=("MA", "HE"), image_id=f"p{r.image_id}")
               for r in train_records]
    seq = make(skipped, lesion_share=1.0)
    assert seq.lesion_classes == (3, 4)                       # EX, SE only
    _, y, _ = seq[0]
    assert (y["seg"].sum(-1) == 0).any()                       # some skipped pixels in the crops
    assert not y["seg"][..., 1:3].any()                        # and never a red label
    mixed = make([train_records[0], *skipped], lesion_share=1.0)
    mixed.preload(progress=False)
    assert list(mixed._by_class[1]) == list(mixed._by_class[2]) == [0]   # red: the true masks only
