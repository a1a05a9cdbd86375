"""One training run of the study = a `RunSpec` + its training records; cached and resumable.

The notebooks describe *which* runs a table needs; this module trains each one (or finds it
already trained under `runs/<profile>/...`) and scores it, so an interrupted batch continues
where it stopped and a finished run is never trained twice. A run's id is derived from every
field of its spec and the fingerprint of its training data, so changing a parameter trains a
new run instead of silently reusing an old one.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

from mtunet.config import runs_dir
from mtunet.data.records import Record
from mtunet.errors import UserError


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """Everything that defines one training run (model x seed x hyper-parameters)."""

    model: str                      # a name from mtunet.models.registry.MODELS
    image_size: int
    seed: int = 0
    epochs: int = 1
    batch_size: int = 2
    learning_rate: float = 1e-5
    alpha: float = 1.0
    seg_loss: str = "bce"
    encoder_weights: str | None = "auto"
    augment: bool = True
    include_od: bool = False
    steps_per_epoch: int | None = None
    jit_compile: bool | str = False
    run_eagerly: bool = False
    mixed_precision: bool = False
    tag: str = ""                   # the experiment it belongs to ("table2", "ablation_alpha" ...)

    def key(self, records: Sequence[Record]) -> str:
        payload = json.dumps([dataclasses.asdict(self), data_fingerprint(records)], sort_keys=True)
        return hashlib.sha1(payload.encode()).hexdigest()[:10]

    def run_id(self, records: Sequence[Record]) -> str:
        """Folder of the run under the profile's runs directory: <tag>/<model>-seed<k>-<hash>."""
        return f"{self.tag or 'runs'}/{self.model}-seed{self.seed}-{self.key(records)}"


def data_fingerprint(records: Sequence[Record]) -> str:
    """Hash of the ids, grades and mask files of the training records (not the pixels)."""
    rows = sorted((r.image_id, r.grade, r.split, tuple(sorted((k, Path(v).name) for k, v in r.masks.items())))
                  for r in records)
    return hashlib.sha1(json.dumps(rows, default=str).encode()).hexdigest()[:12]


def model_tasks(model_name: str) -> tuple[str, ...]:
    from mtunet.models.registry import MODELS

    return tuple(MODELS[model_name].tasks)


def _sequence(records, spec: RunSpec, outputs, shuffle=True, augment=None):
    from mtunet.data.augment import Augmentation
    from mtunet.data.pipeline import FundusSequence

    n_classes = 6 if spec.include_od else 5
    use_aug = spec.augment if augment is None else augment
    return FundusSequence(list(records), spec.image_size, batch_size=spec.batch_size,
                          n_seg_classes=n_classes, outputs=outputs,
                          augmentation=Augmentation() if use_aug else None,
                          shuffle=shuffle, seed=spec.seed, include_od=spec.include_od,
                          **data_workers())


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


def _train_config(spec: RunSpec, verbose):
    from mtunet.train import TrainConfig

    return TrainConfig(epochs=spec.epochs, learning_rate=spec.learning_rate, alpha=spec.alpha,
                       seg_loss=spec.seg_loss, seed=spec.seed,
                       steps_per_epoch=spec.steps_per_epoch, jit_compile=spec.jit_compile,
                       run_eagerly=spec.run_eagerly,
                       mixed_precision=spec.mixed_precision, verbose=verbose)


def _describe(spec: RunSpec, records, extra=None) -> dict[str, Any]:
    info = {"model": spec.model, "spec": dataclasses.asdict(spec),
            "input_shape": [spec.image_size, spec.image_size, 3],
            "n_seg_classes": 6 if spec.include_od else 5,
            "n_train_records": len(records), "data_fingerprint": data_fingerprint(records)}
    info.update(extra or {})
    return info


def train_run(spec: RunSpec, records: Sequence[Record], profile: str,
              runs_root: Path | None = None, verbose: int | str = "auto"):
    """Train (or resume, or load) the run `spec` on `records`; returns the trained keras model.

    Variant B is trained in the paper's two steps: its segmenter first, then its grader on the
    image and the (frozen) segmenter's predicted mask.
    """

    from mtunet.models.registry import build_model
    from mtunet.train import fit

    root = Path(runs_root or runs_dir())
    run_id = spec.run_id(records)
    shape = (spec.image_size, spec.image_size, 3)
    n_classes = 6 if spec.include_od else 5
    config = _train_config(spec, verbose)
    if spec.model == "variant_b":
        return _train_variant_b(spec, records, run_id, root, config)
    tasks = model_tasks(spec.model)
    result = fit(lambda: build_model(spec.model, shape, n_seg_classes=n_classes,
                                     encoder_weights=spec.encoder_weights),
                 _sequence(records, spec, tasks), config, run_id, runs_root=root,
                 describe=_describe(spec, records))
    return result.model


def _train_variant_b(spec, records, run_id, root, config):
    """Step 1: segmenter on the masks. Step 2: grader on [image, predicted mask], segmenter frozen."""
    import keras

    from mtunet.models.mtunet import build_variant_b
    from mtunet.train import fit

    shape = (spec.image_size, spec.image_size, 3)
    n_classes = 6 if spec.include_od else 5
    parts = build_variant_b(shape, n_seg_classes=n_classes, encoder_weights=spec.encoder_weights)
    fit(parts.segmenter, _sequence(records, spec, ("seg",)), config,
                     f"{run_id}/step1-segmenter", runs_root=root,
                     describe=_describe(spec, records, {"step": 1}))
    parts.segmenter.trainable = False
    grade_only = keras.Model(parts.combined.input, {"grade": parts.combined.output["grade"]},
                             name="variant_b_grader_step")
    fit(grade_only, _sequence(records, spec, ("grade",)), config,
                        f"{run_id}/step2-grader", runs_root=root,
                        describe=_describe(spec, records, {"step": 2}))
    return parts.combined


def cached_eval(kind: str, model_loader, spec: RunSpec, train_records, test_name: str,
                test_records, profile: str, runs_root: Path | None = None, arrays=None):
    """Score a run on a test set once; later calls read the saved scores.

    kind: "seg" or "grade". `model_loader()` is only called when the scores are not cached.
    """
    from mtunet.evaluate import GradingEval, SegmentationEval, evaluate_grading, evaluate_segmentation

    root = Path(runs_root or runs_dir())
    path = root / spec.run_id(train_records) / f"eval-{kind}-{test_name}-{data_fingerprint(test_records)}.npz"
    cls = SegmentationEval if kind == "seg" else GradingEval
    if path.exists():
        return cls.load(path)
    model = model_loader()
    if kind == "seg":
        result = evaluate_segmentation(model, test_records, spec.image_size,
                                       include_od=spec.include_od, arrays=arrays)
    else:
        result = evaluate_grading(model, test_records, spec.image_size, arrays=arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    result.save(path)
    return result
