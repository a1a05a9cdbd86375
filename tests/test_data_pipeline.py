"""FundusSequence: batch layout, sample weights, caching, repeatable shuffling and augmentation."""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
keras = pytest.importorskip("keras")

from mtunet.data import read_grading, read_segmentation  # noqa: E402
from mtunet.data import pipeline  # noqa: E402
from mtunet.data.augment import Augmentation  # noqa: E402
from mtunet.data.pipeline import FundusSequence  # noqa: E402


@pytest.fixture(scope="module")
def mixed(synthetic_root):
    seg = read_segmentation(synthetic_root / "IDRiD")[:3]
    grd = read_grading(synthetic_root / "IDRiD").records[:2]
    return seg + grd


def test_batches(mixed):
    seq = FundusSequence(mixed, 32, batch_size=2)
    assert len(seq) == 3
    x, y, sw = seq[1]  # seg record 2, grading record 0
    assert x.shape == (2, 32, 32, 3) and x.dtype == np.float32 and x.max() > 1.0
    assert y["seg"].shape == (2, 32, 32, 5) and np.allclose(y["seg"].sum(-1), 1.0)
    assert y["grade"].shape == (2, 5)
    assert sw["seg"].shape == (2,) and list(sw["seg"]) == [1.0, 0.0]
    assert list(sw["grade"]) == [0.0, 1.0]
    assert y["grade"][0].sum() == 0 and y["grade"][1].sum() == 1 and y["grade"][1].argmax() == mixed[3].grade
    assert y["seg"][0, ..., 1:].sum() > 0  # lesions of the segmentation image
    x, y, sw = seq[2]  # last, partial batch
    assert x.shape[0] == 1


def test_outputs_subset_and_od(mixed):
    x, y, sw = FundusSequence(mixed, 32, outputs=("grade",))[0]
    assert set(y) == set(sw) == {"grade"}
    x, y, sw = FundusSequence(mixed[:2], 32, n_seg_classes=6, include_od=True, outputs=("seg",))[0]
    assert set(y) == {"seg"} and y["seg"].shape[-1] == 6 and y["seg"][..., 5].sum() > 0
    with pytest.raises(ValueError):
        FundusSequence(mixed, 32, include_od=True)


def test_cache_means_no_io_in_epoch_2(mixed, monkeypatch):
    seq = FundusSequence(mixed, 32, batch_size=2)
    seq.preload(progress=False)
    first = [seq[i] for i in range(len(seq))]
    monkeypatch.setattr(pipeline, "prepare_example", lambda *a, **k: (_ for _ in ()).throw(AssertionError("I/O")))
    seq.on_epoch_end()
    np.testing.assert_array_equal(seq[0][0], first[0][0])


def test_shuffle_and_augmentation_repeatable(mixed):
    def run(seed):
        seq = FundusSequence(mixed, 32, batch_size=5, shuffle=True, seed=seed, augmentation=Augmentation())
        e0 = seq[0]
        seq.on_epoch_end()
        return e0, seq[0], seq.order.copy()
    a0, a1, order_a = run(0)
    b0, b1, order_b = run(0)
    np.testing.assert_array_equal(a0[0], b0[0])
    np.testing.assert_array_equal(a1[1]["seg"], b1[1]["seg"])
    np.testing.assert_array_equal(order_a, order_b)
    assert not np.array_equal(a0[0], a1[0])  # new epoch: new order / augmentation
    c0, _, _ = run(1)
    assert not np.array_equal(a0[0], c0[0])


def test_fit_accepts_the_batches(mixed):
    inp = keras.Input((32, 32, 3))
    seg = keras.layers.Conv2D(5, 1, activation="softmax", name="seg")(keras.layers.Rescaling(1 / 255)(inp))
    grade = keras.layers.Dense(5, activation="softmax", name="grade")(keras.layers.GlobalAveragePooling2D()(seg))
    model = keras.Model(inp, {"seg": seg, "grade": grade})
    from mtunet.losses import multitask_loss

    losses, weights = multitask_loss(alpha=1.0)
    model.compile("adam", loss=losses, loss_weights=weights)
    hist = model.fit(FundusSequence(mixed, 32, batch_size=2), epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"][0])
