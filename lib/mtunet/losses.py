"""The paper's losses (Eq. 1-3), Dice-type alternatives, and a training-time Dice metric.

Written with ``keras.ops`` only, so they run under TensorFlow and JAX; every class is
registered as Keras-serializable (package ``"mtunet"``) so saved models reload without
``custom_objects``.

- Eq. 1, :class:`SegmentationBCE`: binary cross-entropy summed over the k = 5 channels of the
  per-pixel softmax map S against the one-hot mask Y.
- Eq. 2, :class:`GradingCCE`: categorical cross-entropy of the grade.
- Eq. 3, :func:`multitask_loss`: ``L_M = L_B + α L_C`` as Keras ``loss`` / ``loss_weights``
  dicts keyed by the model's output names ``"seg"`` and ``"grade"``.
- :class:`DiceLoss`, :class:`GeneralizedDiceLoss`: the Dice-type losses the paper says did
  worse than BCE ("Loss Functions"), kept to test that remark.
- :class:`BCEDiceLoss`: Eq. 1 + Dice, the segmentation loss of the `cpu` profile (see there).
- :class:`FocalLoss`, :class:`WeightedDiceLoss` (Dice over all channels, background down-weighted),
  :class:`DiceFocalLoss` (the lesion-crop recipe of DESIGN.md) and :class:`CEDiceLoss`: losses for
  training on lesion-scale crops, where BCE alone collapses and Dice alone floods.

Every segmentation loss skips the pixels whose one-hot truth is all zero (ignored pixels, see
``config.IGNORE_LABEL``).

:data:`SEGMENTATION_LOSSES` is the one list of segmentation loss names (name -> class); read it
rather than repeating the names.
"""
from __future__ import annotations

import keras
from keras import ops

from mtunet.config import LESION_GROUPS

EPSILON = 1e-7
SEG_OUTPUT, GRADE_OUTPUT = "seg", "grade"
LESION_CHANNELS = (1, 2, 3, 4)

_register = keras.saving.register_keras_serializable(package="mtunet")


def _labelled_only(y_true, y_pred):
    """``y_pred`` with the pixels whose one-hot ``y_true`` row is all zero set to 0.

    Such a pixel is one the data pipeline marks as ignored (config.IGNORE_LABEL: a lesion its
    mask cannot be trusted with). Zeroed, it adds nothing to any Dice sum and (after clipping) no
    cross-entropy, so the loss teaches neither a lesion nor background there.
    """
    y_pred = ops.convert_to_tensor(y_pred)
    labelled = ops.cast(ops.sum(ops.cast(y_true, y_pred.dtype), axis=-1, keepdims=True) > 0,
                        y_pred.dtype)
    return y_pred * labelled


def _channels(x, class_indexes):
    """Select channels ``class_indexes`` of the last axis (None keeps all)."""
    if class_indexes is None:
        return x
    return ops.take(x, ops.convert_to_tensor(list(class_indexes), dtype="int32"), axis=-1)


