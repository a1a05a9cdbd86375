"""The study's networks: MTUnet (variants A, B, C), segmentation and grading baselines.

Every model takes raw RGB pixels (0..255, float32), scales them itself (``layers.InputScaling``)
and returns a dict keyed by task: ``{"seg": (B, H, W, C) softmax}``, ``{"grade": (B, 5) softmax}``
or both. Each carries ``model.encoder_init`` (how its encoder was initialised).

``mtunet.models.registry`` (the table of models, their labels and their place in the paper) is
imported without Keras; the builders below import Keras on first use.
"""
from __future__ import annotations

import importlib

from .registry import (MODELS as MODELS, ModelSpec as ModelSpec,  # re-exported
                       build_model as build_model, label as label)

_LAZY = {
    "GRADERS": "grading", "build_grader": "grading", "build_resnext101_imagenet_classifier": "grading",
    "InputScaling": "layers", "StopGradient": "layers",
    "VariantB": "mtunet", "build_mtunet": "mtunet", "build_variant_a": "mtunet",
    "build_variant_b": "mtunet",
    "build_deeplabv3": "segmentation", "build_fpn": "segmentation", "build_linknet": "segmentation",
    "build_unet": "segmentation",
    "load_encoder_weights": "weights",
}

__all__ = sorted([*_LAZY, "MODELS", "ModelSpec", "build_model", "label"])


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
