"""The paper's three networks: variant A, variant B and variant C (= MTUnet).

- **C / MTUnet** (Fig. 4, 5): a VGG16 encoder whose blocks each pass a skip connection to the
  decoder *before* their max-pool; after the 5th block the fully connected layers become
  GlobalMaxPooling2D + Dense(5, softmax) — the grade. The decoder mirrors VGG16 (stages of 512,
  512, 256, 128, 64 filters with 3, 3, 3, 2, 2 convolutions); each stage upsamples with a
  Conv2DTranspose (stride 2), concatenates the skip and convolves (3x3, He-normal, then batch
  norm and ReLU: our addition, see ``_conv_bn_relu``); a 1x1 convolution with a per-pixel softmax
  gives the segmentation.
- **A** (Fig. 2): a plain UNet (Ronneberger et al. 2015) with a grading head at the end of the
  decoder.
- **B** (Fig. 3): two steps: a UNet segments; a classifier grades from the image and the mask.

Choices the text leaves open (Figure 5's layer table is an image we do not have):

- the transposed convolutions are 2x2, stride 2, linear (no activation), He-normal — with them
  MTUnet without batch norm has 39,295,178 parameters at 5 classes, DESIGN.md's "39.3 M" (3x3
  ones would give 42.8 M); the decoder's and the grade head's batch norms add 14,720;
- the grade pools block5_pool (the max-pool closing the 5th block; its global max equals that of
  block5_conv3 for even sizes) — the same tensor the decoder starts from;
- variant A/B's plain UNet uses 64..1024 filters, two 3x3 'same' convolutions per level, no batch
  norm, and input scaling ``"tf"`` (no pretrained weights exist for it);
- variant B's grader is a VGG16 (as C's encoder) over the image concatenated with the predicted
  class probabilities, GlobalMaxPooling2D + Dense; with pretrained weights its first convolution
  gets zeros for the mask channels.
"""
from __future__ import annotations

from dataclasses import dataclass

import keras

from .encoders import ENCODERS, build_encoder, check_encoder
from .layers import InputScaling, StopGradient, conv_bn_relu, grade_head, match_size
from .weights import check_encoder_weights, load_encoder_weights

# (filters, convolutions) per decoder stage, coarse to fine: VGG16's blocks read backwards.
VGG16_DECODER = ((512, 3), (512, 3), (256, 3), (128, 2), (64, 2))
UNET_LEVELS = (64, 128, 256, 512)
UNET_BOTTLENECK = 1024


# ----------------------------------------------------------------------------------------------
# Variant C: MTUnet
# ----------------------------------------------------------------------------------------------

def build_mtunet(input_shape=(512, 512, 3), n_seg_classes: int = 5, n_grades: int = 5,
                 encoder: str = "vgg16", encoder_weights=None) -> keras.Model:
    """MTUnet (the paper's variant C): a UNet whose encoder is VGG16 and which also grades.

    Args:
        input_shape: ``(H, W, 3)`` raw RGB pixels 0..255. For VGG16/ResNet50/DenseNet121, H and W
            must be multiples of 32; Inception-v3 takes any size >= 75 (see ``encoders``).
        n_seg_classes: channels of the per-pixel softmax (background + MA, HE, EX, SE = 5;
            6 with the optic disc).
        n_grades: DR grades (5).
        encoder: ``"vgg16"`` (the paper's network), or ``"resnet50"``, ``"inception_v3"``,
            ``"densenet121"`` for the encoder comparison of Fig. 6: same decoder, the skips of
            ``encoders.ENCODERS``, the grade from the encoder's deepest map.
        encoder_weights: ``None``/``"random"``, ``"imagenet"``, ``"hed-bsds500"`` (VGG16),
            ``"auto"`` or a .h5 path — see ``weights``. Decoder: He-normal.

    Returns:
        A ``keras.Model`` named ``mtunet`` (``mtunet_<encoder>`` for other encoders) mapping
        images to ``{"seg": (B, H, W, n_seg_classes) softmax, "grade": (B, n_grades) softmax}``,
        with ``model.encoder_init`` saying how the encoder was initialised.
    """
    spec = check_encoder(encoder, segmentation=True)
    _check_common(input_shape, n_seg_classes, n_grades, spec.min_size, spec.multiple)
    check_encoder_weights(encoder_weights)
    model, layer_names = _assemble_mtunet(tuple(input_shape), n_seg_classes, n_grades, encoder)
    load_encoder_weights(model, encoder, encoder_weights, layer_names, input_shape)
    return model


