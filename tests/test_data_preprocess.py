from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from mtunet.config import IGNORE_LABEL
from mtunet.data.preprocess import (example_key, fit_square, fundus_bbox, fundus_mask, label_map,
                                    load_arrays, load_rgb, one_hot_labels, prepare_example,
                                    read_mask, resize_image, resize_mask, truth_label_map,
                                    truth_masks)
from mtunet.data.records import Record
from mtunet.data.synthetic import synth_fundus, write_palette_mask
from mtunet.errors import DataError


def test_load_rgb(tmp_path, synthetic_root):
    path = next((synthetic_root / "kaggle-eyepacs-subset" / "train").iterdir())
    img = load_rgb(path)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    gray = tmp_path / "gray.jpg"
    Image.fromarray(img[..., 0]).save(gray)
    with pytest.raises(DataError, match="grayscale"):
        load_rgb(gray)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError, match="bad.jpg"):
        load_rgb(bad)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(path.read_bytes()[:600])
    with pytest.raises(DataError, match="truncated"):
        load_rgb(cut)


def test_read_mask_formats(tmp_path):
    m = np.zeros((20, 30), bool)
    m[3:6, 4:9] = True
    write_palette_mask(tmp_path / "p.tif", m)
    assert Image.open(tmp_path / "p.tif").mode == "P"
    np.testing.assert_array_equal(read_mask(tmp_path / "p.tif"), m)
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[m, 0] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.tif", compression="tiff_lzw")
    np.testing.assert_array_equal(read_mask(tmp_path / "rgba.tif"), m)
    Image.fromarray(m).save(tmp_path / "bilevel.tif")
    np.testing.assert_array_equal(read_mask(tmp_path / "bilevel.tif"), m)


def test_read_mask_truncated(tmp_path):
    m = np.zeros((200, 300), bool)
    write_palette_mask(tmp_path / "p.tif", m)
    data = (tmp_path / "p.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cut.tif"):
        read_mask(tmp_path / "cut.tif")


def test_fundus_bbox():
    img = np.zeros((100, 160, 3), np.uint8)
    yy, xx = np.mgrid[0:100, 0:160]
    img[(yy - 50) ** 2 + (xx - 90) ** 2 < 40 ** 2] = (200, 90, 30)
    y0, y1, x0, x1 = fundus_bbox(img)
    assert abs(y0 - 10) <= 2 and abs(y1 - 90) <= 2 and abs(x0 - 50) <= 2 and abs(x1 - 130) <= 2
    assert fundus_bbox(np.zeros((40, 60, 3), np.uint8)) == (0, 40, 0, 60)


def test_label_map_priority():
    a = np.zeros((4, 4), bool)
    ma, he, ex, se, od = a.copy(), a.copy(), a.copy(), a.copy(), a.copy()
    ma[0, 0] = he[0, 0] = True          # MA beats HE
    he[1, 1] = se[1, 1] = True          # HE beats SE
    se[2, 2] = ex[2, 2] = od[2, 2] = True  # SE beats EX beats OD
    ex[3, 3] = od[3, 3] = True
    od[0, 3] = True
    masks = {"MA": ma, "HE": he, "EX": ex, "SE": se, "OD": od}
    lab = label_map(masks)
    assert lab.dtype == np.uint8
    assert (lab[0, 0], lab[1, 1], lab[2, 2], lab[3, 3], lab[0, 3]) == (1, 2, 4, 3, 0)
    assert label_map(masks, include_od=True)[0, 3] == 5


def test_ignored_lesions_become_the_ignore_label_and_an_all_zero_one_hot_row():
    a = np.zeros((3, 3), bool)
    he, ex = a.copy(), a.copy()
    he[0, 0] = he[1, 1] = True
    ex[1, 1] = ex[2, 2] = True                     # an ignored lesion wins over a taught one
    lab = label_map({"HE": he, "EX": ex}, ignored=("MA", "HE"))
    assert (lab[0, 0], lab[1, 1], lab[2, 2], lab[0, 1]) == (IGNORE_LABEL, IGNORE_LABEL, 3, 0)
    hot = one_hot_labels(lab, 5)
    assert hot.shape == (3, 3, 5)
    assert not hot[0, 0].any() and not hot[1, 1].any()
    assert hot[2, 2, 3] == 1 and hot[0, 1, 0] == 1 and hot.sum() == 7
    with pytest.raises(ValueError, match="label 5 outside the 5 classes"):
        one_hot_labels(np.array([[5, IGNORE_LABEL]], np.uint8), 5)


