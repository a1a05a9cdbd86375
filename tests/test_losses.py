"""Losses of Eq. 1-3 and the training-time Dice metric, on tiny tensors with hand-computed values.

Run also with KERAS_BACKEND=jax (the ``backend`` marker).
"""
import math

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from mtunet import losses as L  # noqa: E402
from mtunet import metrics as M  # noqa: E402

pytestmark = pytest.mark.backend


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def one_hot_map(class_map, k=5):
    return np.eye(k, dtype="float32")[np.asarray(class_map)]


CLASS_MAP = np.array([[[0, 1], [3, 4]], [[2, 0], [0, 0]]])  # (2, 2, 2)


def test_bce_perfect_prediction_is_zero():
    y = one_hot_map(CLASS_MAP)
    assert float(_np(L.SegmentationBCE()(y, y))) < 1e-5


def test_bce_hand_value_mean_and_sum():
    # one image, 1x2 pixels, 2 channels; pixel 1 truth (1,0) pred (.8,.2), pixel 2 truth (0,1)
    # pred (.4,.6). Per-pixel BCE summed over channels: -2 log .8 and -2 log .6.
    y = np.array([[[[1, 0], [0, 1]]]], "float32")
    p = np.array([[[[0.8, 0.2], [0.4, 0.6]]]], "float32")
    px = np.array([-2 * math.log(0.8), -2 * math.log(0.6)])
    assert float(_np(L.SegmentationBCE()(y, p))) == pytest.approx(px.mean(), rel=1e-5)
    got_sum = float(_np(L.SegmentationBCE(pixel_reduction="sum")(y, p)))
    assert got_sum == pytest.approx(px.sum(), rel=1e-5)


def test_bce_clips_zero_probabilities():
    y = np.array([[[[1.0, 0.0]]]], "float32")
    p = np.array([[[[0.0, 1.0]]]], "float32")
    assert np.isfinite(float(_np(L.SegmentationBCE()(y, p))))


def test_bce_rejects_bad_reduction():
    with pytest.raises(ValueError):
        L.SegmentationBCE(pixel_reduction="median")


def test_grading_cce_hand_value_and_sparse():
    g = np.array([[0, 0, 1, 0, 0], [1, 0, 0, 0, 0]], "float32")
    p = np.array([[0.1, 0.1, 0.5, 0.2, 0.1], [0.25, 0.25, 0.25, 0.125, 0.125]], "float32")
    want = (-math.log(0.5) - math.log(0.25)) / 2
    assert float(_np(L.GradingCCE()(g, p))) == pytest.approx(want, rel=1e-5)
    sparse = float(_np(L.GradingCCE(sparse=True)(np.array([2, 0]), p)))
    assert sparse == pytest.approx(want, rel=1e-5)


def test_multitask_loss_is_eq3_weights():
    loss, weights = L.multitask_loss(alpha=0.5)
    assert set(loss) == {"seg", "grade"} and weights == {"seg": 1.0, "grade": 0.5}
    assert isinstance(loss["seg"], L.SegmentationBCE)
    assert isinstance(loss["grade"], L.GradingCCE)
    assert isinstance(L.multitask_loss(seg_loss="dice")[0]["seg"], L.DiceLoss)
    assert isinstance(L.segmentation_loss("generalized_dice"), L.GeneralizedDiceLoss)
    with pytest.raises(ValueError):
        L.segmentation_loss("jaccard")


@pytest.mark.parametrize("cls", [L.DiceLoss, L.GeneralizedDiceLoss])
def test_dice_losses_perfect_and_disjoint(cls):
    y = one_hot_map(CLASS_MAP)
    assert float(_np(cls()(y, y))) == pytest.approx(0.0, abs=1e-5)
    # disjoint: every lesion pixel predicted as background, background predicted as MA
    disjoint = one_hot_map(np.where(CLASS_MAP > 0, 0, 1))
    assert float(_np(cls(smooth=1e-6)(y, disjoint))) == pytest.approx(1.0, abs=1e-4)


