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
