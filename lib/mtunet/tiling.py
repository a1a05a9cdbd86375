"""Predicting a whole fundus image tile by tile, at the size a network was trained on.

A segmenter trained on 128-px crops and applied to a whole 512-px image sees a context it never
trained on: its deepest features cover 16 x 16 cells instead of 4 x 4, the zero padding of the
crop's border falls elsewhere, and a global pooling (DeepLabv3's image-level branch) averages a
whole fundus with its black surround instead of a lesion-centred crop. Predicting overlapping
tiles of the training size and blending them (each tile's probabilities weighted by a window that
falls off towards the tile's border, as in MONAI's ``sliding_window_inference``) gives every
pixel the context of training.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

PredictProbs = Callable[[np.ndarray], np.ndarray]


def tile_origins(size: int, tile: int, overlap: float) -> list[int]:
    """Top-left offsets along one side: tiles ``tile`` px apart by ``(1 - overlap) * tile``, the
    last one flush with the far edge, so every pixel is covered."""
    if not 0 < tile <= size:
        raise ValueError(f"tile {tile} px must lie in (0, {size}] (the image side)")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must lie in [0, 1), not {overlap}")
    stride = max(1, int(round(tile * (1.0 - overlap))))
    origins = list(range(0, size - tile + 1, stride))
    if origins[-1] != size - tile:
        origins.append(size - tile)
    return origins


def blend_window(tile: int, sigma_scale: float = 0.125) -> np.ndarray:
    """(tile, tile) float32 weights: a Gaussian centred on the tile (sigma = ``sigma_scale`` x
    tile, MONAI's default), floored so a pixel seen only near tile borders still gets a weight."""
    centre = (tile - 1) / 2.0
    axis = np.exp(-0.5 * ((np.arange(tile) - centre) / (sigma_scale * tile)) ** 2)
    window = np.outer(axis, axis)
    window = window / window.max()
    return np.maximum(window, 1e-3).astype(np.float32)


def tiled_predictor(predict_tiles: PredictProbs, tile: int, overlap: float = 0.5,
                    batch_size: int = 8) -> PredictProbs:
    """``predict_probs`` for whole images (N, S, S, 3) -> (N, S, S, C) from ``predict_tiles``,
    a predictor of (n, tile, tile, 3) tiles (e.g. :func:`mtunet.evaluate.seg_predictor` of the
    model at its training size): overlapping tiles, blended by :func:`blend_window`."""
    window = blend_window(tile)

    def predict(images: np.ndarray) -> np.ndarray:
        n, height, width = images.shape[:3]
        corners = [(y, x) for y in tile_origins(height, tile, overlap)
                   for x in tile_origins(width, tile, overlap)]
        jobs = [(i, y, x) for i in range(n) for y, x in corners]
        total = weight = None
        for start in range(0, len(jobs), batch_size):
            chunk = jobs[start:start + batch_size]
            probs = np.asarray(predict_tiles(np.stack(
                [images[i, y:y + tile, x:x + tile] for i, y, x in chunk])), np.float32)
            if total is None:
                total = np.zeros((n, height, width, probs.shape[-1]), np.float32)
                weight = np.zeros((n, height, width, 1), np.float32)
            for (i, y, x), prob in zip(chunk, probs):
                total[i, y:y + tile, x:x + tile] += prob * window[..., None]
                weight[i, y:y + tile, x:x + tile, 0] += window
        return total / weight

    return predict
