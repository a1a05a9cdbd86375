"""How one training run of the study is trained: its input pipeline, its config and its fit.

Everything that decides a run's weights, apart from its parameters and its data, is reached from
this module's imports (the crop sampler, the whole-image pipeline, augmentation, the interleaving
of grade batches, the model builders, the losses, the training loop, variant B's two steps). So
:func:`mtunet.code_fingerprint.training_code`, which hashes this module and what it imports, is
the part of a run's key that stands for the code: change any of it and cached runs are retrained.
Keep report and bookkeeping code out of here (``mtunet.study.runs`` holds the cache, the
inventory and the scoring).

A run is described by a ``RunSpec`` (``mtunet.study.runs``); this module only reads its fields.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Sequence

from mtunet.config import n_seg_classes
from mtunet.data.records import Record, data_fingerprint
from mtunet.errors import UserError

# Multi-task runs on crops: whole-image grade batches per crop batch (1 in 4). The grade needs
# far fewer steps than the lesions (Table 1's ROC is a few image-level outputs), and every
# whole-image step costs as much as a crop step.
GRADE_BATCH_SHARE = 4


def model_tasks(model_name: str) -> tuple[str, ...]:
    from mtunet.models.registry import MODELS

    return tuple(MODELS[model_name].tasks)


def training_sequence(records, spec, outputs, shuffle=True, augment=None):
    """The Keras input pipeline of a run, seeded by the run's seed.

    Whole images (``patch_size`` None, the paper's protocol): every image at ``image_size`` with
    the paper's augmentation. Lesion crops (``patch_size`` set): a segmenter trains on
    ``steps_per_epoch`` batches of lesion-centred crops cut from ``work_size`` images; a multi-task
    model interleaves those (its grade loss off) with whole-image batches at the same input size
    (its segmentation loss off: at that size the masks are too coarse); a grader (or variant B's
    second step) trains on whole images as ever. Batches without segmentation draw only the
    graded records (a training set may hold lesion-annotated images without a grade).
    """
    from mtunet.data.augment import Augmentation

    use_aug = spec.augment if augment is None else augment
    augmentation = Augmentation() if use_aug else None
    if not spec.on_crops or "seg" not in outputs:
        return _whole_images(records, spec, outputs, augmentation, shuffle)
    from mtunet.data.crops import LesionCropSequence

    crops = LesionCropSequence([r for r in records if r.has_masks], spec.scoring_size,
                               spec.patch_size, batch_size=spec.batch_size,
                               steps_per_epoch=spec.steps_per_epoch or _default_steps(records, spec),
                               lesion_share=spec.lesion_share, seed=spec.seed,
                               augmentation=augmentation, include_od=spec.include_od,
                               n_seg_classes=spec.n_seg_classes, outputs=outputs, **data_workers())
    if "grade" not in outputs or not any(r.grade is not None for r in records):
        return crops
    from mtunet.data.interleave import InterleavedSequence

    grades = _whole_images(records, spec, outputs, augmentation, shuffle, grade_only=True)
    # one whole-image (grade) batch per GRADE_BATCH_SHARE crop (lesion) batches, at most
    return InterleavedSequence([crops, grades], switch_off=[(), ("seg",)],
                               limits=[None, max(1, len(crops) // GRADE_BATCH_SHARE)])


def _whole_images(records, spec, outputs, augmentation, shuffle, grade_only=False):
    """Whole images at the run's input size; batches without segmentation draw graded records."""
    from mtunet.data.pipeline import FundusSequence

    graded = [r for r in records if r.grade is not None]
    chosen = graded if (grade_only or "seg" not in outputs) and graded else list(records)
    return FundusSequence(chosen, spec.image_size, batch_size=spec.batch_size,
                          n_seg_classes=spec.n_seg_classes, outputs=outputs,
                          augmentation=augmentation, shuffle=shuffle, seed=spec.seed,
                          include_od=spec.include_od, **data_workers())


def _default_steps(records, spec) -> int:
    """Crop batches per epoch when the profile names none: as many as whole-image batches."""
    return max(1, -(-len(records) // spec.batch_size))


def data_workers() -> dict[str, Any]:
    """$MTUNET_DATA_WORKERS > 1 loads batches in that many threads (OpenCV releases the GIL), so
    a GPU is not left waiting on JPEG decoding and augmentation. Batches are still built by index
    from seeded per-epoch augmentation, so results do not depend on it; it is not part of a run's key."""
    text = os.environ.get("MTUNET_DATA_WORKERS", "")
    if not text:
        return {}
    try:
        workers = int(text)
    except ValueError:
        raise UserError(f"MTUNET_DATA_WORKERS={text!r}: not an integer") from None
    return {"workers": workers, "max_queue_size": 2 * workers} if workers > 1 else {}


def train_config(spec, verbose):
    from mtunet.train import TrainConfig

    return TrainConfig(epochs=spec.epochs, learning_rate=spec.learning_rate, alpha=spec.alpha,
                       seg_loss=spec.seg_loss, seed=spec.seed, lr_schedule=spec.lr_schedule,
                       # an epoch is the whole sequence: all images, or steps_per_epoch crop batches
                       steps_per_epoch=None,
                       jit_compile=spec.jit_compile,
                       run_eagerly=spec.run_eagerly,
                       mixed_precision=spec.mixed_precision, verbose=verbose)


def describe(spec, records, extra=None) -> dict[str, Any]:
    """run.json's description of a run: enough to rebuild its model and know its data, and which
    commit and training code trained it (``mtunet.code_fingerprint``)."""
    from mtunet.code_fingerprint import training_code
    from mtunet.report.manifest import git_commit

    info = {"model": spec.model, "spec": dataclasses.asdict(spec),
            "input_shape": [spec.image_size, spec.image_size, 3],
            "n_seg_classes": n_seg_classes(spec.include_od),
            "n_train_records": len(records), "data_fingerprint": data_fingerprint(records),
            "training_code": training_code(), "trained_by": git_commit()}
    info.update(extra or {})
    return info


def build_untrained(spec, encoder_weights=None):
    """The run's model, untrained (``--dry-run`` checks parameters and input sizes with it)."""
    from mtunet.models.registry import build_model

    return build_model(spec.model, (spec.image_size, spec.image_size, 3),
                       n_seg_classes=spec.n_seg_classes, encoder_weights=encoder_weights)


def train_run(spec, records: Sequence[Record], run_id: str, root: Path, verbose: int | str = "auto"):
    """Train (or resume, or load) the run `spec` on `records` under ``root/run_id``; returns the
    trained keras model. Variant B is trained in the paper's two steps (:func:`train_variant_b`)."""
    from mtunet.train import fit

    config = train_config(spec, verbose)
    if spec.model == "variant_b":
        return train_variant_b(spec, records, run_id, root, config)
    result = fit(lambda: build_untrained(spec, spec.encoder_weights),
                 training_sequence(records, spec, model_tasks(spec.model)), config, run_id,
                 runs_root=root, describe=describe(spec, records))
    return result.model


def train_variant_b(spec, records, run_id: str, root: Path, config):
    """Step 1: segmenter on the masks. Step 2: grader on [image, predicted mask], segmenter frozen."""
    import keras

    from mtunet.models.mtunet import build_variant_b
    from mtunet.train import fit, set_seeds

    shape = (spec.image_size, spec.image_size, 3)
    set_seeds(spec.seed)   # the two parts are built here, before fit seeds: same weights every time
    parts = build_variant_b(shape, n_seg_classes=spec.n_seg_classes,
                            encoder_weights=spec.encoder_weights)
    fit(parts.segmenter, training_sequence(records, spec, ("seg",)), config,
        f"{run_id}/step1-segmenter", runs_root=root, describe=describe(spec, records, {"step": 1}))
    parts.segmenter.trainable = False
    grade_only = keras.Model(parts.combined.input, {"grade": parts.combined.output["grade"]},
                             name="variant_b_grader_step")
    fit(grade_only, training_sequence(records, spec, ("grade",)), config,
        f"{run_id}/step2-grader", runs_root=root, describe=describe(spec, records, {"step": 2}))
    return parts.combined
