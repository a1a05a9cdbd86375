"""Every model of the study by name: what it does, what the tables call it, how small it can be.

``build_model(name, input_shape)`` is the one entry point the study needs; ``MODELS[name]`` says
which outputs it has (``tasks``), its display label (the one place a model's name is spelled for
tables and figures: :func:`label`), and which of the paper's rows it is compared with. This table
imports no Keras: report code reads labels without loading a backend.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class ModelSpec:
    """One model: how to build it and its place in the paper."""

    build: Callable                     # (input_shape, n_seg_classes, n_grades, encoder_weights)
    tasks: tuple[str, ...]              # output keys: ("seg",), ("grade",) or ("seg", "grade")
    label: str                          # as tables and figures name it
    min_input: int = 32                 # smallest input side
    multiple: int = 32                  # input sides must be multiples of this
    table: str = ""                     # where the paper reports it
    variant: str = ""                   # Table 1's letter (A, B, C)
    encoder: str = ""                   # Fig. 6's encoder name
    stands_in_for: str = ""             # the paper's model this one replaces (a smaller stand-in)

    @property
    def paper_model(self) -> str:
        """The registry name of the paper's row this model is compared with."""
        return self.stands_in_for or _name_of(self)


# Builders import their module (and Keras) only when called.
def _mtunet(encoder):
    def build(input_shape, n_seg_classes, n_grades, encoder_weights):
        from .mtunet import build_mtunet
        return build_mtunet(input_shape, n_seg_classes, n_grades, encoder, encoder_weights)
    return build


def _variant_a(input_shape, n_seg_classes, n_grades, encoder_weights):
    from .mtunet import build_variant_a
    return build_variant_a(input_shape, n_seg_classes, n_grades, encoder_weights)


def _variant_b(input_shape, n_seg_classes, n_grades, encoder_weights):
    from .mtunet import build_variant_b
    return build_variant_b(input_shape, n_seg_classes, n_grades, encoder_weights).combined


def _segmenter(builder_name):
    def build(input_shape, n_seg_classes, n_grades, encoder_weights):
        from . import segmentation
        return getattr(segmentation, builder_name)(input_shape, n_seg_classes,
                                                   encoder_weights=encoder_weights)
    return build


def _grader(name):
    def build(input_shape, n_seg_classes, n_grades, encoder_weights):
        from .grading import build_grader
        return build_grader(name, input_shape, n_grades, encoder_weights)
    return build


SEG, GRADE, BOTH = ("seg",), ("grade",), ("seg", "grade")

MODELS: dict[str, ModelSpec] = {
    "mtunet": ModelSpec(_mtunet("vgg16"), BOTH, "MTUnet", variant="C",
                        encoder="VGG16", table="Tables 1-4 (Table 1: Variant C)"),
    "variant_a": ModelSpec(_variant_a, BOTH, "Variant A", variant="A",
                           multiple=16, min_input=16, table="Table 1"),
    "variant_b": ModelSpec(_variant_b, BOTH, "Variant B", variant="B",
                           table="Table 1"),
    "mtunet_resnet50": ModelSpec(_mtunet("resnet50"), BOTH, "MTUnet (ResNet50)",
                                 encoder="ResNet50", table="Fig. 6"),
    "mtunet_inception_v3": ModelSpec(_mtunet("inception_v3"), BOTH,
                                     "MTUnet (InceptionV3)", encoder="InceptionV3", min_input=75,
                                     multiple=1, table="Fig. 6"),
    "mtunet_densenet121": ModelSpec(_mtunet("densenet121"), BOTH,
                                    "MTUnet (DenseNet121)", encoder="DenseNet121", table="Fig. 6"),
    "unet": ModelSpec(_segmenter("build_unet"), SEG, "UNet", table="Table 2"),
    "linknet": ModelSpec(_segmenter("build_linknet"), SEG, "LinkNet", table="Table 2"),
    "fpn": ModelSpec(_segmenter("build_fpn"), SEG, "Feature Pyramid", table="Table 2"),
    "deeplabv3": ModelSpec(_segmenter("build_deeplabv3"), SEG, "DeepLabv3", table="Table 2"),
    "nasnet_large": ModelSpec(_grader("nasnet_large"), GRADE, "NASNet", table="Tables 3, 4"),
    "nasnet_mobile": ModelSpec(_grader("nasnet_mobile"), GRADE, "NASNet (mobile)",
                               table="Tables 3, 4 (smaller stand-in)", stands_in_for="nasnet_large"),
    "densenet201": ModelSpec(_grader("densenet201"), GRADE, "DenseNet-201",
                             table="Tables 3, 4"),
    "resnext101": ModelSpec(_grader("resnext101"), GRADE, "ResNeXt-101",
                            table="Tables 3, 4"),
    "inception_resnet_v2": ModelSpec(_grader("inception_resnet_v2"), GRADE,
                                     "InceptionResNetV2", min_input=75, multiple=1,
                                     table="Tables 3, 4"),
}


def _name_of(spec: ModelSpec) -> str:
    return next(name for name, s in MODELS.items() if s is spec)


def label(name: str, table: str = "") -> str:
    """A model's display name; Table 1 says "Variant C" for MTUnet, Fig. 6 names the encoder."""
    spec = MODELS[name]
    if table == "table1" and spec.variant:
        return f"Variant {spec.variant}"
    if table == "fig6" and spec.encoder:
        return spec.encoder
    return spec.label


def build_model(name: str, input_shape=(512, 512, 3), n_seg_classes: int = 5, n_grades: int = 5,
                encoder_weights=None):
    """Build ``MODELS[name]`` (a keras.Model); its outputs are a dict keyed by its ``tasks``.

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