def test_resize_mask_keeps_single_pixel():
    m = np.zeros((1024, 1024), bool)
    m[517, 301] = True
    small = resize_mask(m, 64)
    assert small.sum() >= 1 and small[517 * 64 // 1024, 301 * 64 // 1024]


def _single_ma_record(tmp_path):
    img, _, _ = synth_fundus(np.random.default_rng(0), 0, width=1024, aspect=0.664, radius_frac=0.42)
    Image.fromarray(img).save(tmp_path / "X_01.jpg", quality=92)
    ma = np.zeros(img.shape[:2], bool)
    ma[400, 600] = True
    write_palette_mask(tmp_path / "X_01_MA.tif", ma)
    he = np.zeros(img.shape[:2], bool)
    he[100:140, 200:260] = True
    write_palette_mask(tmp_path / "X_01_HE.tif", he)
    return Record("X_01", tmp_path / "X_01.jpg", None, {"MA": tmp_path / "X_01_MA.tif",
                  "HE": tmp_path / "X_01_HE.tif"}, "train", "X_01", "idrid-segmentation", True), img


def test_prepare_example_keeps_microaneurysm_at_64(tmp_path):
    rec, img = _single_ma_record(tmp_path)
    image, label = prepare_example(rec, 64)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert label.shape == (64, 64) and label.dtype == np.uint8
    assert (label == 1).sum() >= 1 and (label == 2).sum() > 4
    assert set(np.unique(label)) <= {0, 1, 2}
    # aspect kept: 1024x680 disc cropped+padded to a square, black bands above and below
    assert image[0].max() < 30 and image[32, 5:59].mean() > 20


def test_a_record_with_ignored_lesions_prepares_and_caches_apart(tmp_path):
    import dataclasses

    rec, _ = _single_ma_record(tmp_path)
    skipped = dataclasses.replace(rec, ignored=("MA", "HE"))
    _, label = prepare_example(skipped, 64)
    assert set(np.unique(label)) == {0, IGNORE_LABEL}
    assert (label == IGNORE_LABEL).sum() == (prepare_example(rec, 64)[1] > 0).sum()
    assert example_key(skipped) != example_key(rec)


def test_prepare_example_mask_size_mismatch(tmp_path):
    rec, img = _single_ma_record(tmp_path)
    write_palette_mask(tmp_path / "X_01_MA.tif", np.zeros((10, 10), bool))
    with pytest.raises(DataError, match="X_01_MA.tif: mask is 10x10 but image X_01.jpg is 1024x680"):
        prepare_example(rec, 64)


def test_load_arrays(synthetic_root):
    from mtunet.data import read_grading, read_segmentation
    recs = read_segmentation(synthetic_root / "IDRiD")[:3] + read_grading(synthetic_root / "IDRiD").records[:2]
    images, labels, grades = load_arrays(recs, 32, progress=False)
    assert images.shape == (5, 32, 32, 3) and labels.shape == (5, 32, 32) and grades.dtype == np.int64
    assert list(grades[:3]) == [-1, -1, -1] and all(g in range(5) for g in grades[3:])
    assert labels[:3].max() > 0 and labels[3:].max() == 0


def test_fundus_mask_is_the_disc_inside_the_bbox():
    img = np.zeros((100, 160, 3), np.uint8)
    yy, xx = np.mgrid[0:100, 0:160]
    disc = (yy - 50) ** 2 + (xx - 90) ** 2 < 40 ** 2
    img[disc] = (200, 90, 30)
    img[45:55, 85:95] = (10, 5, 2)                  # a dark haemorrhage inside the disc
    img[48:52, 128:131] = (5, 5, 5)                 # a dark notch at the rim
    img[2:5, 2:5] = (255, 255, 255)                 # a bright speck outside the disc
    mask = fundus_mask(img)
    assert mask.shape == (100, 160) and mask.dtype == bool
    assert mask[45:55, 85:95].all() and mask[48:52, 128:130].all() and not mask[2:5, 2:5].any()
    # a disc, not the bbox rectangle: the low threshold on the blurred rim adds at most 2 px
    assert not (disc & ~mask).any()
    near = cv2.dilate(disc.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert not (mask & ~near).any()
    assert not mask[12, 55] and not mask[88, 125]   # corners of the bbox are outside the disc
    y0, y1, x0, x1 = fundus_bbox(img)
    box = np.zeros_like(mask)
    box[y0:y1, x0:x1] = True
    assert not (mask & ~box).any()
    assert fundus_mask(np.zeros((40, 60, 3), np.uint8)).all()


def test_fundus_mask_agrees_with_bbox_on_a_synthetic_fundus():
    img, masks, _ = synth_fundus(np.random.default_rng(3), 3, width=512)
    mask = fundus_mask(img)
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = fundus_bbox(img)
    assert abs(ys.min() - y0) <= 4 and abs(ys.max() + 1 - y1) <= 4
    assert abs(xs.min() - x0) <= 6 and abs(xs.max() + 1 - x1) <= 6
    for code in ("MA", "HE", "EX", "SE", "OD"):     # every annotated pixel is in the field of view
        assert not (masks[code] & ~mask).any(), code


def test_resize_image_any_number_of_channels():
    x = np.random.default_rng(0).random((40, 40, 6)).astype(np.float32)
    for size in (20, 80):
        out = resize_image(x, size)
        assert out.shape == (size, size, 6)
        np.testing.assert_allclose(out[..., 4], resize_image(x[..., 4:5].copy(), size), rtol=1e-6)
    assert fit_square(x[:30], 20).shape == (20, 20, 6)


def test_truth_masks_native_size_with_overlaps(tmp_path):
    rec, img = _single_ma_record(tmp_path)
    he = read_mask(tmp_path / "X_01_HE.tif")
    ma = np.zeros_like(he)
    ma[120, 230] = True                              # an MA inside the haemorrhage
    write_palette_mask(tmp_path / "X_01_MA.tif", ma)
    masks = truth_masks(rec)
    assert set(masks) == {"MA", "HE", "EX", "SE"} and masks["MA"].shape == (680, 1024)
    assert not masks["EX"].any() and not masks["SE"].any()       # absent file = no lesion
    assert masks["HE"][120, 230] and masks["MA"][120, 230]      # the overlap is kept
    label = truth_label_map(rec, image_hw=img.shape[:2])
    assert label.shape == (680, 1024) and label[120, 230] == 1  # the class map: MA wins
    assert (label == 2).sum() == he.sum() - 1
    assert "OD" in truth_masks(rec, include_od=True)
    write_palette_mask(tmp_path / "X_01_MA.tif", np.zeros((10, 10), bool))
    with pytest.raises(DataError, match="X_01_MA.tif: mask is 10x10"):
        truth_masks(rec)
    with pytest.raises(DataError, match="no lesion annotation"):
        truth_masks(Record("Y", tmp_path / "X_01.jpg", 2))
