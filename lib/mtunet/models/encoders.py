"""Encoders (backbones) as data: which keras.applications model, its input scaling, its skip layers.

A new encoder is one row of ``ENCODERS``, not a new builder. Skip layers are listed coarse to fine
(1/16, 1/8, 1/4, 1/2 and, for VGG16, 1/1 of the input), **by layer name**, never by index.

Two encoders need a word:

- **Inception-v3** leaves most of its layers unnamed, so Keras numbers them per process
  (``activation_4`` in a fresh session is ``activation_98`` in the next model). Its two finest skips
  are therefore written ``"last@4"`` / ``"last@2"``: *the last layer whose output is about 1/4
  (1/2) of the input size* — in a fresh session exactly ``activation_4`` / ``activation_2``, the
  layers segmentation_models picks by index (16, 9). Inception-v3 also uses 'valid' padding, so its
  maps are 125, 60, 29, 14, 6 pixels for a 256-pixel input; decoders resize the upsampled map to
  the skip's size before concatenating (``layers.match_size``) and to the input size at the end.
- **ResNet-50 / DenseNet-121 / Inception-v3** have four skips; their fifth decoder stage upsamples
  to full size without one (as segmentation_models does).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import keras

from .layers import InputScaling


@dataclass(frozen=True)
class EncoderSpec:
    """One backbone: how to build it, what it expects, where a decoder taps it."""

    application: Callable[..., keras.Model]
    scaling: str                      # InputScaling mode its ImageNet weights expect
    imagenet_file: str                # file name in Keras' cache (~/.keras/models/)
    skips: tuple[str, ...] = ()       # coarse to fine; names, or "last@<reduction>"
    bottom: str | None = None         # deepest feature map the decoder starts from
    min_size: int = 32                # smallest input side keras.applications accepts
    multiple: int = 32                # input sides must be a multiple of this (decoders)


ENCODERS: dict[str, EncoderSpec] = {
    "vgg16": EncoderSpec(
        keras.applications.VGG16, "caffe", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        skips=("block5_conv3", "block4_conv3", "block3_conv3", "block2_conv2", "block1_conv2"),
        bottom="block5_pool"),
    "resnet50": EncoderSpec(
        keras.applications.ResNet50, "caffe", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        skips=("conv4_block6_out", "conv3_block4_out", "conv2_block3_out", "conv1_relu"),
        bottom="conv5_block3_out"),
    "inception_v3": EncoderSpec(
        keras.applications.InceptionV3, "tf",
        "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
        skips=("mixed7", "mixed2", "last@4", "last@2"), bottom="mixed10", min_size=75,
        multiple=1),
    "densenet121": EncoderSpec(
        keras.applications.DenseNet121, "torch",
        "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
        skips=("pool4_conv", "pool3_conv", "pool2_conv", "conv1_relu"), bottom="relu"),
    # Grading backbones (no decoder: no skips).
    "densenet201": EncoderSpec(
        keras.applications.DenseNet201, "torch",
        "densenet201_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "nasnet_large": EncoderSpec(
        keras.applications.NASNetLarge, "tf", "nasnet_large_no_top.h5"),
    "nasnet_mobile": EncoderSpec(
        keras.applications.NASNetMobile, "tf", "nasnet_mobile_no_top.h5"),
    "inception_resnet_v2": EncoderSpec(
        keras.applications.InceptionResNetV2, "tf",
        "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5", min_size=75,
        multiple=1),
}

SEGMENTATION_ENCODERS = tuple(name for name, spec in ENCODERS.items() if spec.skips)


@dataclass
class Encoder:
    """A built backbone inside a functional graph."""

    name: str
    inputs: keras.KerasTensor          # the raw-pixel Input
    bottom: keras.KerasTensor          # deepest feature map
    skips: list                        # coarse to fine
    layer_names: list[str]             # the backbone's own layers, in order (for weight loading)
    model: keras.Model                 # the keras.applications model (shares layers and tensors)


def check_encoder(name: str, segmentation: bool = False) -> EncoderSpec:
    """The spec of ``name``, or a ValueError listing the choices."""
    choices = SEGMENTATION_ENCODERS if segmentation else tuple(ENCODERS)
    if name not in choices:
        raise ValueError(f"unknown encoder {name!r}; choose one of {choices}")
    return ENCODERS[name]


def build_encoder(name: str, inputs: keras.KerasTensor, extra=None,
                  pooling: str | None = None) -> Encoder:
    """Scale ``inputs`` for ``name`` and run them through its keras.applications backbone.

    The backbone is built with ``weights=None`` (``weights.load_encoder_weights`` fills it).
    ``extra``: an optional tensor concatenated to the scaled image (variant B's predicted mask).
    """
    spec = check_encoder(name)
    x = InputScaling(spec.scaling, name="input_scaling")(inputs)
    if extra is not None:
        x = keras.layers.Concatenate(name="image_and_mask")([x, extra])
    app = spec.application(include_top=False, weights=None, input_tensor=x, pooling=pooling)
    own = [layer.name for layer in app.layers
           if not isinstance(layer, (keras.layers.InputLayer, InputScaling))
           and layer.name != "image_and_mask"]
    skips = [resolve_layer(app, s, inputs.shape[1]).output for s in spec.skips]
    bottom = app.get_layer(spec.bottom).output if spec.bottom else app.output
    return Encoder(name, inputs, bottom, skips, own, app)


def resolve_layer(model: keras.Model, ref: str, input_size: int | None):
    """A layer by name, or by ``"last@<k>"``: the last layer whose output is ~1/k of the input."""
    if not ref.startswith("last@"):
        return model.get_layer(ref)
    if input_size is None:
        raise ValueError(f"skip {ref!r} needs a static input size")
    level = round(math.log2(int(ref[5:])))
    found = None
    for layer in model.layers:
        shape = getattr(layer, "output", None)
        shape = getattr(shape, "shape", None)
        if shape is None or len(shape) != 4 or not shape[1]:
            continue
        if round(math.log2(input_size / shape[1])) == level:
            found = layer
    if found is None:
        raise ValueError(f"no layer at 1/{ref[5:]} of the input in {model.name}")
    return found
