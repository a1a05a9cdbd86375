from __future__ import annotations

import numpy as np

from mtunet.data.augment import Augmentation


def _square(h=96, w=128):
    img = np.zeros((h, w, 3), np.uint8)
    img[30:50, 40:60] = 255
    lab = np.zeros((h, w), np.uint8)
    lab[30:50, 40:60] = 3
    return img, lab


def test_image_and_label_stay_aligned():
    img, lab = _square()
    aug = Augmentation(channel_shift_range=0.0, zoom_range=0.2, shear_range=10.0)
    for seed in range(20):
        out, out_lab = aug.apply(img, lab, np.random.default_rng(seed))
        inside = out_lab == 3
        if inside.sum() < 50:  # moved (partly) out of the frame
            continue
        assert out[inside, 0].mean() > 200
        bright = out[..., 0] > 200
        assert inside[bright].mean() > 0.95
        assert set(np.unique(out_lab)) <= {0, 3}


def test_shapes_dtypes_and_repeatability():
    img, lab = _square()
    aug = Augmentation()
    a = aug.apply(img, lab, np.random.default_rng(7))
    b = aug.apply(img, lab, np.random.default_rng(7))
    c = aug.apply(img, lab, np.random.default_rng(8))
    assert a[0].shape == img.shape and a[0].dtype == np.uint8
    assert a[1].shape == lab.shape and a[1].dtype == np.uint8
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_identity_and_exact_flip():
    img, lab = _square()
    img[0, 0] = (1, 2, 3)
    none = Augmentation(0, 0, 0, 0, 0, False, False, 0)
    out, out_lab = none.apply(img, lab, np.random.default_rng(0))
    np.testing.assert_array_equal(out, img)
    np.testing.assert_array_equal(out_lab, lab)
    flip = Augmentation(0, 0, 0, 0, 0, True, False, 0)
    seen = set()
    for seed in range(10):
        out, out_lab = flip.apply(img, lab, np.random.default_rng(seed))
        if np.array_equal(out, img):
            seen.add("same")
        else:
            np.testing.assert_array_equal(out, img[:, ::-1])
            np.testing.assert_array_equal(out_lab, lab[:, ::-1])
            seen.add("flipped")
    assert seen == {"same", "flipped"}


def test_channel_shift_only_on_image():
    img = np.full((16, 16, 3), 100, np.uint8)
    lab = np.ones((16, 16), np.uint8)
    aug = Augmentation(0, 0, 0, 0, 0, False, False, 20.0)
    out, out_lab = aug.apply(img, lab, np.random.default_rng(3))
    assert len(np.unique(out)) == 1 and out[0, 0, 0] != 100 and abs(int(out[0, 0, 0]) - 100) <= 20
    np.testing.assert_array_equal(out_lab, lab)