@_register
class SegmentationBCE(keras.losses.Loss):
    """Eq. 1: L_B(S, Y) = -Σ_{i,j} Σ_k [Y log S + (1 - Y) log(1 - S)].

    ``y_pred`` is the per-pixel softmax map S (batch, h, w, k), ``y_true`` the one-hot mask Y of
    the same shape. The k channels are summed, as in Eq. 1.

    The paper writes a *sum* over the pixels i, j. By default (``pixel_reduction="mean"``) we
    *average* over pixels instead, so L_B is about one per-pixel cross-entropy whatever the
    input size and the α of Eq. 3 weighs it against the per-image L_C on a comparable scale
    (a literal sum at 512 x 512 makes L_B ~2.6e5 times larger and α meaningless).
    ``pixel_reduction="sum"`` gives the literal Eq. 1. Either way the result is one value per
    image; Keras then averages over the batch. Probabilities are clipped to
    [epsilon, 1 - epsilon] before the logarithms.
    """

    def __init__(self, pixel_reduction: str = "mean", epsilon: float = EPSILON,
                 name: str = "segmentation_bce", **kwargs):
        if pixel_reduction not in ("mean", "sum"):
            raise ValueError(f"pixel_reduction must be 'mean' or 'sum', got {pixel_reduction!r}")
        super().__init__(name=name, **kwargs)
        self.pixel_reduction = pixel_reduction
        self.epsilon = float(epsilon)

    def call(self, y_true, y_pred):
        y_pred = ops.clip(_labelled_only(y_true, y_pred), self.epsilon, 1.0 - self.epsilon)
        y_true = ops.cast(y_true, y_pred.dtype)
        bce = -(y_true * ops.log(y_pred) + (1.0 - y_true) * ops.log(1.0 - y_pred))
        per_pixel = ops.sum(bce, axis=-1)
        spatial = tuple(range(1, len(per_pixel.shape)))
        if self.pixel_reduction == "sum":
            return ops.sum(per_pixel, axis=spatial)
        return ops.mean(per_pixel, axis=spatial)

    def get_config(self):
        return {**super().get_config(), "pixel_reduction": self.pixel_reduction,
                "epsilon": self.epsilon}


@_register
class GradingCCE(keras.losses.Loss):
    """Eq. 2: L_C(P, G) = -Σ_k G_k log P_k, P the softmax grade vector, G the one-hot grade.

    (The paper's Eq. 2 carries pixel indexes i, j on P and G; the grade is one vector per
    image, so we read it without them.) ``sparse=True`` accepts integer grades instead of
    one-hot vectors. Probabilities are clipped to [epsilon, 1 - epsilon].
    """

    def __init__(self, sparse: bool = False, epsilon: float = EPSILON,
                 name: str = "grading_cce", **kwargs):
        super().__init__(name=name, **kwargs)
        self.sparse = bool(sparse)
        self.epsilon = float(epsilon)

    def call(self, y_true, y_pred):
        y_pred = ops.clip(ops.convert_to_tensor(y_pred), self.epsilon, 1.0 - self.epsilon)
        if self.sparse:
            y_true = ops.one_hot(ops.reshape(ops.cast(y_true, "int32"), (-1,)),
                                 y_pred.shape[-1], dtype=y_pred.dtype)
        y_true = ops.cast(y_true, y_pred.dtype)
        return -ops.sum(y_true * ops.log(y_pred), axis=-1)

    def get_config(self):
        return {**super().get_config(), "sparse": self.sparse, "epsilon": self.epsilon}


def _soft_overlap(y_true, y_pred, class_indexes):
    """Σ Y·S, Σ Y, Σ S per channel, summed over batch and pixels (pooled, like
    segmentation_models' ``per_image=False``); ignored pixels (all-zero ``y_true``) left out."""
    y_pred = _channels(_labelled_only(y_true, y_pred), class_indexes)
    y_true = ops.cast(_channels(y_true, class_indexes), y_pred.dtype)
    axes = tuple(range(len(y_pred.shape) - 1))
    return (ops.sum(y_true * y_pred, axis=axes), ops.sum(y_true, axis=axes),
            ops.sum(y_pred, axis=axes))


