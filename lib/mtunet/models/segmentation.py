"""Segmentation baselines of Table 2: UNet, LinkNet, Feature Pyramid Network, DeepLabv3.

UNet, LinkNet and FPN follow segmentation-models 1.0.1 (qubvel) with its defaults, in pure Keras 3:
the same skip layers (the first four of ``encoders.ENCODERS[...].skips``), the same blocks, filter
counts, initialisers and layer names (``center_block1``, ``decoder_stage0a``, ``fpn_stage_p5_conv``
...), so a VGG16 model has exactly that library's parameter count (checked by
``tests/test_models_reference.py``). Differences, all outside the weights:

- the first layer scales raw pixels (``InputScaling``); segmentation_models leaves that to the
  caller's ``preprocess_input``;
- the last activation layer is named ``seg`` (there: ``softmax``) and the output is a dict;
- Inception-v3's 'valid' padding: upsampled maps are resized to their skip (segmentation_models
  ships its own 'same'-padded Inception instead).

DeepLabv3 (Chen et al. 2017; segmentation_models has none): ResNet-50 up to ``conv4_block6_out``
(output stride 16), ASPP with a 1x1 branch, 3x3 branches at rates 6, 12, 18 and image pooling
(256 filters each, batch norm), a 1x1 projection and a 3x3 convolution (256), a 1x1 classifier
and a x16 bilinear upsampling.
"""
from __future__ import annotations

import keras

from .encoders import build_encoder, check_encoder
from .layers import conv_bn_relu, match_size
from .mtunet import _check_common
from .weights import check_encoder_weights, load_encoder_weights

UNET_DECODER_FILTERS = (256, 128, 64, 32, 16)
LINKNET_LAST_FILTERS = 16
FPN_PYRAMID_FILTERS = 256
FPN_SEGMENTATION_FILTERS = 128
ASPP_FILTERS = 256
ASPP_RATES = (6, 12, 18)
N_SKIPS = 4   # segmentation_models' get_feature_layers(n=4)


def build_unet(input_shape=(512, 512, 3), n_classes: int = 5, encoder: str = "vgg16",
               encoder_weights=None) -> keras.Model:
    """UNet as segmentation_models' ``Unet(encoder, classes=n_classes, activation='softmax')``.

    Decoder: for a VGG encoder (whose last layer is a max-pool) a centre block of two 3x3x512
    conv-BN-ReLU; then five stages of UpSampling2D(2), concatenate skip, two 3x3 conv-BN-ReLU with
    256, 128, 64, 32, 16 filters; a 3x3 convolution to ``n_classes`` and a softmax named ``seg``.
    Returns image -> ``{"seg": (B, H, W, n_classes)}`` with ``model.encoder_init``.
    """
    return _build("unet", _assemble_unet, input_shape, n_classes, encoder, encoder_weights)


def build_linknet(input_shape=(512, 512, 3), n_classes: int = 5, encoder: str = "vgg16",
                  encoder_weights=None) -> keras.Model:
    """LinkNet as segmentation_models' ``Linknet`` (additive skips).

    Each of five stages: 1x1 conv-BN-ReLU to a quarter of its input channels, UpSampling2D(2),
    3x3 conv-BN-ReLU (same width), 1x1 conv-BN-ReLU to the skip's channels (16 in the last
    stage), plus the skip. Centre block and head as ``build_unet``.
    """
    return _build("linknet", _assemble_linknet, input_shape, n_classes, encoder, encoder_weights)


def build_fpn(input_shape=(512, 512, 3), n_classes: int = 5, encoder: str = "vgg16",
              encoder_weights=None) -> keras.Model:
    """Feature Pyramid Network as segmentation_models' ``FPN`` (concat aggregation, no dropout).

    Pyramid P5..P2 (256 filters, 1x1 lateral convs, nearest x2 upsampling, add); two 3x3
    conv-BN-ReLU (128) per level; upsampled to P2's size and concatenated; 3x3 conv-BN-ReLU (128),
    bilinear x2, 3x3 convolution to ``n_classes``, softmax ``seg``.
    """
    return _build("fpn", _assemble_fpn, input_shape, n_classes, encoder, encoder_weights)


def build_deeplabv3(input_shape=(512, 512, 3), n_classes: int = 5, encoder: str = "resnet50",
                    encoder_weights=None) -> keras.Model:
    """DeepLabv3 (ASPP on ResNet-50's ``conv4_block6_out``, output stride 16, bilinear x16).

    Only ``encoder="resnet50"`` (the paper's choice of DeepLabv3 has no other backbone stated).
    """
    if encoder != "resnet50":
        raise ValueError(f"build_deeplabv3 supports encoder='resnet50' only, got {encoder!r}")
    return _build("deeplabv3", _assemble_deeplabv3, input_shape, n_classes, encoder,
                  encoder_weights)


def _build(name, assemble, input_shape, n_classes, encoder, encoder_weights):
    spec = check_encoder(encoder, segmentation=True)
    _check_common(input_shape, n_classes, None, spec.min_size, spec.multiple)
    check_encoder_weights(encoder_weights)
    inputs = keras.Input(tuple(input_shape), name="image")
    enc = build_encoder(encoder, inputs)
    seg = assemble(enc, n_classes)
    seg = match_size(seg, tuple(input_shape[:2]), name="resize_to_input")
    seg = keras.layers.Activation("softmax", name="seg")(seg)
    model_name = name if encoder == "vgg16" else f"{name}_{encoder}"
    model = keras.Model(inputs, {"seg": seg}, name=model_name)
    load_encoder_weights(model, encoder, encoder_weights, enc.layer_names, input_shape)
    return model