def _assemble_mtunet(input_shape, n_seg_classes, n_grades, encoder):
    inputs = keras.Input(input_shape, name="image")
    enc = build_encoder(encoder, inputs)
    grade = grade_head(enc.bottom, n_grades, pooling="max")
    x = _vgg_mirror_decoder(enc.bottom, enc.skips)
    x = match_size(x, input_shape[:2], name="dec_resize_to_input")
    seg = keras.layers.Conv2D(n_seg_classes, 1, activation="softmax",
                              kernel_initializer="he_normal", name="seg")(x)
    name = "mtunet" if encoder == "vgg16" else f"mtunet_{encoder}"
    return keras.Model(inputs, {"seg": seg, "grade": grade}, name=name), enc.layer_names


def _vgg_mirror_decoder(x, skips):
    """Five stages: Conv2DTranspose(2x2, stride 2), concatenate the skip (if any), 3x3 convs."""
    for stage, (filters, n_convs) in enumerate(VGG16_DECODER, start=1):
        x = keras.layers.Conv2DTranspose(filters, 2, strides=2, padding="same",
                                         kernel_initializer="he_normal",
                                         name=f"dec_stage{stage}_upconv")(x)
        if stage <= len(skips):
            skip = skips[stage - 1]
            x = match_size(x, skip, name=f"dec_stage{stage}_resize")
            x = keras.layers.Concatenate(name=f"dec_stage{stage}_concat")([x, skip])
        for i in range(1, n_convs + 1):
            x = _conv_bn_relu(filters, f"dec_stage{stage}_conv{i}")(x)
    return x


def _conv_bn_relu(filters: int, name: str):
    """3x3 convolution (He-normal, no bias), batch norm, ReLU. Without the batch norm the HED
    VGG16 encoder's activations (up to ~500 on fundus images) pass through the He-initialised
    decoder unshrunk and saturate the softmax at initialisation: on the cpu crops MTUnet then never
    learned to segment (README "Deviations", "MTUnet's decoder")."""

    def block(x):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False,
                                kernel_initializer="he_normal", name=name)(x)
        x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
        return keras.layers.Activation("relu", name=f"{name}_relu")(x)

    return block


# ----------------------------------------------------------------------------------------------
# Variant A: plain UNet, grade at the end of the decoder
# ----------------------------------------------------------------------------------------------

def build_variant_a(input_shape=(512, 512, 3), n_seg_classes: int = 5, n_grades: int = 5,
                    encoder_weights=None) -> keras.Model:
    """Variant A (Fig. 2): a plain UNet with a second output at the end of its decoder.

    The grade is GlobalMaxPooling2D + Dense(n_grades, softmax) on the decoder's last feature map
    (64 channels, full size). No pretrained weights exist for a plain UNet: ``encoder_weights``
    may be ``None``/``"random"`` (or ``"auto"``, which warns and stays random).
    Returns ``{"seg", "grade"}`` as ``build_mtunet``.
    """
    _check_common(input_shape, n_seg_classes, n_grades, 16, 16)
    _check_no_pretrained(encoder_weights, "variant A (plain UNet)")
    model = _assemble_variant_a(tuple(input_shape), n_seg_classes, n_grades)
    load_encoder_weights(model, None, encoder_weights, [], input_shape)
    return model


def _assemble_variant_a(input_shape, n_seg_classes, n_grades):
    inputs = keras.Input(input_shape, name="image")
    features = _plain_unet(inputs)
    seg = keras.layers.Conv2D(n_seg_classes, 1, activation="softmax",
                              kernel_initializer="he_normal", name="seg")(features)
    grade = grade_head(features, n_grades, pooling="max")
    return keras.Model(inputs, {"seg": seg, "grade": grade}, name="variant_a")


def _plain_unet(inputs):
    """Ronneberger's UNet ('same' padding), with batch norm after every convolution (ours: without
    it this 23-layer ReLU network died within two epochs at the cpu profile's learning rate, 1e-3,
    predicting background everywhere): its decoder's last 64-channel feature map."""
    x = InputScaling("tf", name="input_scaling")(inputs)
    skips = []
    for level, filters in enumerate(UNET_LEVELS, start=1):
        x = conv_bn_relu(filters, f"enc_level{level}_conv1")(x)
        x = conv_bn_relu(filters, f"enc_level{level}_conv2")(x)
        skips.append(x)
        x = keras.layers.MaxPooling2D(2, name=f"enc_level{level}_pool")(x)
    x = conv_bn_relu(UNET_BOTTLENECK, "bottleneck_conv1")(x)
    x = conv_bn_relu(UNET_BOTTLENECK, "bottleneck_conv2")(x)
    for stage, (filters, skip) in enumerate(zip(UNET_LEVELS[::-1], skips[::-1]), start=1):
        x = keras.layers.Conv2DTranspose(filters, 2, strides=2, padding="same",
                                         kernel_initializer="he_normal",
                                         name=f"dec_stage{stage}_upconv")(x)
        x = keras.layers.Concatenate(name=f"dec_stage{stage}_concat")([x, skip])
        x = conv_bn_relu(filters, f"dec_stage{stage}_conv1")(x)
        x = conv_bn_relu(filters, f"dec_stage{stage}_conv2")(x)
    return x


