"""Multi-task training on crops without sending whole images through the decoder.

On the cpu profile MTUnet learns the lesions from 128-px crops of 512-px fundus images and the
grade from whole fundus images at 128 px. Sending a whole-image batch through the whole network,
its segmentation loss switched off, costs a decoder forward and backward for nothing, and worse,
it runs the decoder's batch norms in training mode on images of another scale (the whole fundus,
vessels four times thinner, a black surround): their moving statistics, which prediction uses,
become a mix of the two. :func:`paired_training_model` trains instead on pairs: each step a crop
batch goes through encoder and decoder (segmentation loss) and a few whole images through the
encoder and the grade head only (grade loss). The two paths share every layer and one optimiser.

The model trained is a wrapper; the network of the study (its weights in the same order as the
registry builds them, for ``final.npz``, scoring and prediction) is :func:`inference_model`.
"""
from __future__ import annotations

import keras

from mtunet.data.interleave import GRADE_INPUT, SEG_INPUT


def paired_training_model(net: keras.Model) -> keras.Model:
    """A model with inputs ``{"image": crops, "grade_image": whole images}`` and outputs
    ``{"seg": net's segmentation of the crops, "grade": net's grade of the whole images}``,
    sharing ``net``'s layers; ``inference_model`` of it is ``net``. Batches may differ in size."""
    outputs = net.output
    if not isinstance(outputs, dict) or set(outputs) != {"seg", "grade"}:
        raise ValueError(f"{net.name}: a paired training model needs a network with 'seg' and "
                         f"'grade' outputs, got {sorted(outputs) if isinstance(outputs, dict) else outputs}")
    seg_path = keras.Model(net.input, outputs["seg"], name=f"{net.name}_seg_path")
    grade_path = keras.Model(net.input, outputs["grade"], name=f"{net.name}_grade_path")
    shape = tuple(net.input_shape[1:])
    crops = keras.Input(shape, name=SEG_INPUT)
    whole = keras.Input(shape, name=GRADE_INPUT)
    paired = keras.Model({SEG_INPUT: crops, GRADE_INPUT: whole},
                         {"seg": seg_path(crops), "grade": grade_path(whole)}, name=net.name)
    # plain attributes, not tracked as layers: the paired model's weights are net's, deduplicated
    object.__setattr__(paired, "inference_model", net)
    paired.encoder_init = getattr(net, "encoder_init", "random")
    return paired


def inference_model(model: keras.Model) -> keras.Model:
    """The study's network inside a training model (the model itself when it is one)."""
    return getattr(model, "inference_model", model)
