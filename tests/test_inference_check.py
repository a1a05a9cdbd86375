"""The flood check of `diagnose --inference-check` (mtunet.study.inference_check)."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from mtunet.data import read_segmentation
from mtunet.study.inference_check import COLUMNS, _overlap, inference_check


def test_overlap_gives_area_ratio_and_dice():
    truth = np.zeros((1, 4, 4), int)
    truth[0, :2, :2] = 2                      # 4 haemorrhage pixels
    pred = np.zeros_like(truth)
    pred[0, :2, :] = 1                        # 8 microaneurysm pixels: red, 4 of them right
    area, dice = _overlap(pred, truth, (1, 2))
    assert area == pytest.approx(2.0) and dice == pytest.approx(2 * 4 / 12)
    assert np.isnan(_overlap(pred, truth, (3, 4))[0])


def _batch_norm_net(size: int) -> keras.Model:
    """A per-pixel segmenter whose only batch norm has moving statistics far from any batch's:
    in inference mode it paints every pixel yellow, with batch statistics nearly none."""
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(5, 1, kernel_initializer="zeros",
                            bias_initializer=keras.initializers.Constant([1.0, 0, 0, 0, 0]))(inputs)
    norm = keras.layers.BatchNormalization(center=False, scale=False)
    x = norm(x)
    net = keras.Model(inputs, {"seg": keras.layers.Softmax()(x)})
    norm.moving_mean.assign(np.array([5.0, 0, 0, -5.0, 0], np.float32))
    norm.moving_variance.assign(np.ones(5, np.float32))
    return net


def test_moving_statistics_flood_is_told_from_the_batch_statistics(synthetic_root):
    records = [r for r in read_segmentation(synthetic_root / "IDRiD") if r.has_masks][:2]
    table = inference_check(_batch_norm_net(32), None, records, work_size=64)
    assert list(table.columns) == COLUMNS and len(table) == 4
    moving = table[table.batch_norm == "moving"]
    batch = table[table.batch_norm == "batch"]
    assert (moving.yellow_area_ratio > 5).all()                 # every pixel yellow: a flood
    assert (batch.yellow_area_ratio < 0.01).all()               # per-batch statistics: background
    # a per-pixel network has no context: whole image and tiles agree in each mode
    for part in (moving, batch):
        np.testing.assert_allclose(part.yellow_area_ratio.iloc[0], part.yellow_area_ratio.iloc[1])
