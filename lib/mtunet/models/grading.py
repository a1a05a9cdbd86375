"""Grading baselines of Tables 3 and 4: NASNet, DenseNet-201, ResNeXt-101, InceptionResNetV2.

keras.applications provides all but ResNeXt-101, each built with ``include_top=False`` and our
head: global average pooling (as the ImageNet classifiers) + Dense(n_grades, softmax) named
``grade``. The paper does not say which NASNet; both are offered (``nasnet_large`` is the one of
its reference, Zoph et al. 2018).

ResNeXt-101 (32x4d) (Xie et al. 2017) is not in keras.applications, so it is built here: a 7x7/2
stem and 3x3/2 max-pool, then bottleneck blocks [3, 4, 23, 3] with cardinality 32 and group width
4 (so 128, 256, 512, 1024 channels in the grouped 3x3 convolutions; outputs 256 ... 2048), the
stride on the grouped 3x3 (torchvision's layout), a 1x1 projection shortcut on each stage's first
block, batch norm after every convolution (the grouped 3x3 is ``layers.SplitGroupConv2D``: the
same convolution, run as 32 plain ones on TensorFlow, whose CPU grouped kernel is very slow). With the 1000-class head it has 44,177,704 parameters
(published: 44.2 M). Input scaling "torch" (the ImageNet ResNeXt weights of torchvision / timm use
it); no pretrained weights are loadable for it.
"""
from __future__ import annotations

import keras

from .encoders import ENCODERS, build_encoder
from .layers import InputScaling, SplitGroupConv2D, grade_head
from .weights import check_encoder_weights, load_encoder_weights

APPLICATION_GRADERS = ("nasnet_large", "nasnet_mobile", "densenet201", "inception_resnet_v2")
GRADERS = APPLICATION_GRADERS + ("resnext101",)

RESNEXT101_BLOCKS = (3, 4, 23, 3)
RESNEXT_CARDINALITY = 32
RESNEXT_GROUP_WIDTH = 4
BN_EPSILON = 1.001e-5      # keras.applications' ResNet value


def build_grader(name: str, input_shape=(512, 512, 3), n_grades: int = 5,
                 weights=None) -> keras.Model:
    """A grading baseline: image -> ``{"grade": (B, n_grades) softmax}``.

    Args:
        name: one of ``GRADERS``.
        input_shape: ``(H, W, 3)`` raw RGB pixels 0..255 (>= 32 px; >= 75 for
            inception_resnet_v2).
        n_grades: number of DR grades.
        weights: encoder initialisation as in ``weights.load_encoder_weights`` (``"imagenet"`` is
            a ``UserError`` for resnext101: none can be loaded offline).
    """
    if name not in GRADERS:
        raise ValueError(f"unknown grader {name!r}; choose one of {GRADERS}")
    min_size = ENCODERS[name].min_size if name in ENCODERS else 32
    if len(input_shape) != 3 or input_shape[2] != 3 or min(input_shape[:2]) < min_size:
        raise ValueError(f"{name}: input_shape must be (H, W, 3) with sides >= {min_size}, "
                         f"got {input_shape}")
    if n_grades < 2:
        raise ValueError(f"n_grades must be >= 2, got {n_grades}")
    check_encoder_weights(weights)
    inputs = keras.Input(tuple(input_shape), name="image")
    if name == "resnext101":
        features = resnext_features(InputScaling("torch", name="input_scaling")(inputs))
        layer_names, encoder = [], None
    else:
        enc = build_encoder(name, inputs)
        features, layer_names, encoder = enc.bottom, enc.layer_names, name
    grade = grade_head(features, n_grades, pooling="avg")
    model = keras.Model(inputs, {"grade": grade}, name=name)
    load_encoder_weights(model, encoder, weights, layer_names, input_shape)
    return model


def build_resnext101_imagenet_classifier(input_shape=(224, 224, 3), classes: int = 1000):
    """ResNeXt-101 (32x4d) with the 1000-class ImageNet head, to check the parameter count."""
    inputs = keras.Input(tuple(input_shape), name="image")
    x = resnext_features(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = keras.layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, x, name="resnext101_32x4d")


def resnext_features(x, blocks=RESNEXT101_BLOCKS, cardinality=RESNEXT_CARDINALITY,
                     group_width=RESNEXT_GROUP_WIDTH):
    """ResNeXt trunk: ``x`` (scaled pixels) -> the 2048-channel 1/32 map."""
    x = keras.layers.ZeroPadding2D(3, name="conv1_pad")(x)
    x = keras.layers.Conv2D(64, 7, strides=2, use_bias=False, name="conv1_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name="conv1_bn")(x)
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    for stage, n_blocks in enumerate(blocks):
        width = cardinality * group_width * 2 ** stage
        for block in range(n_blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            x = _resnext_block(x, width, width * 2, stride, cardinality,
                               name=f"conv{stage + 2}_block{block + 1}")
    return x


def _resnext_block(x, width, out_filters, stride, groups, name):
    """Bottleneck: 1x1 (width) -> grouped 3x3 (width, stride) -> 1x1 (out) + shortcut, ReLU."""
    if x.shape[-1] != out_filters or stride != 1:
        shortcut = keras.layers.Conv2D(out_filters, 1, strides=stride, use_bias=False,
                                       name=f"{name}_0_conv")(x)
        shortcut = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_0_bn")(shortcut)
    else:
        shortcut = x
    y = keras.layers.Conv2D(width, 1, use_bias=False, name=f"{name}_1_conv")(x)
    y = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_1_bn")(y)
    y = keras.layers.Activation("relu", name=f"{name}_1_relu")(y)
    y = keras.layers.ZeroPadding2D(1, name=f"{name}_2_pad")(y)
    y = SplitGroupConv2D(width, 3, strides=stride, groups=groups, use_bias=False,
                         name=f"{name}_2_conv")(y)
    y = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_2_bn")(y)
    y = keras.layers.Activation("relu", name=f"{name}_2_relu")(y)
    y = keras.layers.Conv2D(out_filters, 1, use_bias=False, name=f"{name}_3_conv")(y)
    y = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_3_bn")(y)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.Activation("relu", name=f"{name}_out")(y)
