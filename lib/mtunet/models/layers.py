"""Small serializable layers and block closures shared by every model.

Everything here is pure Keras 3 (``keras.layers`` / ``keras.ops``), so the models build and train
on TensorFlow and on JAX. Blocks are closures with fixed, readable layer names (the
segmentation_models style): a summary, a weight file and a figure of a model all say the same
thing.
"""
from __future__ import annotations

import keras
from keras import ops

# ImageNet channel statistics, as keras.applications' preprocess_input uses them.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN_RGB = (0.485, 0.456, 0.406)
TORCH_STD_RGB = (0.229, 0.224, 0.225)
SCALING_MODES = ("caffe", "tf", "torch")


@keras.saving.register_keras_serializable(package="mtunet")
class InputScaling(keras.layers.Layer):
    """Raw RGB pixels (0..255, float32) -> what an encoder's pretrained weights expect.

    Our data pipeline does no scaling, so each model does its own as its first layer:

    - ``"caffe"``: RGB -> BGR, minus the ImageNet mean (VGG16, ResNet50 ImageNet weights, HED).
    - ``"tf"``: ``x / 127.5 - 1`` (Inception-v3, NASNet, Inception-ResNet-v2).
    - ``"torch"``: ``x / 255``, minus mean, over std, RGB (DenseNet).
    """

    def __init__(self, mode: str = "caffe", **kwargs):
        super().__init__(**kwargs)
        if mode not in SCALING_MODES:
            raise ValueError(f"InputScaling mode must be one of {SCALING_MODES}, got {mode!r}")
        self.mode = mode

    def call(self, x):
        x = ops.cast(x, self.compute_dtype)
        if self.mode == "caffe":
            x = ops.flip(x, axis=-1)
            return x - ops.convert_to_tensor(CAFFE_MEAN_BGR, dtype=x.dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        mean = ops.convert_to_tensor(TORCH_MEAN_RGB, dtype=x.dtype)
        std = ops.convert_to_tensor(TORCH_STD_RGB, dtype=x.dtype)
        return (x / 255.0 - mean) / std

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="mtunet")
class SplitGroupConv2D(keras.layers.Conv2D):
    """``Conv2D(groups=g)`` computed on TensorFlow as g plain convolutions over channel slices.

    The same layer, kernel shape and maths as Conv2D; only the kernel that runs changes:
    TensorFlow's CPU kernel for grouped convolutions cost ResNeXt-101 about 100x more per 3x3
    layer than the same work written as 32 plain convolutions (measured, profiles/cpu.yaml). Other
    backends keep the native grouped convolution.
    """

    def convolution_op(self, inputs, kernel):
        if self.groups == 1 or keras.backend.backend() != "tensorflow":
            return super().convolution_op(inputs, kernel)
        axis = -1 if self.data_format == "channels_last" else 1
        slices = keras.ops.split(inputs, self.groups, axis=axis)
        kernels = keras.ops.split(kernel, self.groups, axis=-1)
        return keras.ops.concatenate(
            [keras.ops.conv(x, k, strides=list(self.strides), padding=self.padding,
                            dilation_rate=self.dilation_rate, data_format=self.data_format)
             for x, k in zip(slices, kernels)], axis=axis)


@keras.saving.register_keras_serializable(package="mtunet")
class StopGradient(keras.layers.Layer):
    """Identity forward, no gradient backward (variant B feeds the grader a frozen mask)."""

    def call(self, x):
        return ops.stop_gradient(x)

    def compute_output_shape(self, input_shape):
        return input_shape


def conv_bn_relu(filters: int, name: str, kernel_size: int = 3, use_batchnorm: bool = True,
                 dilation_rate: int = 1, initializer: str = "he_uniform"):
    """segmentation_models' ``Conv2dBn`` + ReLU: layers ``<name>_conv``, ``<name>_bn``, ``<name>_relu``.

    The bias is dropped when batch norm follows (as there), which the parameter counts depend on.
    """

    def block(x):
        x = keras.layers.Conv2D(filters, kernel_size, padding="same", use_bias=not use_batchnorm,
                                dilation_rate=dilation_rate, kernel_initializer=initializer,
                                name=f"{name}_conv")(x)
        if use_batchnorm:
            x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
        return keras.layers.Activation("relu", name=f"{name}_relu")(x)

    return block


def match_size(x, reference, name: str):
    """Resize ``x`` (bilinear) to ``reference``'s static height/width when they differ.

    Needed for encoders with 'valid' padding (Inception-v3): their feature maps are 125, 60, 29 ...
    pixels where a decoder that doubles at each stage expects 128, 64, 32. Same size: no layer.
    """
    size = tuple(reference.shape[1:3]) if not isinstance(reference, tuple) else reference
    if tuple(x.shape[1:3]) == size:
        return x
    if None in size:
        raise ValueError(f"{name}: cannot match sizes without a static input shape")
    return keras.layers.Resizing(size[0], size[1], interpolation="bilinear", name=name)(x)


def grade_head(x, n_grades: int, pooling: str = "max"):
    """Global pooling + batch norm + Dense(n_grades, softmax) named ``grade`` (the paper's grading
    output; the batch norm is ours). Without it the max-pooled features of an encoder (hundreds,
    for HED's VGG16 on raw pixels) saturate the softmax at the first step; the cross-entropy's
    clipped log then has no gradient, and the grade never trains (measured on the real data: the
    same grade loss to ten digits over four epochs, one class for every image)."""
    pool = keras.layers.GlobalMaxPooling2D if pooling == "max" else keras.layers.GlobalAveragePooling2D
    x = pool(name=f"grade_global_{pooling}_pool")(x)
    x = keras.layers.BatchNormalization(name="grade_bn")(x)
    return keras.layers.Dense(n_grades, activation="softmax", name="grade")(x)


def scaling_layer(model: keras.Model) -> InputScaling | None:
    """The model's InputScaling layer (searching nested models), or None."""
    for layer in model.layers:
        if isinstance(layer, InputScaling):
            return layer
        if isinstance(layer, keras.Model):
            found = scaling_layer(layer)
            if found is not None:
                return found
    return None