# ----------------------------------------------------------------------------------------------
# Variant B: segment, then grade from image + mask
# ----------------------------------------------------------------------------------------------

@dataclass
class VariantB:
    """Variant B's two networks and their chain.

    - ``segmenter``: image -> ``{"seg"}`` (step 1: train it alone on the masks).
    - ``grader``: inputs ``{"image": (B,H,W,3) pixels, "seg_probs": (B,H,W,C) probabilities}``
      -> ``{"grade"}``; it concatenates them after scaling the image (step 2: train it on the
      images and the trained segmenter's predictions).
    - ``combined``: image -> ``{"seg", "grade"}``, the grader fed the segmenter's output through a
      stop-gradient, sharing both networks' layers (for evaluation, or one-step training in which
      the grade loss does not reach the segmenter).
    """

    segmenter: keras.Model
    grader: keras.Model
    combined: keras.Model


def build_variant_b(input_shape=(512, 512, 3), n_seg_classes: int = 5, n_grades: int = 5,
                    encoder_weights=None) -> VariantB:
    """Variant B (Fig. 3): a plain UNet segments; a VGG16 classifier grades image + predicted mask.

    ``encoder_weights`` initialises the grader's VGG16 (the UNet has no pretrained weights); its
    first convolution gets zeros for the mask channels. Each of the three models carries
    ``encoder_init``.
    """
    _check_common(input_shape, n_seg_classes, n_grades, 32, 32)
    check_encoder_weights(encoder_weights)
    segmenter, grader, layer_names = _assemble_variant_b(tuple(input_shape), n_seg_classes,
                                                         n_grades)
    segmenter.encoder_init = "random"
    used = load_encoder_weights(grader, "vgg16", encoder_weights, layer_names, input_shape)
    combined = _chain(segmenter, grader, input_shape)
    combined.encoder_init = used
    return VariantB(segmenter, grader, combined)


def _assemble_variant_b(input_shape, n_seg_classes, n_grades):
    image = keras.Input(input_shape, name="image")
    seg = keras.layers.Conv2D(n_seg_classes, 1, activation="softmax",
                              kernel_initializer="he_normal", name="seg")(_plain_unet(image))
    segmenter = keras.Model(image, {"seg": seg}, name="variant_b_segmenter")

    image = keras.Input(input_shape, name="image")
    probs = keras.Input(tuple(input_shape[:2]) + (n_seg_classes,), name="seg_probs")
    enc = build_encoder("vgg16", image, extra=probs)
    grade = grade_head(enc.bottom, n_grades, pooling="max")
    grader = keras.Model({"image": image, "seg_probs": probs}, {"grade": grade},
                         name="variant_b_grader")
    return segmenter, grader, enc.layer_names


def _chain(segmenter, grader, input_shape):
    image = keras.Input(tuple(input_shape), name="image")
    seg = segmenter(image)["seg"]
    frozen = StopGradient(name="seg_stop_gradient")(seg)
    grade = grader({"image": image, "seg_probs": frozen})["grade"]
    # Identity layers give the outputs the contract's names in this model's own namespace.
    seg = keras.layers.Identity(name="seg")(seg)
    grade = keras.layers.Identity(name="grade")(grade)
    return keras.Model(image, {"seg": seg, "grade": grade}, name="variant_b")


# ----------------------------------------------------------------------------------------------
# Argument checks shared by the builders
# ----------------------------------------------------------------------------------------------

def _check_common(input_shape, n_seg_classes, n_grades, min_size, multiple):
    if len(input_shape) != 3 or input_shape[2] != 3:
        raise ValueError(f"input_shape must be (H, W, 3), got {input_shape}")
    for side in input_shape[:2]:
        if side is None or side < min_size or side % multiple:
            raise ValueError(f"input sides must be >= {min_size} and multiples of {multiple}, "
                             f"got {input_shape}")
    if n_seg_classes is not None and n_seg_classes < 2:
        raise ValueError(f"n_seg_classes must be >= 2 (softmax), got {n_seg_classes}")
    if n_grades is not None and n_grades < 2:
        raise ValueError(f"n_grades must be >= 2, got {n_grades}")


def _check_no_pretrained(encoder_weights, what):
    check_encoder_weights(encoder_weights)
    if encoder_weights not in (None, "random", "auto"):
        raise ValueError(f"{what} has no pretrained encoder; encoder_weights must be None, "
                         f"'random' or 'auto', got {encoder_weights!r}")


__all__ = ["build_mtunet", "build_variant_a", "build_variant_b", "VariantB", "VGG16_DECODER",
           "ENCODERS"]
