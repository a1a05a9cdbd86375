"""Scoring at the ground truth's own resolution, inside the fundus (evaluate.score_segmentation).

Synthetic records (128 px wide, from the session fixture) unless marked ``realdata``; the Keras
tests use 32-64 px models and run again under KERAS_BACKEND=jax (the ``backend`` marker).
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from mtunet import evaluate as E
from mtunet.data import read_segmentation
from mtunet.data.preprocess import (fit_square, fundus_bbox, fundus_mask, load_rgb,
                                    restore_probabilities, truth_masks)

GROUPS = ("red", "yellow", "MA", "HE", "EX", "SE")


@pytest.fixture(scope="module")
def records(synthetic_root):
    """The synthetic segmentation records that have red and yellow lesions (8 or so of 12)."""
    recs = [r for r in read_segmentation(synthetic_root / "IDRiD")
            if {"MA", "HE", "EX"} <= set(r.masks)]
    assert len(recs) >= 4
    return recs[:4]


def _constant(channel: int, n_channels: int = 5):
    """A predictor whose every pixel is ``channel`` with probability 1."""
    def predict(x):
        p = np.zeros(x.shape[:3] + (n_channels,), np.float32)
        p[..., channel] = 1.0
        return p
    return predict


def _maps_predictor(maps):
    """A predictor that returns the given (S, S, C) maps in order (score_segmentation batches)."""
    queue = list(maps)

    def predict(x):
        out = np.stack(queue[:len(x)])
        del queue[:len(x)]
        return out
    return predict


# ---------------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [48, 64, 160])
def test_restore_probabilities_inverts_fit_square(size):
    h, w = 70, 110
    bbox = (4, 66, 12, 100)                       # 62 x 88 crop, padded to 88 x 88
    label = np.zeros((h, w), np.uint8)
    label[20:41, 30:61] = 2                       # a 21 x 31 block of class 2
    cv2.circle(label, (80, 50), 8, 3, -1)         # a disc of class 3
    onehot = (label[..., None] == np.arange(5)).astype(np.float32)
    small = fit_square(onehot, size, bbox)
    small[..., 0] += 1 - small.sum(axis=-1)       # the padding is background: a softmax map
    back = restore_probabilities(small, (h, w), bbox)
    assert back.shape == (h, w, 5) and back.dtype == np.float32
    np.testing.assert_allclose(back.sum(axis=-1), 1.0, atol=1e-5)
    outside = np.ones((h, w), bool)
    outside[bbox[0]:bbox[1], bbox[2]:bbox[3]] = False
    assert (back[outside, 0] == 1).all() and (back[outside, 1:] == 0).all()
    got = back.argmax(axis=-1)
    kernel = np.ones((3, 3), np.uint8)
    for c in (2, 3):                              # every class lands on its pixels within 1 px
        want = (label == c).astype(np.uint8)
        hit = got == c
        assert not (hit & ~cv2.dilate(want, kernel).astype(bool)).any()
        assert not (cv2.erode(want, kernel).astype(bool) & ~hit).any()


def test_restore_probabilities_rejects_a_class_map():
    with pytest.raises(ValueError, match="S, S, C"):
        restore_probabilities(np.zeros((8, 8)), (10, 10), (0, 10, 0, 10))


# ---------------------------------------------------------------------------------------------
# Scores on synthetic records
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def oracle(records):
    return E.score_oracle(records, 128, progress=False)


def test_oracle_scores_near_one(oracle, records):
    s = oracle.scores
    assert s["n_images"] == len(records) == len(oracle.image_ids)
    for g in ("red", "yellow", "HE", "EX"):
        assert s[f"{g}_dice_pooled"] > 0.9, g
        assert 0.85 < s[f"{g}_area_ratio"] < 1.15, g
        assert s[f"{g}_aupr"] > 0.9, g
    assert s["red_dice_per_image"] > 0.85
    assert oracle.counts.shape == (len(records), len(GROUPS), 3)
    assert oracle.pred_maps.shape == (len(records), 128, 128) and oracle.pred_maps.dtype == np.uint8
    assert set(oracle.per_image) == set(GROUPS)


def test_oracle_soft_and_hard_agree_at_full_size(records):
    """At a working size above the fundus's own size there is nothing to lose: Dice ~ 1."""
    ev = E.score_oracle(records[:2], 160, soft=True, progress=False)
    assert ev.scores["red_dice_pooled"] > 0.95 and ev.scores["yellow_dice_pooled"] > 0.95