def _center(enc, x):
    """segmentation_models adds two 3x3x512 blocks when the encoder ends with a max-pool (VGG)."""
    last = enc.model.get_layer(enc.model.layers[-1].name)
    if isinstance(last, keras.layers.MaxPooling2D) and x is last.output:
        x = conv_bn_relu(512, "center_block1")(x)
        x = conv_bn_relu(512, "center_block2")(x)
    return x


def _head(x, n_classes, name="final_conv"):
    return keras.layers.Conv2D(n_classes, 3, padding="same", kernel_initializer="glorot_uniform",
                               name=name)(x)


def _assemble_unet(enc, n_classes):
    x = _center(enc, enc.bottom)
    skips = enc.skips[:N_SKIPS]
    for stage, filters in enumerate(UNET_DECODER_FILTERS):
        x = keras.layers.UpSampling2D(2, name=f"decoder_stage{stage}_upsampling")(x)
        if stage < len(skips):
            x = match_size(x, skips[stage], name=f"decoder_stage{stage}_resize")
            x = keras.layers.Concatenate(name=f"decoder_stage{stage}_concat")([x, skips[stage]])
        x = conv_bn_relu(filters, f"decoder_stage{stage}a")(x)
        x = conv_bn_relu(filters, f"decoder_stage{stage}b")(x)
    return _head(x, n_classes)


def _assemble_linknet(enc, n_classes):
    x = _center(enc, enc.bottom)
    skips = enc.skips[:N_SKIPS]
    for stage in range(5):
        skip = skips[stage] if stage < len(skips) else None
        width = x.shape[-1] // 4
        out = skip.shape[-1] if skip is not None else LINKNET_LAST_FILTERS
        x = conv_bn_relu(width, f"decoder_stage{stage}a", kernel_size=1)(x)
        x = keras.layers.UpSampling2D(2, name=f"decoder_stage{stage}_upsampling")(x)
        x = conv_bn_relu(width, f"decoder_stage{stage}b")(x)
        x = conv_bn_relu(out, f"decoder_stage{stage}c", kernel_size=1)(x)
        if skip is not None:
            x = match_size(x, skip, name=f"decoder_stage{stage}_resize")
            x = keras.layers.Add(name=f"decoder_stage{stage}_add")([x, skip])
    return _head(x, n_classes)


def _assemble_fpn(enc, n_classes):
    skips = enc.skips[:N_SKIPS]
    x, pyramid = enc.bottom, []
    for level, skip in zip((5, 4, 3, 2), skips):
        if x.shape[-1] != FPN_PYRAMID_FILTERS:
            x = keras.layers.Conv2D(FPN_PYRAMID_FILTERS, 1, kernel_initializer="he_uniform",
                                    name=f"fpn_stage_p{level}_pre_conv")(x)
        lateral = keras.layers.Conv2D(FPN_PYRAMID_FILTERS, 1, kernel_initializer="he_uniform",
                                      name=f"fpn_stage_p{level}_conv")(skip)
        x = keras.layers.UpSampling2D(2, name=f"fpn_stage_p{level}_upsampling")(x)
        x = match_size(x, lateral, name=f"fpn_stage_p{level}_resize")
        x = keras.layers.Add(name=f"fpn_stage_p{level}_add")([x, lateral])
        pyramid.append((level, x))
    finest = pyramid[-1][1]
    heads = []
    for level, p in pyramid:
        s = conv_bn_relu(FPN_SEGMENTATION_FILTERS, f"segm_stage{level}a")(p)
        s = conv_bn_relu(FPN_SEGMENTATION_FILTERS, f"segm_stage{level}b")(s)
        if level != 2:
            factor = 2 ** (level - 2)
            s = keras.layers.UpSampling2D(factor, interpolation="nearest",
                                          name=f"upsampling_stage{level}")(s)
            s = match_size(s, finest, name=f"upsampling_stage{level}_resize")
        heads.append(s)
    x = keras.layers.Concatenate(name="aggregation_concat")(heads)
    x = conv_bn_relu(FPN_SEGMENTATION_FILTERS, "final_stage")(x)
    x = keras.layers.UpSampling2D(2, interpolation="bilinear", name="final_upsampling")(x)
    return _head(x, n_classes, name="head_conv")


def _assemble_deeplabv3(enc, n_classes):
    x = enc.skips[0]                                   # conv4_block6_out, 1/16
    height, width = x.shape[1], x.shape[2]
    branches = [conv_bn_relu(ASPP_FILTERS, "aspp_1x1", kernel_size=1, initializer="he_normal")(x)]
    for rate in ASPP_RATES:
        branches.append(conv_bn_relu(ASPP_FILTERS, f"aspp_rate{rate}", dilation_rate=rate,
                                     initializer="he_normal")(x))
    pooled = keras.layers.GlobalAveragePooling2D(keepdims=True, name="aspp_image_pool")(x)
    pooled = conv_bn_relu(ASPP_FILTERS, "aspp_image_pool", kernel_size=1,
                          initializer="he_normal")(pooled)
    pooled = keras.layers.UpSampling2D((height, width), interpolation="bilinear",
                                       name="aspp_image_pool_upsampling")(pooled)
    branches.append(pooled)
    x = keras.layers.Concatenate(name="aspp_concat")(branches)
    x = conv_bn_relu(ASPP_FILTERS, "aspp_projection", kernel_size=1, initializer="he_normal")(x)
    x = conv_bn_relu(ASPP_FILTERS, "head_conv3x3", initializer="he_normal")(x)
    x = keras.layers.Conv2D(n_classes, 1, kernel_initializer="he_normal", name="head_classifier")(x)
    factor = enc.inputs.shape[1] // height
    return keras.layers.UpSampling2D(factor, interpolation="bilinear", name="head_upsampling")(x)
