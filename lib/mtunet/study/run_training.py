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

# How a multi-task run on crops feeds its whole images (RunSpec.grade_batches):
#   "paired":      every step a crop batch (encoder + decoder, segmentation loss) and a batch of
#                  batch_size whole images (encoder + grade head only, grade loss):
#                  mtunet.models.paired; the decoder never sees a whole image. A whole batch, not
#                  a share of one: the grade head's batch norm over one or two images outputs
#                  nothing but its offset (measured: with one whole image per step no gradient
#                  reached the encoder);
#   "interleaved": one whole-image batch per GRADE_BATCH_SHARE crop batches, through the whole
#                  network, its segmentation loss off (the recipe before; its decoder batch norms
#                  see both scales).
GRADE_BATCH_SHARE = 4
GRADE_BATCHES = ("paired", "interleaved")


def model_tasks(model_name: str) -> tuple[str, ...]:
    from mtunet.models.registry import MODELS

    return tuple(MODELS[model_name].tasks)


def training_sequence(records, spec, outputs, shuffle=True, augment=None):
    """The Keras input pipeline of a run, seeded by the run's seed.

    Whole images (``patch_size`` None, the paper's protocol): every image at ``image_size`` with
    the paper's augmentation. Lesion crops (``patch_size`` set): a segmenter trains on
    ``steps_per_epoch`` batches of lesion-centred crops cut from ``work_size`` images; a multi-task
    model pairs each crop batch (segmentation loss) with a few whole images at the same input size
    (grade loss; at that size the masks are too coarse), or interleaves whole-image batches
    (``GRADE_BATCHES``); a grader (or variant B's second step) trains on whole images as ever.
    Batches without segmentation draw only the graded records (a training set may hold
    lesion-annotated images without a grade).
    """
    from mtunet.data.augment import Augmentation

    use_aug = spec.augment if augment is None else augment
    augmentation = Augmentation() if use_aug else None
    if not spec.on_crops or "seg" not in outputs:
        return _whole_images(records, spec, outputs, augmentation, shuffle)
    from mtunet.data.crops import LesionCropSequence

    paired = "grade" in outputs and is_paired(spec)
    crops = LesionCropSequence([r for r in records if r.has_masks], spec.scoring_size,
                               spec.patch_size, batch_size=spec.batch_size,
                               steps_per_epoch=spec.steps_per_epoch or _default_steps(records, spec),
                               lesion_share=spec.lesion_share, seed=spec.seed,
                               augmentation=augmentation, include_od=spec.include_od,
                               n_seg_classes=spec.n_seg_classes,
                               outputs=("seg",) if paired else outputs, **data_workers())
    if "grade" not in outputs or not any(r.grade is not None for r in records):
        if paired:
            raise UserError(f"{spec.model}: a multi-task run on crops needs graded images for its "
                            "whole-image batches; its training set has none")
        return crops
    from mtunet.data.interleave import InterleavedSequence, PairedSequence

    if paired:
        grades = _whole_images(records, spec, ("grade",), augmentation, shuffle, grade_only=True)
        return PairedSequence(crops, grades)
    grades = _whole_images(records, spec, outputs, augmentation, shuffle, grade_only=True)
    # one whole-image (grade) batch per GRADE_BATCH_SHARE crop (lesion) batches, at most
    return InterleavedSequence([crops, grades], switch_off=[(), ("seg",)],
                               limits=[None, max(1, len(crops) // GRADE_BATCH_SHARE)])


def _whole_images(records, spec, outputs, augmentation, shuffle, grade_only=False, batch_size=None):
    """Whole images at the run's input size; batches without segmentation draw graded records
    and go through the run's grade preprocessing (:func:`grade_preprocessing_of`)."""
    from mtunet.data.pipeline import FundusSequence

    graded = [r for r in records if r.grade is not None]
    for_grade = grade_only or "seg" not in outputs
    chosen = graded if for_grade and graded else list(records)
    return FundusSequence(chosen, spec.image_size, batch_size=batch_size or spec.batch_size,
                          n_seg_classes=spec.n_seg_classes, outputs=outputs,
                          augmentation=augmentation, shuffle=shuffle, seed=spec.seed,
                          include_od=spec.include_od,
                          preprocessing=grade_preprocessing_of(spec) if for_grade else "none",
                          **data_workers())


def grade_preprocessing_of(spec) -> str:
    """The preprocessing of a run's whole-image grade inputs: the spec's, except for variant B,
    whose grader reads the image through its segmenter, trained on unnormalised images."""
    from mtunet.data.pipeline import check_grade_preprocessing

    return "none" if spec.model == "variant_b" else check_grade_preprocessing(spec.grade_preprocessing)


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


def is_paired(spec) -> bool:
    """Whether the run trains on pairs of crop and whole-image batches (``GRADE_BATCHES``)."""
    if spec.grade_batches not in GRADE_BATCHES:
        raise UserError(f"grade_batches must be one of {GRADE_BATCHES}, not {spec.grade_batches!r}")
    return spec.on_crops and spec.grade_batches == "paired" and set(model_tasks(spec.model)) == {"seg", "grade"}


def build_for_training(spec):
    """The model `fit` trains: the run's network, or its paired training model."""
    net = build_untrained(spec, spec.encoder_weights)
    if not is_paired(spec):
        return net
    from mtunet.models.paired import paired_training_model

    return paired_training_model(net)


ANNOTATED_SOURCE = "idrid-segmentation"   # lesion masks drawn by annotators (not pseudo masks)


def heldout_split(records: Sequence[Record], spec, task: str) -> tuple[list[Record], list[Record]]:
    """(training records, held-out records) of a run: ``spec.heldout_images`` of the
    annotator-masked images for a run that segments (``task`` "seg"), ``spec.heldout_grade_images``
    of the graded ones for a grader ("grade"); the same seeded choice for every run
    (:func:`mtunet.heldout.validation_split`), none when the count is 0."""
    from mtunet.heldout import validation_split

    records = list(records)
    n = spec.heldout_images if task == "seg" else spec.heldout_grade_images
    if not n:
        return records, []
    if task == "seg":
        pool = [r for r in records if r.has_masks and r.source == ANNOTATED_SOURCE] or \
               [r for r in records if r.has_masks and not r.ignored]
    else:
        pool = [r for r in records if r.grade is not None]
    if len(pool) <= n:
        raise UserError(f"{spec.model}: {n} images to hold out for its {task} selection, but the "
                        f"training set has only {len(pool)} eligible; lower heldout_images / "
                        "heldout_grade_images in the profile")
    _, held = validation_split(pool, n)
    held_ids = {r.key for r in held}
    return [r for r in records if r.key not in held_ids], held


def heldout_selection(spec, held: Sequence[Record], task: str, model_name: str | None = "spec"):
    """The run's :class:`mtunet.heldout.HeldOutSelection` on its held-out images (None: none).
    ``model_name``: the registry name its scoring copy is rebuilt by ("spec": the run's model;
    None: cloned, for a part such as variant B's segmenter)."""
    from mtunet import heldout

    if not held:
        return None
    if task == "seg":
        name = spec.model if model_name == "spec" else model_name
        scorer = heldout.lesion_scorer(held, spec.scoring_size, spec.include_od, name)
        rule = heldout.LESION_RULE
        rank = heldout.lesion_rank
    else:
        scorer = heldout.grade_scorer(held, spec.image_size, grade_preprocessing_of(spec))
        rule, rank = heldout.GRADE_RULE, heldout.grade_rank
    return heldout.HeldOutSelection(scorer, rank, spec.patience, rule, n_images=len(held))


def selection_task(model_name: str) -> str:
    """What a run is selected on: its lesions when it segments, else its grade."""
    return "seg" if "seg" in model_tasks(model_name) else "grade"


def train_run(spec, records: Sequence[Record], run_id: str, root: Path, verbose: int | str = "auto"):
    """Train (or resume, or load) the run `spec` on `records` under ``root/run_id``; returns the
    trained keras model. Images held out for the run's selection (``heldout_split``) are left
    out of its training. Variant B is trained in the paper's two steps (:func:`train_variant_b`)."""
    from mtunet.train import fit

    config = train_config(spec, verbose)
    if spec.model == "variant_b":
        return train_variant_b(spec, records, run_id, root, config)
    task = selection_task(spec.model)
    fit_records, held = heldout_split(records, spec, task)
    from mtunet.models.paired import inference_model

    is_paired(spec)   # a bad grade_batches fails before anything is built
    result = fit(lambda: build_for_training(spec),
                 training_sequence(fit_records, spec, model_tasks(spec.model)), config, run_id,
                 runs_root=root, describe=describe(spec, records, _held_ids(held)),
                 selection=heldout_selection(spec, held, task))
    return inference_model(result.model)


def _held_ids(held: Sequence[Record]) -> dict[str, Any]:
    return {"heldout_ids": sorted(r.key for r in held)} if held else {}


def train_variant_b(spec, records, run_id: str, root: Path, config):
    """Step 1: segmenter on the masks. Step 2: grader on [image, predicted mask], segmenter frozen."""
    import keras

    from mtunet.models.mtunet import build_variant_b
    from mtunet.train import fit, set_seeds

    shape = (spec.image_size, spec.image_size, 3)
    set_seeds(spec.seed)   # the two parts are built here, before fit seeds: same weights every time
    parts = build_variant_b(shape, n_seg_classes=spec.n_seg_classes,
                            encoder_weights=spec.encoder_weights)
    seg_records, seg_held = heldout_split(records, spec, "seg")
    fit(parts.segmenter, training_sequence(seg_records, spec, ("seg",)), config,
        f"{run_id}/step1-segmenter", runs_root=root,
        describe=describe(spec, records, {"step": 1, **_held_ids(seg_held)}),
        selection=heldout_selection(spec, seg_held, "seg", model_name=None))
    parts.segmenter.trainable = False
    grade_only = keras.Model(parts.combined.input, {"grade": parts.combined.output["grade"]},
                             name="variant_b_grader_step")
    grade_records, grade_held = heldout_split(records, spec, "grade")
    fit(grade_only, training_sequence(grade_records, spec, ("grade",)), config,
        f"{run_id}/step2-grader", runs_root=root,
        describe=describe(spec, records, {"step": 2, **_held_ids(grade_held)}),
        selection=heldout_selection(spec, grade_held, "grade"))
    return parts.combined
