"""Forward FLOPs of a Keras model counted from its layer shapes (no tracing, no profiler).

One multiply-add = 2 FLOPs; convolutions (plain, grouped, transposed, depthwise, separable) and
Dense layers are counted, nested models included; biases, activations, pooling, normalisation and
concatenation are not (for MTUnet they are < 1 % of the total). A training step costs about 3x
the forward pass (forward + gradient w.r.t. inputs + gradient w.r.t. weights). Used by ``bench``
and by the GPU sizing of ``gpu_protocol`` and ``bench --gpu-plan``.
"""
from __future__ import annotations


def _prod(values) -> int:
    out = 1
    for v in values:
        out *= int(v)
    return out


def _shape_list(shape):
    """A Keras shape (tuple, or list of one tuple) as a plain tuple."""
    if isinstance(shape, list) and shape and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    return tuple(shape)


def _call_shapes(layer):
    """(input_shape, output_shape) of every call of ``layer`` in its model graph(s)."""
    pairs = []
    for node in getattr(layer, "_inbound_nodes", []) or []:
        ins = [t.shape for t in node.input_tensors]
        outs = [t.shape for t in node.output_tensors]
        if ins and outs:
            pairs.append((tuple(ins[0]), tuple(outs[0])))
    if not pairs:  # a layer never called symbolically: fall back to its recorded shapes
        try:
            pairs.append((_shape_list(layer.input.shape), _shape_list(layer.output.shape)))
        except (AttributeError, ValueError):
            pass
    return pairs


def _spatial(shape, data_format: str):
    """(spatial dims, channels) of a batched N-d shape in ``data_format``."""
    if data_format == "channels_first":
        return shape[2:], shape[1]
    return shape[1:-1], shape[-1]


def layer_flops(layer) -> int:
    """Forward FLOPs per sample of one (non-nested) layer, summed over its calls; 0 if not counted.

    - Conv1D/2D/3D: ``2 * prod(kernel) * C_in/groups * C_out * prod(output spatial)``.
    - DepthwiseConv2D: ``2 * k_h * k_w * C_in * depth_multiplier * H_out * W_out``.
    - SeparableConv2D: its depthwise part plus a 1x1 pointwise conv at the output size.
    - Conv2DTranspose (and 1D/3D): every *input* pixel scatters a ``k_h x k_w x C_out`` patch of
      ``C_in``-long dot products, so ``2 * k_h * k_w * C_in * C_out * H_in * W_in``. With kernel =
      stride (MTUnet's 2x2 / stride 2 upconvs) this is ``2 * C_in * C_out * H_out * W_out``, i.e. the
      "output size / stride^2" form; with kernel > stride the patches overlap and the count is
      still per input pixel (no FLOPs are counted for the overlap-add).
    - Dense: ``2 * C_in * C_out`` for every position of the leading non-batch dimensions.
    """
    import keras

    L = keras.layers
    name = type(layer).__name__
    total = 0
    for in_shape, out_shape in _call_shapes(layer):
        if any(d is None for d in in_shape[1:]) or any(d is None for d in out_shape[1:]):
            raise ValueError(f"layer {layer.name!r} has an unknown (None) dimension: "
                             f"{in_shape} -> {out_shape}; build the model with a fixed input size")
        fmt = getattr(layer, "data_format", "channels_last")
        if isinstance(layer, (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)):
            in_sp, c_in = _spatial(in_shape, fmt)
            _, c_out = _spatial(out_shape, fmt)
            total += 2 * _prod(layer.kernel_size) * c_in * c_out * _prod(in_sp)
        elif isinstance(layer, L.SeparableConv2D):
            in_sp, c_in = _spatial(in_shape, fmt)
            out_sp, c_out = _spatial(out_shape, fmt)
            mid = c_in * layer.depth_multiplier
            total += 2 * _prod(layer.kernel_size) * mid * _prod(out_sp)
            total += 2 * mid * c_out * _prod(out_sp)
        elif isinstance(layer, L.DepthwiseConv2D):
            _, c_in = _spatial(in_shape, fmt)
            out_sp, _ = _spatial(out_shape, fmt)
            total += 2 * _prod(layer.kernel_size) * c_in * layer.depth_multiplier * _prod(out_sp)
        elif isinstance(layer, (L.Conv1D, L.Conv2D, L.Conv3D)):
            _, c_in = _spatial(in_shape, fmt)
            out_sp, c_out = _spatial(out_shape, fmt)
            groups = int(getattr(layer, "groups", 1) or 1)
            total += 2 * _prod(layer.kernel_size) * (c_in // groups) * c_out * _prod(out_sp)
        elif isinstance(layer, L.Dense):
            c_in, c_out = in_shape[-1], out_shape[-1]
            total += 2 * c_in * c_out * _prod(in_shape[1:-1])
        elif name == "EinsumDense":  # pragma: no cover - not used by our models
            continue
    return int(total)


def _leaf_layers(model):
    """Every non-model layer inside ``model``, descending into nested models."""
    for layer in model.layers:
        sub = getattr(layer, "layers", None)
        if sub is not None and layer is not model and isinstance(sub, list) and sub:
            yield from _leaf_layers(layer)
        else:
            yield layer


def analytic_flops(model) -> int:
    """Forward-pass FLOPs for ONE image, from the layer shapes (see :func:`layer_flops`).

    Sums Conv / Conv-transpose / Depthwise / Separable / Dense layers (nested models included);
    everything else (bias adds, activations, pooling, normalisation, concatenation) is ignored —
    for MTUnet that is < 1 % of the total. A training step costs about 3x this.
    """
    return int(sum(layer_flops(layer) for layer in _leaf_layers(model)))


def flops_by_type(model) -> dict[str, int]:
    """analytic_flops split by layer class name (for the report)."""
    out: dict[str, int] = {}
    for layer in _leaf_layers(model):
        f = layer_flops(layer)
        if f:
            out[type(layer).__name__] = out.get(type(layer).__name__, 0) + f
    return out
