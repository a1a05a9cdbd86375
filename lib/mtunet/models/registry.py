"""Every model of the study by name: what it does, what the paper calls it, how small it can be.

``build_model(name, input_shape)`` is the one entry point the notebooks and ``train.py`` need;
``MODELS[name]`` says which outputs it has (``tasks``) and the name for the paper's tables.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import keras

from . import grading, mtunet, segmentation


@dataclass(frozen=True)
class ModelSpec:
    """One model: its builder and its place in the paper."""

    build: Callable[..., keras.Model]   # (input_shape, n_seg_classes, n_grades, encoder_weights)
    tasks: tuple[str, ...]              # output keys: ("seg",), ("grade",) or ("seg", "grade")
    paper_name: str                     # as the paper's tables say it
    min_input: int = 32                 # smallest input side
    multiple: int = 32                  # input sides must be multiples of this
    table: str = ""                     # where the paper reports it


def _mtunet(encoder):
    def build(input_shape, n_seg_classes, n_grades, encoder_weights):
        return mtunet.build_mtunet(input_shape, n_seg_classes, n_grades, encoder, encoder_weights)
    return build


def _segmenter(builder):
    def build(input_shape, n_seg_classes, n_grades, encoder_weights):
        return builder(input_shape, n_seg_classes, encoder_weights=encoder_weights)
    return build


def _grader(name):
    def build(input_shape, n_seg_classes, n_grades, encoder_weights):
        return grading.build_grader(name, input_shape, n_grades, encoder_weights)
    return build


def _variant_b(input_shape, n_seg_classes, n_grades, encoder_weights):
    return mtunet.build_variant_b(input_shape, n_seg_classes, n_grades, encoder_weights).combined


SEG, GRADE, BOTH = ("seg",), ("grade",), ("seg", "grade")

MODELS: dict[str, ModelSpec] = {
    "mtunet": ModelSpec(_mtunet("vgg16"), BOTH, "MTUNet", table="Tables 1-4 (Table 1: Variant C)"),
    "variant_a": ModelSpec(lambda s, c, g, w: mtunet.build_variant_a(s, c, g, w), BOTH,
                           "Variant A", multiple=16, min_input=16, table="Table 1"),
    "variant_b": ModelSpec(_variant_b, BOTH, "Variant B", table="Table 1"),
    "mtunet_resnet50": ModelSpec(_mtunet("resnet50"), BOTH, "ResNet", table="Fig. 6"),
    "mtunet_inception_v3": ModelSpec(_mtunet("inception_v3"), BOTH, "InceptionV3", min_input=75,
                                     multiple=1, table="Fig. 6"),
    "mtunet_densenet121": ModelSpec(_mtunet("densenet121"), BOTH, "DenseNet", table="Fig. 6"),
    "unet": ModelSpec(_segmenter(segmentation.build_unet), SEG, "UNet", table="Table 2"),
    "linknet": ModelSpec(_segmenter(segmentation.build_linknet), SEG, "LinkNet", table="Table 2"),
    "fpn": ModelSpec(_segmenter(segmentation.build_fpn), SEG, "Feature Pyramid", table="Table 2"),
    "deeplabv3": ModelSpec(_segmenter(segmentation.build_deeplabv3), SEG, "DeepLabv3",
                           table="Table 2"),
    "nasnet_large": ModelSpec(_grader("nasnet_large"), GRADE, "NASNet", table="Tables 3, 4"),
    "nasnet_mobile": ModelSpec(_grader("nasnet_mobile"), GRADE, "NASNet (mobile)",
                               table="Tables 3, 4 (smaller stand-in)"),
    "densenet201": ModelSpec(_grader("densenet201"), GRADE, "DenseNet-201", table="Tables 3, 4"),
    "resnext101": ModelSpec(_grader("resnext101"), GRADE, "ResNeXt-101", table="Tables 3, 4"),
    "inception_resnet_v2": ModelSpec(_grader("inception_resnet_v2"), GRADE, "InceptionResNetV2",
                                     min_input=75, multiple=1, table="Tables 3, 4"),
}


def build_model(name: str, input_shape=(512, 512, 3), n_seg_classes: int = 5, n_grades: int = 5,
                encoder_weights=None) -> keras.Model:
    """Build ``MODELS[name]``; its outputs are a dict keyed by ``MODELS[name].tasks``.

    ``"variant_b"`` gives the chained model (image -> seg and grade); for the paper's two-step
    training use ``build_variant_b`` directly.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {tuple(MODELS)}")
    spec = MODELS[name]
    if min(input_shape[:2]) < spec.min_input or any(s % spec.multiple for s in input_shape[:2]):
        raise ValueError(f"{name}: input sides must be >= {spec.min_input} and multiples of "
                         f"{spec.multiple}, got {tuple(input_shape)}")
    return spec.build(tuple(input_shape), n_seg_classes, n_grades, encoder_weights)