def test_dice_loss_hand_value():
    # one channel of interest: truth 1 1 0 0, pred .5 .5 .5 .5 -> dice = 2*1/(2+2) = .5
    y = np.zeros((1, 1, 4, 2), "float32")
    y[0, 0, :2, 1] = 1
    y[0, 0, 2:, 0] = 1
    p = np.full((1, 1, 4, 2), 0.5, "float32")
    got = float(_np(L.DiceLoss(smooth=0.0, class_indexes=(1,))(y, p)))
    assert got == pytest.approx(0.5, rel=1e-5)


def test_losses_serialize_round_trip():
    for obj in (L.SegmentationBCE(pixel_reduction="sum"), L.GradingCCE(sparse=True),
                L.DiceLoss(smooth=2.0, class_indexes=(1, 2)), L.GeneralizedDiceLoss()):
        again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(obj))
        assert type(again) is type(obj) and again.get_config() == obj.get_config()


def test_dice_coefficient_metric_matches_numpy_pooled():
    rng = np.random.default_rng(0)
    true = rng.integers(0, 5, size=(3, 8, 8))
    pred = rng.integers(0, 5, size=(3, 8, 8))
    prob = one_hot_map(pred) * 0.9 + 0.02
    metric = L.DiceCoefficient((1, 2), name="red_dice")
    metric.update_state(one_hot_map(true[:2]), prob[:2])
    metric.update_state(true[2:], prob[2:])  # integer class map also accepted
    want = M.dice_pooled(M.group_mask(pred, "red"), M.group_mask(true, "red"))
    assert float(_np(metric.result())) == pytest.approx(want, rel=1e-6)
    metric.reset_state()
    assert float(_np(metric.result())) == 0.0
    again = L.DiceCoefficient.from_config(metric.get_config())
    assert again.class_indexes == (1, 2) and again.name == "red_dice"
    names = [m.name for m in L.lesion_dice_metrics()]
    assert names == ["red_dice", "yellow_dice"]


def test_losses_train_a_tiny_two_output_model():
    inp = keras.Input((4, 4, 3))
    seg = keras.layers.Conv2D(5, 1, activation="softmax", name="seg")(inp)
    grade = keras.layers.Dense(5, activation="softmax", name="grade")(
        keras.layers.GlobalMaxPooling2D()(inp))
    model = keras.Model(inp, {"seg": seg, "grade": grade})
    loss, weights = L.multitask_loss(alpha=1.0)
    model.compile(optimizer="adam", loss=loss, loss_weights=weights,
                  metrics={"seg": L.lesion_dice_metrics()})
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 4, 4, 3)).astype("float32")
    y = {"seg": one_hot_map(rng.integers(0, 5, (4, 4, 4))),
         "grade": np.eye(5, dtype="float32")[rng.integers(0, 5, 4)]}
    hist = model.fit(x, y, epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"][0])
    assert any("red_dice" in k for k in hist.history)


def test_bce_dice_is_the_sum_of_its_terms_and_charges_a_flood():
    y = one_hot_map(CLASS_MAP)
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(y.shape[-1]), size=y.shape[:-1]).astype("float32")
    want = float(_np(L.SegmentationBCE()(y, p))) + float(_np(L.DiceLoss()(y, p)))
    assert float(_np(L.BCEDiceLoss()(y, p))) == pytest.approx(want, rel=1e-5)
    assert isinstance(L.segmentation_loss("bce_dice"), L.BCEDiceLoss)
    # a lesion-free truth: Dice alone barely tells "all background" from "all MA" (smooth term),
    # the BCE term makes the flood far worse
    empty = one_hot_map(np.zeros_like(CLASS_MAP))
    flood = one_hot_map(np.ones_like(CLASS_MAP)) * 0.98 + 0.004
    clean = empty * 0.98 + 0.004
    assert float(_np(L.BCEDiceLoss()(empty, flood))) > float(_np(L.BCEDiceLoss()(empty, clean))) + 5
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(L.BCEDiceLoss(smooth=2.0)))
    assert isinstance(again, L.BCEDiceLoss) and again.get_config() == L.BCEDiceLoss(smooth=2.0).get_config()


# --- focal, weighted Dice and their sums (lesion-crop training) ------------------------------------

