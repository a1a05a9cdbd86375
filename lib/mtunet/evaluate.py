"""Scoring trained models on a test set: lesion Dice (red, yellow), AUPR and per-grade ROC AUC.

Segmentation is scored **at the ground truth's own resolution, inside the fundus**
(:func:`score_segmentation`, the study's protocol): each image is cropped to the fundus, padded
and resized to the model's square working frame exactly as in training, the softmax map is
mapped back through the resize, padding and crop
(:func:`~mtunet.data.preprocess.restore_probabilities`) and compared with the annotators' masks,
which are never resized. Only pixels of the field of
view (:func:`~mtunet.data.preprocess.fundus_mask`) count. Per image and per group it keeps
|X ∩ Y|, |X|, |Y| and pixel-score histograms, one image at a time, so the full-size test set
never sits in memory as float maps.

Decisions (see :func:`score_segmentation` for the details):

- **Truth with overlaps.** IDRiD marks some pixels as two lesions. Each lesion is scored against
  its own mask (as the IDRiD challenge does) and a group against the union of its lesions' masks
  (red = MA ∪ HE, yellow = EX ∪ SE); the prediction is one class per pixel (argmax), so a pixel
  marked both HE and EX can only be right for one of them (344 such pixels of 556,557 lesion
  pixels in the 27 IDRiD test images).
- **AUPR** per lesion on all fundus pixels of the test set pooled, exact for scores quantised to
  4096 levels of sqrt(p) (:func:`~mtunet.metrics.average_precision_from_histograms`): no
  subsampling of negatives.
- **Area ratio** = Σ predicted / Σ true pixels (pooled): ≫ 1 is a flood, ~0 a collapse.

:func:`evaluate_segmentation` is the legacy protocol, kept for the loss-selection step and old
results: predictions at the working resolution against masks resized with the data layer's
"any overlap is lesion" rule, which inflates small lesions (microaneurysm area ~5x at 128 px),
so its numbers are not comparable with the literature.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from mtunet.config import CLASS_NAMES_WITH_OD, LESION_GROUPS, LESIONS, group_classes
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


def run_model(model, batch: np.ndarray):
    """The model's outputs on one float32 batch. ``predict_on_batch`` traces a graph function
    once per model; a model set to run eagerly (the smoke profile: a few small images per run,
    where tracing costs more than it saves) is called directly instead."""
    if getattr(model, "run_eagerly", False):
        out = model(batch, training=False)
        return ({k: np.asarray(v) for k, v in out.items()} if isinstance(out, dict)
                else [np.asarray(v) for v in out] if isinstance(out, (list, tuple)) else np.asarray(out))
    return model.predict_on_batch(batch)


def predict_batches(model, images: np.ndarray, batch_size: int = 4) -> dict[str, np.ndarray]:
    """Run the model over uint8 images in batches; returns its output dict as numpy arrays."""
    outputs: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size].astype("float32")
        result = run_model(model, batch)
        if not isinstance(result, dict):
            result = {model.output_names[0]: result}
        for key, value in result.items():
            outputs.setdefault(key, []).append(np.asarray(value))
    return {k: np.concatenate(v) for k, v in outputs.items()}


def evaluate_segmentation(model, records: Sequence[Record], image_size: int,
                          batch_size: int = 4, include_od: bool = False,
                          arrays=None) -> SegmentationEval:
    """Dice of red (MA u HE) and yellow (EX u SE) lesions, pooled and per image — legacy protocol.

    Scores at the working resolution ``image_size`` against masks resized with the any-overlap
    rule (small lesions get fatter), so the numbers are not comparable with the literature; the
    study scores with :func:`score_segmentation` (the masks' own resolution, inside the fundus).
    """
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
                     batch_size: int = 16, arrays=None, preprocessing: str = "none",
                     cache_dir=None) -> GradingEval:
    """One-vs-rest ROC AUC per grade on graded records, their images through the run's grade
    ``preprocessing`` (``mtunet.data.pipeline.grade_arrays``; ``cache_dir``: prepared once)."""
    from mtunet.data.pipeline import grade_arrays
    from mtunet.metrics import roc_auc_per_grade

    if arrays is not None:
        images, _, grades = arrays
    else:
        images, grades = grade_arrays(records, image_size, preprocessing, cache_dir)
    prob = predict_batches(model, images, batch_size)["grade"].astype(float)
    return GradingEval([r.image_id for r in records], grades, prob,
                       roc_auc_per_grade(grades, prob))


# ----------------------------------------------------------------------------------------------
# Full-resolution scoring (the study's protocol)
# ----------------------------------------------------------------------------------------------

FULLRES_GROUPS: tuple[str, ...] = ("red", "yellow") + LESIONS
PredictProbs = Callable[[np.ndarray], np.ndarray]   # float32 (N,S,S,3) -> (N,S,S,C) softmax


def _codes(group: str) -> tuple[str, ...]:
    """Mask codes of a group: "red" -> ("MA", "HE"), "SE" -> ("SE",)."""
    return tuple(CLASS_NAMES_WITH_OD[i] for i in group_classes(group))


@dataclasses.dataclass
class FullResSegmentationEval:
    """One model (or predictor) scored at the masks' own resolution, inside the fundus.

    ``scores`` is flat, fractions (not percent); for each group g of ``groups`` (red, yellow, MA,
    HE, EX, SE, and OD when scored with ``include_od``)::

        g_dice_pooled     2 Σ|X∩Y| / (Σ|X| + Σ|Y|) over all images
        g_dice_per_image  mean over images of the per-image Dice (``empty`` rule, NaN skipped)
        g_n_images        images that entered that mean
        g_area_ratio      Σ|X| / Σ|Y| (predicted / true pixels; NaN without true pixels)
        g_aupr            pixel-level average precision, all images' fundus pixels pooled

    plus ``n_images``. ``per_image[g]`` is the (N,) per-image Dice (NaN where excluded) for the
    paired t-tests; ``counts`` (N, G, 3) holds |X∩Y|, |X|, |Y| per image and group (any pooling
    or bootstrap can be recomputed from it); ``pr_hist`` (G, 2, levels) the pooled pixel counts
    per score level, negatives then positives (:func:`mtunet.metrics.score_histograms`: redraws
    the precision-recall curves). For figures (Fig. 6): ``pred_maps`` (N, S, S) uint8, the argmax
    class map in the model's working frame (5 = OD where the model has that channel), and
    ``bboxes`` (N, 4) / ``image_hw`` (N, 2) to map them back (:meth:`pred_map_at_image_size`).
    """

    image_ids: list[str]
    scores: dict[str, float]
    per_image: dict[str, np.ndarray]
    counts: np.ndarray
    groups: tuple[str, ...]
    pr_hist: np.ndarray
    pred_maps: np.ndarray
    bboxes: np.ndarray
    image_hw: np.ndarray
    empty: str = "skip"

    @property
    def work_size(self) -> int:
        return int(self.pred_maps.shape[1])

    def pred_map_at_image_size(self, i: int) -> np.ndarray:
        """Image ``i``'s predicted class map at its own size (nearest neighbour; for overlays)."""
        from mtunet.data.preprocess import restore_label_map

        return restore_label_map(self.pred_maps[i], tuple(self.image_hw[i]), tuple(self.bboxes[i]))

    def save(self, path: Path) -> None:
        np.savez_compressed(path, image_ids=np.array(self.image_ids, dtype=str),
                            scores_keys=np.array(list(self.scores), dtype=str),
                            scores_values=np.array(list(self.scores.values()), dtype=float),
                            counts=self.counts, groups=np.array(self.groups, dtype=str),
                            pr_hist=self.pr_hist, pred_maps=self.pred_maps, bboxes=self.bboxes,
                            image_hw=self.image_hw, empty=np.array(self.empty),
                            **{f"per_image_{k}": v for k, v in self.per_image.items()})

    @classmethod
    def load(cls, path: Path) -> "FullResSegmentationEval":
        with np.load(path, allow_pickle=False) as data:
            scores = dict(zip(data["scores_keys"].tolist(), data["scores_values"].tolist()))
            per_image = {k.removeprefix("per_image_"): data[k] for k in data.files
                         if k.startswith("per_image_")}
            return cls(data["image_ids"].tolist(), scores, per_image, data["counts"],
                       tuple(data["groups"].tolist()), data["pr_hist"], data["pred_maps"],
                       data["bboxes"], data["image_hw"], str(data["empty"]))


class FullResScorer:
    """Streaming accumulator of the full-resolution scores: :meth:`add` one image at a time,
    then :meth:`result`. Only counts, score histograms and the small working-frame class map
    are kept per image."""

    def __init__(self, include_od: bool = False, empty: str = "skip",
                 pr_levels: int | None = None):
        from mtunet.metrics import EMPTY_RULES, PR_LEVELS

        if empty not in EMPTY_RULES:
            raise ValueError(f"empty must be one of {EMPTY_RULES}, got {empty!r}")
        self.include_od = include_od
        self.empty = empty
        self.groups = FULLRES_GROUPS + (("OD",) if include_od else ())
        self.pr_levels = int(pr_levels or PR_LEVELS)
        self.pr_hist = np.zeros((len(self.groups), 2, self.pr_levels), np.int64)
        self.image_ids: list[str] = []
        self.counts: list[np.ndarray] = []
        self.pred_maps: list[np.ndarray] = []
        self.bboxes: list[tuple[int, int, int, int]] = []
        self.image_hw: list[tuple[int, int]] = []

    def add(self, record: Record, image: np.ndarray, prob: np.ndarray, bbox=None) -> None:
        """Score one image: ``image`` uint8 (H, W, 3) at its own size, ``prob`` the (S, S, C)
        softmax map of its fitted square (:func:`~mtunet.data.preprocess.fit_square` with the
        same ``bbox``, default :func:`~mtunet.data.preprocess.fundus_bbox`)."""
        from mtunet.data.preprocess import (fundus_bbox, fundus_mask, restore_probabilities,
                                            truth_masks)
        from mtunet.metrics import score_histograms

        prob = np.asarray(prob, dtype=np.float32)
        if prob.ndim != 3 or prob.shape[0] != prob.shape[1]:
            raise ValueError(f"{record.image_id}: expected a square (S, S, C) probability map, "
                             f"got {prob.shape}")
        n_classes = 1 + len(LESIONS) + int(self.include_od)
        if prob.shape[-1] < n_classes:
            raise ValueError(f"{record.image_id}: the map has {prob.shape[-1]} channels, "
                             f"scoring needs {n_classes} (background, MA, HE, EX, SE"
                             f"{', OD' if self.include_od else ''})")
        hw = image.shape[:2]
        bbox = tuple(int(v) for v in (bbox if bbox is not None else fundus_bbox(image)))
        fov = fundus_mask(image, bbox=bbox)
        truth = truth_masks(record, self.include_od, hw)
        full = restore_probabilities(prob, hw, bbox)[fov]           # (n_fov, C)
        pred = full.argmax(axis=-1)                                 # one class per pixel
        counts = np.zeros((len(self.groups), 3), np.int64)
        for gi, g in enumerate(self.groups):
            classes = list(group_classes(g))
            x = np.isin(pred, classes)
            y = np.zeros(pred.shape, bool)
            for code in _codes(g):
                y |= truth[code][fov]
            counts[gi] = (np.count_nonzero(x & y), np.count_nonzero(x), np.count_nonzero(y))
            self.pr_hist[gi] += score_histograms(full[:, classes].sum(axis=-1), y,
                                                 self.pr_levels)
        self.image_ids.append(record.image_id)
        self.counts.append(counts)
        self.pred_maps.append(prob.argmax(axis=-1).astype(np.uint8))
        self.bboxes.append(bbox)
        self.image_hw.append(tuple(hw))

    def result(self) -> FullResSegmentationEval:
        from mtunet.metrics import average_precision_from_histograms, scores_from_counts

        n, g = len(self.image_ids), len(self.groups)
        counts = np.stack(self.counts) if n else np.zeros((0, g, 3), np.int64)
        scores: dict[str, float] = {"n_images": float(n)}
        per_image: dict[str, np.ndarray] = {}
        for gi, name in enumerate(self.groups):
            group_scores, per_image[name] = scores_from_counts(*counts[:, gi].T, empty=self.empty)
            scores.update({f"{name}_{k}": v for k, v in group_scores.items()})
            scores[f"{name}_aupr"] = average_precision_from_histograms(self.pr_hist[gi])
        s = self.pred_maps[0].shape[0] if n else 0
        return FullResSegmentationEval(
            list(self.image_ids), scores, per_image, counts, self.groups, self.pr_hist.copy(),
            np.stack(self.pred_maps) if n else np.zeros((0, s, s), np.uint8),
            np.array(self.bboxes, np.int64).reshape(n, 4),
            np.array(self.image_hw, np.int64).reshape(n, 2), self.empty)


def _batches(records: Sequence[Record], batch_size: int, progress: bool, desc: str):
    """(record, image, bbox) lists of ``batch_size`` images at their own size, with a bar."""
    from tqdm import tqdm

    from mtunet.data.preprocess import fundus_bbox, load_rgb

    bar = tqdm(total=len(records), desc=desc, unit="img", disable=not progress)
    for start in range(0, len(records), batch_size):
        batch = []
        for r in records[start:start + batch_size]:
            image = load_rgb(r.image_path)
            batch.append((r, image, fundus_bbox(image)))
        yield batch
        bar.update(len(batch))
    bar.close()


def score_segmentation(predict_probs: PredictProbs, records: Sequence[Record], work_size: int,
                       batch_size: int = 2, include_od: bool = False, empty: str = "skip",
                       progress: bool = True) -> FullResSegmentationEval:
    """Score a segmenter at the ground truth's own resolution, inside the fundus.

    ``predict_probs(images)`` maps float32 images (N, S, S, 3) (0-255, as training feeds them)
    to softmax maps (N, S, S, C), S = ``work_size``: e.g. ``seg_predictor(model_at_size(model,
    work_size))``. Per image: load it at its own size; crop to the fundus, pad and resize to S
    (:func:`~mtunet.data.preprocess.fit_square`); predict; map the probabilities back
    (bilinear) to the image's size; argmax; compare with the annotators' masks, unresized,
    inside :func:`~mtunet.data.preprocess.fundus_mask` (pixels outside the field of view count
    for neither prediction nor truth — e.g. the 3,400-pixel strip that IDRiD_61's haemorrhage
    mask has along the frame's right edge). The optic disc is never a lesion: with
    ``include_od`` an OD prediction is simply not red or yellow, and OD gets its own scores.

    Decisions: each lesion is scored against its own mask and a group against the union of its
    lesions' masks (overlaps kept, as the IDRiD challenge); per-image Dice follows ``empty``
    (:func:`mtunet.metrics.dice_per_image`: ``"skip"`` leaves out images without that lesion);
    AUPR is exact on all pooled fundus pixels with the scores quantised to 4096 levels of
    sqrt(p) (no subsampling). Streaming: ``batch_size`` images are in memory at a time.
    Returns a :class:`FullResSegmentationEval`.
    """
    from mtunet.data.preprocess import fit_square

    records = list(records)
    scorer = FullResScorer(include_od=include_od, empty=empty)
    for batch in _batches(records, batch_size, progress, "scoring at full size"):
        x = np.stack([fit_square(img, work_size, box) for _, img, box in batch]).astype(np.float32)
        probs = np.asarray(predict_probs(x))
        if probs.shape[:3] != (len(batch), work_size, work_size):
            raise ValueError(f"predict_probs returned {probs.shape} for {x.shape} images; "
                             f"expected ({len(batch)}, {work_size}, {work_size}, C)")
        for (record, image, box), prob in zip(batch, probs):
            scorer.add(record, image, prob, box)
    return scorer.result()


def oracle_probabilities(record: Record, work_size: int, include_od: bool = False,
                         image: np.ndarray | None = None, bbox=None, soft: bool = False
                         ) -> np.ndarray:
    """The truth as a model working at ``work_size`` could at best output it: float32 (S, S, C).

    The truth's class map (:func:`~mtunet.data.preprocess.truth_label_map`, MA > HE > SE > EX
    priority), one-hot at the masks' own size, goes through the image's crop, pad and area resize
    (:func:`~mtunet.data.preprocess.fit_square`), so each channel is the fraction of the working
    pixel the class covers. ``soft=False`` (default) then keeps the class covering most of each
    working pixel, one-hot: a confident model that is right at its own resolution.
    ``soft=True`` keeps the fractions (sub-pixel information no model outputs: an optimistic
    ceiling). Scoring it measures what the working resolution alone costs.
    """
    from mtunet.data.preprocess import fit_square, fundus_bbox, load_rgb, truth_label_map

    if image is None:
        image = load_rgb(record.image_path)
    bbox = bbox if bbox is not None else fundus_bbox(image)
    label = truth_label_map(record, include_od, image.shape[:2])
    classes = np.arange(1 + len(LESIONS) + int(include_od), dtype=np.uint8)
    coverage = fit_square((label[..., None] == classes).astype(np.float32), work_size, bbox)
    coverage[..., 0] += 1.0 - coverage.sum(axis=-1)    # the black padding is background
    if soft:
        return coverage
    return (coverage.argmax(axis=-1)[..., None] == classes).astype(np.float32)


def score_oracle(records: Sequence[Record], work_size: int, include_od: bool = False,
                 empty: str = "skip", soft: bool = False, progress: bool = True
                 ) -> FullResSegmentationEval:
    """:func:`score_segmentation` of :func:`oracle_probabilities`: the ceiling of a work size."""
    records = list(records)
    scorer = FullResScorer(include_od=include_od, empty=empty)
    for batch in _batches(records, 1, progress, f"oracle at {work_size} px"):
        for record, image, box in batch:
            scorer.add(record, image, oracle_probabilities(record, work_size, include_od,
                                                           image, box, soft), box)
    return scorer.result()


def seg_predictor(model) -> PredictProbs:
    """``predict_probs`` for :func:`score_segmentation`: a Keras model's ``"seg"`` output."""

    def predict(images: np.ndarray) -> np.ndarray:
        out = run_model(model, images)
        if isinstance(out, dict):
            return np.asarray(out["seg"])
        if isinstance(out, (list, tuple)):
            return np.asarray(out[list(model.output_names).index("seg")])
        return np.asarray(out)

    return predict


def model_at_size(model, size: int, name: str | None = None):
    """The same model and weights on a (size, size, channels) input.

    Models trained on crops (``patch_size``) are scored on whole fundus images at ``work_size``;
    the study's models are fully convolutional (the MTUnet grade head is a global max pool), so
    only the input shape changes. Returns ``model`` itself when its input is already that size.

    ``name`` (a registry name such as ``"unet"`` or ``"mtunet"``): rebuild with
    :func:`mtunet.models.registry.build_model` at the new size (needed where a builder fixes a
    size at build time) and copy the weights in order. Without it the graph is cloned on a new
    input (``keras.models.clone_model``). Either way a ValueError if the weights do not fit or
    the output is not (size, size) — then give ``name``.
    """
    import keras

    shape = tuple(model.input_shape[1:])
    if shape[:2] == (size, size):
        return model
    spec = model.compute_output_spec(keras.KerasTensor((1,) + shape))
    if name is not None:
        from mtunet.models.registry import build_model

        kwargs = {}
        if isinstance(spec, dict):
            if "seg" in spec:
                kwargs["n_seg_classes"] = int(spec["seg"].shape[-1])
            if "grade" in spec:
                kwargs["n_grades"] = int(spec["grade"].shape[-1])
        new = build_model(name, (size, size, shape[-1]), encoder_weights=None, **kwargs)
    else:
        new = keras.models.clone_model(
            model, input_tensors=keras.Input((size, size, shape[-1]), name=model.inputs[0].name))
    old_w, new_w = model.get_weights(), new.get_weights()
    if [w.shape for w in old_w] != [w.shape for w in new_w]:
        raise ValueError(f"model_at_size: the rebuilt model's weights differ from {model.name}'s "
                         f"({len(new_w)} vs {len(old_w)} arrays or other shapes)")
    new.set_weights(old_w)
    out = new.compute_output_spec(keras.KerasTensor((1, size, size, shape[-1])))
    seg = out.get("seg") if isinstance(out, dict) else None
    if seg is not None and tuple(seg.shape[1:3]) != (size, size):
        raise ValueError(f"model_at_size: {model.name} at {size} px gives a {seg.shape[1:3]} map; "
                         "rebuild it by registry name (name=...)")
    new.run_eagerly = bool(getattr(model, "run_eagerly", False))   # predicted as the model would be
    return new