@_register
class DiceLoss(keras.losses.Loss):
    """Soft Dice loss over the lesion channels: mean_c [1 - (2 Σ Y S + s) / (Σ Y + Σ S + s)].

    Sums run over the whole batch and all pixels (one Dice per channel, then the mean over
    ``class_indexes``, by default MA, HE, EX, SE; background excluded). ``smooth`` s keeps
    channels absent from the batch at loss 0 instead of 0/0. A perfect prediction gives 0, a
    disjoint one close to 1. Returns one value for the batch.
    """

    def __init__(self, smooth: float = 1.0, class_indexes=LESION_CHANNELS,
                 name: str = "dice_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.smooth = float(smooth)
        self.class_indexes = None if class_indexes is None else tuple(int(c)
                                                                      for c in class_indexes)

    def call(self, y_true, y_pred):
        inter, t_sum, p_sum = _soft_overlap(y_true, y_pred, self.class_indexes)
        dice = (2.0 * inter + self.smooth) / (t_sum + p_sum + self.smooth)
        return 1.0 - ops.mean(dice)

    def get_config(self):
        return {**super().get_config(), "smooth": self.smooth,
                "class_indexes": self.class_indexes}


@_register
class GeneralizedDiceLoss(DiceLoss):
    """Generalized Dice loss (Sudre et al. 2017) over the lesion channels.

    GDL = 1 - 2 Σ_c w_c Σ Y S / Σ_c w_c Σ (Y + S), with w_c = 1 / (Σ Y_c)^2 over batch and
    pixels, so rare lesions (MA) weigh as much as large ones (EX). A channel absent from the
    batch would get an infinite weight; as in MONAI it gets the largest finite weight instead.
    ``smooth`` is added to numerator and denominator. Returns one value for the batch.
    """

    def __init__(self, smooth: float = 1e-5, class_indexes=LESION_CHANNELS,
                 name: str = "generalized_dice_loss", **kwargs):
        super().__init__(smooth=smooth, class_indexes=class_indexes, name=name, **kwargs)

    def call(self, y_true, y_pred):
        inter, t_sum, p_sum = _soft_overlap(y_true, y_pred, self.class_indexes)
        present = t_sum > 0
        w = ops.where(present, 1.0 / ops.square(ops.maximum(t_sum, 1.0)), 0.0)
        w = ops.where(present, w, ops.max(w))
        num = 2.0 * ops.sum(w * inter) + self.smooth
        den = ops.sum(w * (t_sum + p_sum)) + self.smooth
        return 1.0 - num / den


@_register
class BCEDiceLoss(keras.losses.Loss):
    """Eq. 1 plus the soft Dice loss of the lesion channels: L_B + (1 - Dice).

    segmentation-models' ``bce_dice_loss`` combination. Each term alone fails at a small CPU
    budget on ~1 % lesion pixels: BCE settles on "all background", Dice floods the fundus with
    red lesions (a flood still scores a non-zero Dice). BCE charges every false-positive pixel,
    Dice keeps the rare classes in view. Returns one value for the batch.
    """

    def __init__(self, pixel_reduction: str = "mean", smooth: float = 1.0,
                 class_indexes=LESION_CHANNELS, name: str = "bce_dice_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.bce = SegmentationBCE(pixel_reduction=pixel_reduction)
        self.dice = DiceLoss(smooth=smooth, class_indexes=class_indexes)

    def call(self, y_true, y_pred):
        return ops.mean(self.bce.call(y_true, y_pred)) + self.dice.call(y_true, y_pred)

    def get_config(self):
        return {**super().get_config(), "pixel_reduction": self.bce.pixel_reduction,
                "smooth": self.dice.smooth, "class_indexes": self.dice.class_indexes}


def _per_image_mean(per_pixel):
    """Mean over every axis but the first: one value per image."""
    return ops.mean(per_pixel, axis=tuple(range(1, len(per_pixel.shape))))


@_register
class FocalLoss(keras.losses.Loss):
    """Multi-class focal loss (Lin et al. 2017) on the per-pixel softmax S against the one-hot Y.

    FL = -Σ_c α_c Y_c (1 - S_c)^γ log S_c per pixel, averaged over the pixels of each image (one
    value per image, as :class:`SegmentationBCE`). The factor (1 - S_c)^γ silences the many pixels
    already classified well (background, mostly), so the rare lesion pixels keep the gradient.
    ``gamma=0`` with ``alpha=None`` is the categorical cross-entropy.

    alpha:         None (1 for every channel), one number (all channels), or one weight per channel
                   of ``class_indexes`` (per class of the softmax when that is None).
    class_indexes: the channels summed; None (default) keeps all, background included — without
                   it the loss would not charge a lesion predicted on background.
    Probabilities are clipped to [epsilon, 1 - epsilon].
    """

    def __init__(self, gamma: float = 2.0, alpha=None, class_indexes=None, epsilon: float = EPSILON,
                 name: str = "focal_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if float(gamma) < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        if alpha is None or isinstance(alpha, (int, float)):
            self.alpha = None if alpha is None else float(alpha)
        else:
            self.alpha = tuple(float(a) for a in alpha)
        self.class_indexes = None if class_indexes is None else tuple(int(c) for c in class_indexes)
        self.epsilon = float(epsilon)

    def call(self, y_true, y_pred):
        y_pred = _channels(ops.clip(ops.convert_to_tensor(y_pred), self.epsilon, 1.0 - self.epsilon),
                           self.class_indexes)
        y_true = ops.cast(_channels(y_true, self.class_indexes), y_pred.dtype)
        term = -y_true * ops.log(y_pred)
        if self.gamma:
            term = term * ops.power(1.0 - y_pred, self.gamma)
        if isinstance(self.alpha, tuple):
            if len(self.alpha) != y_pred.shape[-1]:
                raise ValueError(f"alpha has {len(self.alpha)} weights for {y_pred.shape[-1]} channels")
            term = term * ops.convert_to_tensor(self.alpha, dtype=y_pred.dtype)
        elif self.alpha is not None:
            term = term * self.alpha
        return _per_image_mean(ops.sum(term, axis=-1))

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma, "alpha": self.alpha,
                "class_indexes": self.class_indexes, "epsilon": self.epsilon}


@_register
class WeightedDiceLoss(DiceLoss):
    """Soft Dice over all channels with the background channel down-weighted: 1 - Σ_c w_c D_c / Σ_c w_c.

    D_c = (2 Σ Y S + s) / (Σ Y + Σ S + s), pooled over batch and pixels as :class:`DiceLoss`;
    w = ``background_weight`` for channel 0 (DESIGN.md's recipe: 0.1) and 1 for every other channel
    in ``class_indexes`` (None: all). A small background term keeps "where there is no lesion" in
    the loss without letting the huge background class dominate it; ``background_weight=0`` gives
    :class:`DiceLoss` over the lesion channels. Perfect prediction: 0. Returns one value per batch.
    """

    def __init__(self, background_weight: float = 0.1, smooth: float = 1.0, class_indexes=None,
                 name: str = "weighted_dice_loss", **kwargs):
        super().__init__(smooth=smooth, class_indexes=class_indexes, name=name, **kwargs)
        if float(background_weight) < 0:
            raise ValueError(f"background_weight must be >= 0, got {background_weight}")
        self.background_weight = float(background_weight)

    def _weights(self, n_channels: int) -> list[float]:
        channels = self.class_indexes if self.class_indexes is not None else range(n_channels)
        w = [self.background_weight if c == 0 else 1.0 for c in channels]
        if sum(w) <= 0:
            raise ValueError("WeightedDiceLoss: every channel weight is 0 (background only, weight 0)")
        return w

    def call(self, y_true, y_pred):
        inter, t_sum, p_sum = _soft_overlap(y_true, y_pred, self.class_indexes)
        dice = (2.0 * inter + self.smooth) / (t_sum + p_sum + self.smooth)
        w = self._weights(ops.convert_to_tensor(y_pred).shape[-1])
        return 1.0 - ops.sum(dice * ops.convert_to_tensor(w, dtype=dice.dtype)) / sum(w)

    def get_config(self):
        return {**super().get_config(), "background_weight": self.background_weight}


# segmentation_models' DiceLoss(class_weights) + CategoricalFocalLoss() — the sum DESIGN.md measured
# on lesion crops — averages its focal term over the 5 channels too and scales it by alpha = 0.25:
# 0.25 / 5 = 0.05 of our per-pixel FocalLoss. (Its Dice term is 1 - mean_c w_c D_c, i.e. 4.1 / 5 of
# our WeightedDiceLoss plus a constant; Adam ignores the overall scale, not the ratio.)
DICE_FOCAL_WEIGHT = 0.05


@_register
class DiceFocalLoss(keras.losses.Loss):
    """Weighted Dice (background weight 0.1) + ``focal_weight`` x focal loss: the lesion-crop recipe.

    DESIGN.md ("Pretrained encoder weights offline") measured this sum on lesion-biased 128-px crops
    of 512-px images, where BCE alone settles on "all background" and Dice alone floods. The Dice
    term keeps the rare classes in view (and its background channel charges floods); the focal
    term gives every pixel a gradient of its own. The default ``focal_weight`` (0.05,
    :data:`DICE_FOCAL_WEIGHT`) is the ratio of the measured segmentation_models sum.
    Returns one value for the batch.
    """

    def __init__(self, background_weight: float = 0.1, gamma: float = 2.0, alpha=None,
                 focal_weight: float = DICE_FOCAL_WEIGHT, smooth: float = 1.0,
                 name: str = "dice_focal_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if float(focal_weight) < 0:
            raise ValueError(f"focal_weight must be >= 0, got {focal_weight}")
        self.focal_weight = float(focal_weight)
        self.dice = WeightedDiceLoss(background_weight=background_weight, smooth=smooth)
        self.focal = FocalLoss(gamma=gamma, alpha=alpha)

    def call(self, y_true, y_pred):
        return (self.dice.call(y_true, y_pred)
                + self.focal_weight * ops.mean(self.focal.call(y_true, y_pred)))

    def get_config(self):
        return {**super().get_config(), "background_weight": self.dice.background_weight,
                "gamma": self.focal.gamma, "alpha": self.focal.alpha,
                "focal_weight": self.focal_weight, "smooth": self.dice.smooth}


@_register
class CEDiceLoss(keras.losses.Loss):
    """Categorical cross-entropy (per pixel, averaged) + weighted Dice (background weight 0.1).

    The same Dice term as :class:`DiceFocalLoss` with the plain cross-entropy (focal with γ = 0)
    at weight 1, as :class:`BCEDiceLoss` adds Eq. 1; ``background_weight=0`` makes the Dice term
    lesion-only like there. Returns one value for the batch.
    """

    def __init__(self, background_weight: float = 0.1, smooth: float = 1.0,
                 name: str = "ce_dice_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.dice = WeightedDiceLoss(background_weight=background_weight, smooth=smooth)
        self.ce = FocalLoss(gamma=0.0)

    def call(self, y_true, y_pred):
        return ops.mean(self.ce.call(y_true, y_pred)) + self.dice.call(y_true, y_pred)

    def get_config(self):
        return {**super().get_config(), "background_weight": self.dice.background_weight,
                "smooth": self.dice.smooth}


# The one list of segmentation loss names (name -> class); CLIs and checks read it from here.
SEGMENTATION_LOSSES = {"bce": SegmentationBCE, "dice": DiceLoss,
                       "generalized_dice": GeneralizedDiceLoss, "bce_dice": BCEDiceLoss,
                       "focal": FocalLoss, "weighted_dice": WeightedDiceLoss,
                       "dice_focal": DiceFocalLoss, "ce_dice": CEDiceLoss}


def segmentation_loss(name: str = "bce", **kwargs) -> keras.losses.Loss:
    """One segmentation loss object by name, a key of :data:`SEGMENTATION_LOSSES` ("bce" is Eq. 1);
    ``kwargs`` go to its class."""
    try:
        cls = SEGMENTATION_LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown segmentation loss {name!r}; "
                         f"choose from {sorted(SEGMENTATION_LOSSES)}") from None
    return cls(**kwargs)


def multitask_loss(alpha: float = 1.0, seg_loss: str = "bce", sparse_grades: bool = False
                   ) -> tuple[dict, dict]:
    """Eq. 3, L_M = L_B + α L_C, the Keras way.

    Returns ``(loss, loss_weights)`` for ``model.compile(loss=loss, loss_weights=loss_weights)``
    on a model whose outputs are named ``"seg"`` and ``"grade"``::

        loss = {"seg": SegmentationBCE(), "grade": GradingCCE()}
        loss_weights = {"seg": 1.0, "grade": alpha}

    The paper found α = 1 best for both tasks. ``seg_loss`` swaps L_B for a Dice-type loss.
    """
    alpha = float(alpha)
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    loss = {SEG_OUTPUT: segmentation_loss(seg_loss), GRADE_OUTPUT: GradingCCE(sparse=sparse_grades)}
    return loss, {SEG_OUTPUT: 1.0, GRADE_OUTPUT: alpha}


@_register
class DiceCoefficient(keras.metrics.Metric):
    """Hard Dice of a lesion group during training, pooled over all batches of an epoch.

    Each pixel's class is the argmax of ``y_pred`` (and of ``y_true`` when it is one-hot; an
    integer class map of rank one less is used as is). Pixels whose class is in
    ``class_indexes`` form X (prediction) and Y (truth); the metric accumulates |X ∩ Y|, |X|
    and |Y| and reports 2|X ∩ Y| / (|X| + |Y|), 0 while both are empty. ``sample_weight`` is
    ignored. Defaults give red-lesion Dice; ``DiceCoefficient(LESION_GROUPS["yellow"], name="yellow_dice")``
    the yellow one. Matches :func:`mtunet.metrics.dice_pooled` on the same arrays.
    """

    def __init__(self, class_indexes=LESION_GROUPS["red"], name: str = "red_dice", **kwargs):
        super().__init__(name=name, **kwargs)
        self.class_indexes = tuple(int(c) for c in class_indexes)
        self.intersection = self.add_variable(shape=(), initializer="zeros",
                                              name="intersection", dtype="float32")
        self.pred_sum = self.add_variable(shape=(), initializer="zeros", name="pred_sum",
                                          dtype="float32")
        self.true_sum = self.add_variable(shape=(), initializer="zeros", name="true_sum",
                                          dtype="float32")

    def _in_group(self, class_map):
        hit = ops.zeros_like(class_map, dtype="bool")
        for c in self.class_indexes:
            hit = ops.logical_or(hit, ops.equal(class_map, c))
        return ops.cast(hit, "float32")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.convert_to_tensor(y_pred)
        y_true = ops.convert_to_tensor(y_true)
        pred_cls = ops.argmax(y_pred, axis=-1)
        if len(y_true.shape) == len(y_pred.shape):
            true_cls = ops.argmax(y_true, axis=-1)
        else:
            true_cls = ops.cast(y_true, pred_cls.dtype)
        x, y = self._in_group(pred_cls), self._in_group(true_cls)
        self.intersection.assign_add(ops.sum(x * y))
        self.pred_sum.assign_add(ops.sum(x))
        self.true_sum.assign_add(ops.sum(y))

    def result(self):
        denom = self.pred_sum + self.true_sum
        return ops.where(denom > 0, 2.0 * self.intersection / ops.maximum(denom, 1.0), 0.0)

    def reset_state(self):
        for v in (self.intersection, self.pred_sum, self.true_sum):
            v.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "class_indexes": self.class_indexes}


def lesion_dice_metrics() -> list[DiceCoefficient]:
    """Red (MA, HE) and yellow (EX, SE) training-time Dice, for ``metrics={"seg": ...}``."""
    return [DiceCoefficient(classes, name=f"{group}_dice") for group, classes in LESION_GROUPS.items()]
