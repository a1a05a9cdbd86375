"""The study's networks: MTUnet (variants A, B, C), segmentation and grading baselines.

Every model takes raw RGB pixels (0..255, float32), scales them itself (``layers.InputScaling``)
and returns a dict keyed by task: ``{"seg": (B, H, W, C) softmax}``, ``{"grade": (B, 5) softmax}``
or both. Each carries ``model.encoder_init`` (how its encoder was initialised).
"""
from .grading import GRADERS, build_grader, build_resnext101_imagenet_classifier
from .layers import InputScaling, StopGradient
from .mtunet import VariantB, build_mtunet, build_variant_a, build_variant_b
from .registry import MODELS, ModelSpec, build_model
from .segmentation import build_deeplabv3, build_fpn, build_linknet, build_unet
from .weights import load_encoder_weights

__all__ = [
    "GRADERS", "MODELS", "InputScaling", "ModelSpec", "StopGradient", "VariantB",
    "build_deeplabv3", "build_fpn", "build_grader", "build_linknet", "build_model",
    "build_mtunet", "build_resnext101_imagenet_classifier", "build_unet", "build_variant_a",
    "build_variant_b", "load_encoder_weights",
]
