"""Our UNet / LinkNet / FPN against segmentation-models 1.0.1 itself (TensorFlow backend only).

segmentation_models needs ``SM_FRAMEWORK=tf.keras`` before import; under TensorFlow 2.21 tf.keras is
Keras 3, so it builds with the same layers as ours. Same parameter count, same decoder layer names
and convolution filters, in the same order. The documented differences, asserted below:

- ours starts with ``input_scaling`` (no weights; segmentation_models leaves scaling to the caller);
- our final activation layer is named ``seg`` (theirs ``softmax``) and the output is ``{"seg": ...}``;
- LinkNet: segmentation_models leaves its head convolution unnamed (``conv2d``, numbered per
  process); ours is ``final_conv`` as in its UNet.
"""
from __future__ import annotations

import os

import keras
import pytest

if keras.backend.backend() != "tensorflow":
    pytest.skip("segmentation_models runs on the TensorFlow backend only", allow_module_level=True)

os.environ["SM_FRAMEWORK"] = "tf.keras"
try:
    import segmentation_models as sm
except Exception as err:  # noqa: BLE001 - any import failure means: no reference here
    pytest.skip(f"segmentation_models does not import: {err!r}", allow_module_level=True)

from mtunet.models import build_fpn, build_linknet, build_unet  # noqa: E402
from mtunet.models.encoders import ENCODERS  # noqa: E402

SIZE = 64
CASES = {  # ours, theirs, parameter count at 5 classes (DESIGN.md, measured with sm)
    "unet": (build_unet, sm.Unet, 23_752_853),
    "linknet": (build_linknet, sm.Linknet, 20_325_717),
    "fpn": (build_fpn, sm.FPN, 17_577_157),
}
VGG16_LAYERS = {layer.name for layer in keras.applications.VGG16(
    include_top=False, weights=None, input_shape=(SIZE, SIZE, 3)).layers}


def decoder_layers(model):
    """Layers after the encoder: not an input, not a VGG16 layer."""
    return [layer for layer in model.layers
            if not isinstance(layer, keras.layers.InputLayer) and layer.name not in VGG16_LAYERS]


def layer_name(layer):
    """Name, with segmentation_models' unnamed LinkNet head read as ours (``final_conv``)."""
    return "final_conv" if layer.name.startswith("conv2d") else layer.name


def conv_signature(model):
    return [(layer_name(layer), layer.filters, layer.kernel_size, layer.use_bias)
            for layer in decoder_layers(model) if isinstance(layer, keras.layers.Conv2D)]


@pytest.fixture(scope="module", params=sorted(CASES))
def pair(request):
    ours, theirs, count = CASES[request.param]
    keras.utils.set_random_seed(0)
    reference = theirs("vgg16", input_shape=(SIZE, SIZE, 3), encoder_weights=None, classes=5,
                       activation="softmax")
    return ours((SIZE, SIZE, 3), n_classes=5, encoder="vgg16"), reference, count


def test_parameter_counts_match(pair):
    model, reference, count = pair
    assert reference.count_params() == count
    assert model.count_params() == count


def test_decoder_convolutions_match(pair):
    """Same convolutions (name, filters, kernel, bias); in the same order for UNet and LinkNet
    (FPN's four parallel heads may be listed in another order: compared sorted)."""
    model, reference, _ = pair
    assert sorted(conv_signature(model)) == sorted(conv_signature(reference))
    if model.name != "fpn":
        assert conv_signature(model) == conv_signature(reference)


def test_skip_layers_are_the_same(pair):
    model, reference, _ = pair
    assert ENCODERS["vgg16"].skips[:4] == sm.Backbones.get_feature_layers("vgg16", n=4)


def test_documented_differences_only(pair):
    model, reference, _ = pair
    ours = {layer.name for layer in decoder_layers(model)}
    theirs = {layer_name(layer) for layer in decoder_layers(reference)}
    assert ours - theirs == {"input_scaling", "seg"}
    assert theirs - ours == {"softmax"}
    assert set(model.output) == {"seg"}
    assert model.get_layer("seg").activation.__name__ == "softmax"
    assert model.get_layer("input_scaling").count_params() == 0