def np_focal(y, p, gamma=2.0, alpha=None, eps=L.EPSILON):
    """Numpy reference: per pixel -Σ_c α_c y_c (1 - p_c)^γ log p_c, mean over pixels, then batch."""
    p = np.clip(p, eps, 1 - eps)
    a = np.ones(y.shape[-1]) if alpha is None else np.broadcast_to(np.asarray(alpha, float), y.shape[-1:])
    per_pixel = -(a * y * (1 - p) ** gamma * np.log(p)).sum(-1)
    return per_pixel.reshape(len(y), -1).mean(1).mean()


def np_weighted_dice(y, p, background_weight=0.1, smooth=1.0):
    axes = tuple(range(y.ndim - 1))
    dice = (2 * (y * p).sum(axes) + smooth) / (y.sum(axes) + p.sum(axes) + smooth)
    w = np.ones(y.shape[-1])
    w[0] = background_weight
    return 1 - (w * dice).sum() / w.sum()


def _soft(y, seed=0):
    """A random softmax map of y's shape."""
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.ones(y.shape[-1]), size=y.shape[:-1]).astype("float32")


def _grad(loss, y, p):
    """d loss / d p on the active backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf
        t = tf.Variable(p)
        with tf.GradientTape() as tape:
            value = loss(y, t)
        return tape.gradient(value, t).numpy()
    if backend == "jax":
        import jax
        return np.asarray(jax.grad(lambda q: loss(y, q))(p))
    if backend == "torch":
        import torch
        t = torch.tensor(p, requires_grad=True)
        loss(y, t).backward()
        return t.grad.numpy()
    pytest.skip(f"no gradient helper for backend {backend}")


NEW_LOSSES = ("focal", "weighted_dice", "dice_focal", "ce_dice")


def test_registry_is_the_one_list_of_names():
    assert set(L.SEGMENTATION_LOSSES) >= {"bce", "dice", "generalized_dice", "bce_dice", *NEW_LOSSES}
    for name, cls in L.SEGMENTATION_LOSSES.items():
        assert type(L.segmentation_loss(name)) is cls
    assert isinstance(L.multitask_loss(seg_loss="dice_focal")[0]["seg"], L.DiceFocalLoss)
    with pytest.raises(ValueError, match="dice_focal"):  # the message lists the names
        L.segmentation_loss("lovasz")


@pytest.mark.parametrize("name", NEW_LOSSES)
def test_new_losses_perfect_prediction_is_minimal(name):
    y = one_hot_map(CLASS_MAP)
    loss = L.segmentation_loss(name)
    perfect = float(_np(loss(y, y)))
    assert perfect == pytest.approx(0.0, abs=1e-4)
    for seed in range(3):
        assert float(_np(loss(y, _soft(y, seed)))) > perfect + 0.01


def test_focal_matches_numpy_and_reduces_to_cross_entropy():
    y = one_hot_map(CLASS_MAP)
    p = _soft(y)
    assert float(_np(L.FocalLoss()(y, p))) == pytest.approx(np_focal(y, p), rel=1e-5)
    alpha = (0.25, 1.0, 1.0, 2.0, 2.0)
    assert float(_np(L.FocalLoss(gamma=1.5, alpha=alpha)(y, p))) == pytest.approx(
        np_focal(y, p, 1.5, alpha), rel=1e-5)
    assert float(_np(L.FocalLoss(alpha=0.25)(y, p))) == pytest.approx(0.25 * np_focal(y, p), rel=1e-5)
    ce = -(y * np.log(p)).sum(-1).mean()
    assert float(_np(L.FocalLoss(gamma=0.0)(y, p))) == pytest.approx(ce, rel=1e-5)
    # per image: one value per image before Keras averages the batch
    assert _np(L.FocalLoss().call(y, p)).shape == (2,)
    # a confident correct pixel costs far less than under cross-entropy (the point of focal)
    y1 = np.array([[[[0, 1]]]], "float32")
    p1 = np.array([[[[0.1, 0.9]]]], "float32")
    assert float(_np(L.FocalLoss()(y1, p1))) == pytest.approx(0.01 * -math.log(0.9), rel=1e-4)
    with pytest.raises(ValueError):
        L.FocalLoss(alpha=(1.0, 2.0))(y, p)
    with pytest.raises(ValueError):
        L.FocalLoss(gamma=-1)


def test_weighted_dice_matches_numpy_and_background_weight_zero_is_dice():
    y = one_hot_map(CLASS_MAP)
    p = _soft(y)
    for bw in (0.1, 0.5, 1.0):
        got = float(_np(L.WeightedDiceLoss(background_weight=bw)(y, p)))
        assert got == pytest.approx(np_weighted_dice(y, p, bw), rel=1e-5)
    lesion_only = float(_np(L.WeightedDiceLoss(background_weight=0.0)(y, p)))
    assert lesion_only == pytest.approx(float(_np(L.DiceLoss()(y, p))), rel=1e-6)
    # the background channel charges a flood that lesion-only Dice (smooth term) barely sees
    empty = one_hot_map(np.zeros_like(CLASS_MAP))
    flood = one_hot_map(np.ones_like(CLASS_MAP)) * 0.98 + 0.004
    loss = L.WeightedDiceLoss()
    assert float(_np(loss(empty, flood))) > float(_np(loss(empty, empty))) + 0.05
    with pytest.raises(ValueError):
        L.WeightedDiceLoss(background_weight=-1)


def test_sums_match_their_terms():
    y = one_hot_map(CLASS_MAP)
    p = _soft(y, 1)
    want = np_weighted_dice(y, p) + L.DICE_FOCAL_WEIGHT * np_focal(y, p)
    assert float(_np(L.DiceFocalLoss()(y, p))) == pytest.approx(want, rel=1e-5)
    want = np_weighted_dice(y, p, 0.3) + 1.0 * np_focal(y, p, gamma=3.0)
    got = L.DiceFocalLoss(background_weight=0.3, gamma=3.0, focal_weight=1.0)(y, p)
    assert float(_np(got)) == pytest.approx(want, rel=1e-5)
    want = np_weighted_dice(y, p) + np_focal(y, p, gamma=0.0)
    assert float(_np(L.CEDiceLoss()(y, p))) == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("name", NEW_LOSSES)
def test_new_losses_have_finite_gradients(name):
    y = one_hot_map(CLASS_MAP)
    loss = L.segmentation_loss(name)
    hard = y.copy()  # perfect, and a prediction with exact zeros and ones (clipped)
    wrong = one_hot_map(np.where(CLASS_MAP > 0, 0, 1))
    for p in (_soft(y), hard, wrong):
        g = _grad(loss, y, p.astype("float32"))
        assert g.shape == y.shape and np.all(np.isfinite(g))
    assert np.abs(_grad(loss, y, _soft(y))).sum() > 0


def test_new_losses_serialize_round_trip():
    for obj in (L.FocalLoss(gamma=1.0, alpha=(0.1, 1, 1, 1, 1)), L.FocalLoss(alpha=0.25),
                L.WeightedDiceLoss(background_weight=0.2, smooth=2.0),
                L.DiceFocalLoss(background_weight=0.2, focal_weight=1.0),
                L.CEDiceLoss(background_weight=0.0)):
        again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(obj))
        assert type(again) is type(obj) and again.get_config() == obj.get_config()


@pytest.mark.parametrize("name", sorted(L.SEGMENTATION_LOSSES))
def test_every_segmentation_loss_skips_ignored_pixels(name):
    """A pixel whose one-hot truth is all zero (a lesion its mask cannot be trusted with) must
    not move the loss, whatever is predicted there: the loss neither teaches that lesion nor
    background at that pixel."""
    y = one_hot_map(CLASS_MAP)
    y[0, 0, 1] = 0.0                                  # the MA pixel of image 0: ignored
    loss = L.segmentation_loss(name)
    pred = _soft(y, 0)
    other = pred.copy()
    other[0, 0, 1] = [0.0, 0.97, 0.01, 0.01, 0.01]   # anything at the ignored pixel
    assert float(_np(loss(y, pred))) == pytest.approx(float(_np(loss(y, other))), abs=1e-6)
    taught = pred.copy()
    taught[0, 1, 0] = [0.0, 0.97, 0.01, 0.01, 0.01]  # the same change at a labelled pixel counts
    assert abs(float(_np(loss(y, pred))) - float(_np(loss(y, taught)))) > 1e-4
