"""Tile-by-tile prediction of whole images (mtunet.tiling)."""
from __future__ import annotations

import numpy as np
import pytest

from mtunet.tiling import blend_window, tile_origins, tiled_predictor


def test_tile_origins_cover_every_pixel_and_end_flush():
    assert tile_origins(512, 128, 0.5) == list(range(0, 385, 64))
    assert tile_origins(512, 128, 0.0) == [0, 128, 256, 384]
    assert tile_origins(300, 128, 0.5) == [0, 64, 128, 172]      # the last flush with the edge
    assert tile_origins(128, 128, 0.5) == [0]
    with pytest.raises(ValueError, match="tile"):
        tile_origins(100, 128, 0.5)
    with pytest.raises(ValueError, match="overlap"):
        tile_origins(512, 128, 1.0)


def test_blend_window_peaks_in_the_centre_and_never_vanishes():
    window = blend_window(128)
    assert window.shape == (128, 128) and window.dtype == np.float32
    assert window[63:65, 63:65].min() > 0.99 and window.min() >= 1e-3
    assert window[32, 32] < window[32, 64] < window[64, 64]
    np.testing.assert_allclose(window, window.T)


def _pixelwise(tiles: np.ndarray) -> np.ndarray:
    """A 'network' without context: softmax of a fixed linear map of each pixel's colour."""
    logits = tiles @ np.array([[0.01, -0.02, 0.0], [0.0, 0.03, -0.01], [0.02, 0.0, 0.01]], np.float32)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_tiles_of_a_context_free_predictor_give_its_whole_image_prediction():
    images = np.random.default_rng(0).uniform(0, 255, (2, 200, 200, 3)).astype(np.float32)
    tiled = tiled_predictor(_pixelwise, 64, overlap=0.5, batch_size=5)(images)
    assert tiled.shape == (2, 200, 200, 3)
    np.testing.assert_allclose(tiled, _pixelwise(images), atol=1e-5)


def test_each_tile_sees_only_its_own_context():
    """A predictor of each tile's mean brightness: tiles of a half-dark image disagree, as a
    network with a global pooling would, and the blend keeps the left and right halves apart."""
    def tile_mean(tiles):
        mean = tiles.mean(axis=(1, 2, 3), keepdims=True) / 255.0
        return np.broadcast_to(np.concatenate([mean, 1 - mean], -1),
                               tiles.shape[:3] + (2,)).copy()

    image = np.zeros((1, 256, 256, 3), np.float32)
    image[:, :, 128:] = 255.0
    probs = tiled_predictor(tile_mean, 64, overlap=0.5)(image)
    assert probs[0, :, :32, 0].max() < 0.01 and probs[0, :, -32:, 0].min() > 0.99
    whole = tile_mean(image)
    assert np.allclose(whole[0, ..., 0], 0.5)
