"""Scoring trained models on a test set: lesion Dice (red, yellow) and per-grade ROC AUC.

Predictions are made at the model's working resolution (the same square, fundus-cropped frame
the data pipeline trains on) and compared with the ground-truth masks resized by the data
layer's "any overlap is lesion" rule. The paper does not say at which resolution it scores;
the README lists this as a deviation.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np

from mtunet.config import LESION_GROUPS
from mtunet.data.records import Record


@dataclasses.dataclass
class SegmentationEval:
    """Per-image Dice and the pooled scores of one model on one test set."""

    image_ids: list[str]
    scores: dict[str, float]                    # flat: red_dice_pooled, yellow_dice_per_image, ...
    per_image: dict[str, np.ndarray]            # "red" / "yellow" -> (N,) Dice, NaN where excluded
    pred_maps: np.ndarray                       # (N,S,S) uint8 predicted class index

    def save(self, path: Path) -> None:
        np.savez_compressed(path, image_ids=np.array(self.image_ids), pred_maps=self.pred_maps,
                            scores_keys=np.array(list(self.scores)),
                            scores_values=np.array(list(self.scores.values()), dtype=float),
                            **{f"per_image_{k}": v for k, v in self.per_image.items()})

    @classmethod
    def load(cls, path: Path) -> "SegmentationEval":
        with np.load(path, allow_pickle=False) as data:
            scores = dict(zip(data["scores_keys"].tolist(), data["scores_values"].tolist()))
            per_image = {k.removeprefix("per_image_"): data[k] for k in data.files
                         if k.startswith("per_image_")}
            return cls(data["image_ids"].tolist(), scores, per_image, data["pred_maps"])


@dataclasses.dataclass
class GradingEval:
    """Grade probabilities of one model on one graded test set."""

    image_ids: list[str]
    y_true: np.ndarray                          # (N,) int
    prob: np.ndarray                            # (N,5)
    auc: np.ndarray                             # (5,) one-vs-rest ROC AUC per grade

    def save(self, path: Path) -> None:
        np.savez_compressed(path, image_ids=np.array(self.image_ids), y_true=self.y_true,
                            prob=self.prob, auc=self.auc)

    @classmethod
    def load(cls, path: Path) -> "GradingEval":
        with np.load(path, allow_pickle=False) as data:
            return cls(data["image_ids"].tolist(), data["y_true"], data["prob"], data["auc"])


def predict_batches(model, images: np.ndarray, batch_size: int = 4) -> dict[str, np.ndarray]:
    """Run the model over uint8 images in batches; returns its output dict as numpy arrays."""
    outputs: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size].astype("float32")
        result = model.predict_on_batch(batch)
        if not isinstance(result, dict):
            result = {model.output_names[0]: result}
        for key, value in result.items():
            outputs.setdefault(key, []).append(np.asarray(value))
    return {k: np.concatenate(v) for k, v in outputs.items()}


def evaluate_segmentation(model, records: Sequence[Record], image_size: int,
                          batch_size: int = 4, include_od: bool = False,
                          arrays=None) -> SegmentationEval:
    """Dice of red (MA u HE) and yellow (EX u SE) lesions, pooled and per image."""
    from mtunet.data.pipeline import load_arrays
    from mtunet.metrics import dice_per_image, group_mask, segmentation_scores

    images, labels, _ = arrays if arrays is not None else load_arrays(
        records, image_size, include_od=include_od)
    seg = predict_batches(model, images, batch_size)["seg"]
    pred_maps = seg.argmax(axis=-1).astype(np.uint8)
    if include_od:  # OD is scored apart; lesion Dice must not see it as a lesion class
        pred_maps = np.where(pred_maps == 5, 0, pred_maps).astype(np.uint8)
        labels = np.where(labels == 5, 0, labels).astype(np.uint8)
    scores = segmentation_scores(pred_maps, labels)
    per_image = {g: dice_per_image(group_mask(pred_maps, g), group_mask(labels, g))
                 for g in LESION_GROUPS}
    return SegmentationEval([r.image_id for r in records], scores, per_image, pred_maps)


def evaluate_grading(model, records: Sequence[Record], image_size: int,
                     batch_size: int = 4, arrays=None) -> GradingEval:
    """One-vs-rest ROC AUC per grade on graded records."""
    from mtunet.data.pipeline import load_arrays
    from mtunet.metrics import roc_auc_per_grade

    images, _, grades = arrays if arrays is not None else load_arrays(records, image_size)
    prob = predict_batches(model, images, batch_size)["grade"].astype(float)
    return GradingEval([r.image_id for r in records], grades, prob,
                       roc_auc_per_grade(grades, prob))