def test_background_predictor_scores_zero(records):
    ev = E.score_segmentation(_constant(0), records, 64, progress=False)
    for g in GROUPS:
        if ev.counts[:, GROUPS.index(g), 2].sum():
            assert ev.scores[f"{g}_dice_pooled"] == 0.0
            assert ev.scores[f"{g}_area_ratio"] == 0.0
    # all scores tied: average precision is the prevalence of lesion pixels in the fundus
    red = ev.counts[:, 0, 2].sum()
    fundus = ev.pr_hist[0].sum()
    assert ev.scores["red_aupr"] == pytest.approx(red / fundus)


def test_all_lesion_predictor_floods(records):
    ev = E.score_segmentation(_constant(2), records, 64, progress=False)   # every pixel HE
    s = ev.scores
    assert s["red_area_ratio"] > 10 and s["HE_area_ratio"] > 10
    assert s["yellow_area_ratio"] == 0.0 and s["MA_area_ratio"] == 0.0
    # only fundus pixels count: |X| is the field of view, not the frame
    for i, r in enumerate(records):
        image = load_rgb(r.image_path)
        fov = fundus_mask(image)
        assert ev.counts[i, GROUPS.index("HE"), 1] == fov.sum() < image.shape[0] * image.shape[1]


def test_prediction_outside_the_fundus_changes_nothing(records):
    size = 96
    maps, painted = [], []
    for r in records:
        image = load_rgb(r.image_path)
        box = fundus_bbox(image)
        prob = E.oracle_probabilities(r, size, image=image, bbox=box)
        maps.append(prob)
        # working pixels whose whole neighbourhood lies outside the field of view
        fov_work = fit_square(fundus_mask(image, bbox=box).astype(np.float32), size, box)
        far = cv2.dilate((fov_work > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) == 0
        assert far.any()
        p = prob.copy()
        p[far] = 0
        p[far, 1] = 1.0                           # microaneurysms all around the disc
        painted.append(p)
    plain = E.score_segmentation(_maps_predictor(maps), records, size, progress=False)
    moved = E.score_segmentation(_maps_predictor(painted), records, size, progress=False)
    np.testing.assert_array_equal(plain.counts, moved.counts)
    np.testing.assert_array_equal(plain.pr_hist, moved.pr_hist)
    assert plain.scores == moved.scores
    assert not np.array_equal(plain.pred_maps, moved.pred_maps)  # the figure maps do show it


def test_score_segmentation_equals_scorer_on_oracle_maps(records, oracle):
    maps = [E.oracle_probabilities(r, 128) for r in records]
    ev = E.score_segmentation(_maps_predictor(maps), records, 128, batch_size=3, progress=False)
    np.testing.assert_array_equal(ev.counts, oracle.counts)
    assert ev.scores == oracle.scores


def test_per_lesion_scores_use_each_lesions_own_mask(records):
    """A pixel marked both HE and EX is in both truths; the argmax can be right for one."""
    r = records[0]
    masks = truth_masks(r)
    ev = E.score_oracle([r], 128, progress=False)
    fov = fundus_mask(load_rgb(r.image_path))
    for gi, g in enumerate(GROUPS):
        codes = {"red": ("MA", "HE"), "yellow": ("EX", "SE")}.get(g, (g,))
        want = np.logical_or.reduce([masks[c] for c in codes]) & fov
        assert ev.counts[0, gi, 2] == want.sum(), g


def test_empty_rule_and_bad_inputs(records):
    ev = E.score_segmentation(_constant(0), records, 64, empty="zero", progress=False)
    assert ev.empty == "zero" and np.isfinite(ev.per_image["SE"]).all()
    with pytest.raises(ValueError, match="empty"):
        E.score_segmentation(_constant(0), records, 64, empty="ignore", progress=False)
    with pytest.raises(ValueError, match="channels"):
        E.score_segmentation(_constant(0, n_channels=3), records, 64, progress=False)
    with pytest.raises(ValueError, match="predict_probs returned"):
        E.score_segmentation(lambda x: np.zeros((1, 8, 8, 5)), records, 64, progress=False)


def test_include_od_scores_the_disc_apart(synthetic_root):
    recs = [r for r in read_segmentation(synthetic_root / "IDRiD") if "OD" in r.masks][:2]
    ev = E.score_oracle(recs, 128, include_od=True, progress=False)
    assert ev.groups[-1] == "OD" and ev.scores["OD_dice_pooled"] > 0.9
    flood = E.score_segmentation(_constant(5, 6), recs, 64, include_od=True, progress=False)
    assert flood.scores["red_area_ratio"] == 0.0 and flood.scores["OD_area_ratio"] > 10


def test_save_load_round_trip(oracle, tmp_path):
    path = tmp_path / "fullres.npz"
    oracle.save(path)
    back = E.FullResSegmentationEval.load(path)
    assert back.image_ids == oracle.image_ids and back.groups == oracle.groups
    assert back.empty == oracle.empty and back.work_size == 128
    assert list(back.scores) == list(oracle.scores)
    for k, v in oracle.scores.items():
        assert back.scores[k] == v or (math.isnan(v) and math.isnan(back.scores[k]))
    for name in ("counts", "pr_hist", "pred_maps", "bboxes", "image_hw"):
        np.testing.assert_array_equal(getattr(back, name), getattr(oracle, name))
    for g in GROUPS:
        np.testing.assert_array_equal(back.per_image[g], oracle.per_image[g])
    full = back.pred_map_at_image_size(0)
    assert full.shape == tuple(back.image_hw[0]) and full.dtype == np.uint8


# ---------------------------------------------------------------------------------------------
# Keras models at another input size
# ---------------------------------------------------------------------------------------------

def _tiny_segmenter(keras, size):
    inp = keras.Input((size, size, 3), name="image")
    x = keras.layers.Rescaling(1 / 255)(inp)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    y = keras.layers.MaxPooling2D()(x)
    y = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(y)
    x = keras.layers.Concatenate()([x, keras.layers.UpSampling2D()(y)])
    seg = keras.layers.Conv2D(5, 1, activation="softmax", name="seg")(x)
    grade = keras.layers.Dense(5, activation="softmax", name="grade")(
        keras.layers.GlobalMaxPooling2D()(y))
    return keras.Model(inp, {"seg": seg, "grade": grade})


@pytest.mark.backend
def test_tiny_model_at_size_end_to_end(records):
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    model = _tiny_segmenter(keras, 32)
    assert E.model_at_size(model, 32) is model
    big = E.model_at_size(model, 64)
    assert tuple(big.input_shape[1:]) == (64, 64, 3)
    x = np.random.default_rng(0).uniform(0, 255, (1, 32, 32, 3)).astype(np.float32)
    same = E.model_at_size(big, 32)                # the weights travel both ways
    np.testing.assert_allclose(same.predict_on_batch(x)["seg"], model.predict_on_batch(x)["seg"],
                               rtol=1e-5, atol=1e-6)
    ev = E.score_segmentation(E.seg_predictor(big), records[:2], 64, progress=False)
    assert ev.pred_maps.shape == (2, 64, 64)
    for g in GROUPS:
        assert 0.0 <= ev.scores[f"{g}_area_ratio"] or math.isnan(ev.scores[f"{g}_area_ratio"])


@pytest.mark.backend
@pytest.mark.parametrize("name", ["unet", "mtunet"])
def test_registry_model_at_size(name, records):
    keras = pytest.importorskip("keras")
    from mtunet.models.registry import build_model

    keras.utils.set_random_seed(0)
    model = build_model(name, (32, 32, 3), n_seg_classes=5, encoder_weights=None)
    big = E.model_at_size(model, 64, name=name)
    out = big.predict_on_batch(np.zeros((1, 64, 64, 3), np.float32))
    assert out["seg"].shape == (1, 64, 64, 5)
    if "grade" in out:                            # the grade head (global max pool) takes any size
        assert out["grade"].shape == (1, 5)
    for a, b in zip(model.get_weights(), big.get_weights()):
        np.testing.assert_array_equal(a, b)
    if name == "mtunet":
        ev = E.score_segmentation(E.seg_predictor(big), records[:1], 64, progress=False)
        assert ev.scores["n_images"] == 1


# ---------------------------------------------------------------------------------------------
# Real IDRiD: the working resolution is what limits the score
# ---------------------------------------------------------------------------------------------

@pytest.mark.realdata
def test_real_oracle_512_beats_128(real_idrid_dir):
    recs = [r for r in read_segmentation(real_idrid_dir) if r.split == "test"][:5]
    at512 = E.score_oracle(recs, 512, progress=False).scores
    at128 = E.score_oracle(recs, 128, progress=False).scores
    # 27 test images: oracle red Dice 0.96 at 512, 0.83 at 128 (microaneurysms 0.89 vs 0.35)
    assert at512["red_dice_pooled"] > 0.93
    assert at512["red_dice_pooled"] > at128["red_dice_pooled"] + 0.05
    assert at512["MA_dice_pooled"] > at128["MA_dice_pooled"] + 0.2
    assert 0.95 < at512["red_area_ratio"] < 1.05
