"""How long a run trains, decided on held-out *training* images: one rule for every network.

Every epoch, the images held out of the run's training set are scored; the epoch that scores best
is remembered (its weights written to ``heldout-best-eNNN.npz``), and the run stops once
``patience`` epochs have passed without a better one, or at its cap (the profile's ``epochs``).
Patience only runs once the best epoch is a sane one (both area ratios in the band; for a grader,
a finite AUC): a run that has not yet produced a sane epoch has not converged, and trains on to
its cap. (Without this, an untrained network's first epoch, a near-empty prediction just short of
the band, outranks the flooding epochs every network passes through while it learns, and the
window stopped such runs at epoch 3 with a held-out Dice of 0.) The run keeps the best epoch's
weights, not the last. The test split is never looked at.

The rule for segmenters (and the multi-task networks, whose grade converges in far fewer steps):
an epoch whose pooled red and yellow area ratios (predicted / true lesion pixels) both lie in
``SANE_AREA_RATIO`` ranks above every epoch outside it, and among those the higher mean of pooled
red and yellow Dice wins; outside it, the epoch nearer the band wins (a flood or a collapse can
score a Dice; it must never be chosen for it). Scores are those of the test tables: the whole
fundus predicted at the run's ``work_size`` and compared with the masks at their own size
(``mtunet.evaluate.score_segmentation``). For graders: the mean one-vs-rest AUC over the grades.

Resume: the callback's state (the scores so far, the best epoch) travels in the run's checkpoint,
and the best weights are files of their own, so a killed run continues with the same choice.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import keras
import numpy as np

from mtunet.checkpoints import _savez_atomic
from mtunet.errors import UserError
from mtunet.metrics import SANE_AREA_RATIO
from mtunet.models.paired import inference_model

BEST_PREFIX = "heldout-best-e"
HELDOUT_SEED = 0     # the same images are held out of every run (and of the loss selection)
LESION_RULE = ("lesions: red and yellow area ratios in [0.5, 2] first, then the mean pooled "
               "red/yellow Dice; outside the band, the nearer to it")
GRADE_RULE = "grade: the mean one-vs-rest AUC over the grades"
SEG_KEYS = ("red_dice", "yellow_dice", "red_area_ratio", "yellow_area_ratio")


def validation_split(records: Sequence, n_val: int, seed: int = HELDOUT_SEED
                     ) -> tuple[list, list]:
    """(fit, held out): a seeded choice of `n_val` records by image id, independent of order
    (the loss selection's rule, reused by every run's held-out selection)."""
    ordered = sorted(records, key=lambda r: r.image_id)
    if not 0 < n_val < len(ordered):
        raise UserError(f"n_val must be between 1 and {len(ordered) - 1}, not {n_val}")
    chosen = set(np.random.default_rng(seed).permutation(len(ordered))[:n_val].tolist())
    fit = [r for i, r in enumerate(ordered) if i not in chosen]
    held = [r for i, r in enumerate(ordered) if i in chosen]
    return fit, held


def band_distance(ratio: float, bounds: Sequence[float] = SANE_AREA_RATIO) -> float:
    """|log(ratio / nearest bound)| outside the band, 0 inside it (inf for NaN or 0)."""
    if not ratio or not math.isfinite(ratio):
        return math.inf
    low, high = bounds
    return 0.0 if low <= ratio <= high else abs(math.log(ratio / (low if ratio < low else high)))


def lesion_rank(scores: dict[str, float]) -> tuple[float, float]:
    """Sort key of one epoch's lesion scores (higher is better): sane areas first, then the mean
    pooled Dice; an epoch outside the band ranks by how near it is. The first element is 1 for a
    sane epoch, 0 otherwise (:func:`is_sane`)."""
    distance = max(band_distance(scores["red_area_ratio"]), band_distance(scores["yellow_area_ratio"]))
    if distance == 0.0:
        return (1.0, (scores["red_dice"] + scores["yellow_dice"]) / 2)
    return (0.0, -distance)


def is_sane(rank: tuple) -> bool:
    """Whether an epoch's sort key (:func:`lesion_rank`, :func:`grade_rank`) marks it sane."""
    return rank[0] > 0


def grade_rank(scores: dict[str, float]) -> tuple[float, float]:
    """Sort key of one epoch's grade scores: the mean one-vs-rest AUC (NaN ranks last)."""
    auc = scores["mean_auc"]
    return (1.0, auc) if math.isfinite(auc) else (0.0, 0.0)


def lesion_scorer(records, work_size: int, include_od: bool = False,
                  model_name: str | None = None) -> Callable[[keras.Model], dict[str, float]]:
    """Scores of a model's lesions on ``records`` at the masks' own size (fractions, not %).

    The model is predicted through a float32 copy at ``work_size`` (built once, its weights
    refreshed each call), as the test tables predict it."""
    from mtunet.evaluate import score_segmentation, seg_predictor

    records = list(records)
    copies: dict[int, keras.Model] = {}

    def score(model: keras.Model) -> dict[str, float]:
        model = inference_model(model)
        scoring = copies.get(id(model))
        if scoring is None:
            scoring = copies[id(model)] = _float32_copy(model, work_size, model_name)
        if scoring is not model:
            scoring.set_weights(model.get_weights())
        ev = score_segmentation(seg_predictor(scoring), records, work_size,
                                include_od=include_od, progress=False)
        return {"red_dice": ev.scores["red_dice_pooled"], "yellow_dice": ev.scores["yellow_dice_pooled"],
                "red_area_ratio": ev.scores["red_area_ratio"],
                "yellow_area_ratio": ev.scores["yellow_area_ratio"]}

    return score


def _float32_copy(model: keras.Model, size: int, model_name: str | None) -> keras.Model:
    """The model at ``size`` px in float32 (scoring never runs in the training's bfloat16):
    rebuilt by registry name where one is given (a builder may fix sizes at build time), else
    cloned layer by layer with float32 layers; the model itself when it already is both."""
    from mtunet.evaluate import model_at_size

    mixed = any(layer.dtype_policy.name != "float32" for layer in model.layers
                if getattr(layer, "dtype_policy", None) is not None)
    same_size = tuple(model.input_shape[1:3]) == (size, size)
    if same_size and not mixed:
        return model
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        if model_name is None:
            copy = keras.models.clone_model(
                model, input_tensors=keras.Input((size, size, model.input_shape[-1])),
                clone_function=lambda layer: layer.__class__.from_config(
                    {**layer.get_config(), "dtype": "float32"}))
        elif same_size:
            from mtunet.models.registry import build_model

            copy = build_model(model_name, tuple(model.input_shape[1:]), encoder_weights=None,
                               **_head_sizes(model))
        else:
            return model_at_size(model, size, name=model_name)
        copy.set_weights(model.get_weights())
        return copy
    finally:
        keras.mixed_precision.set_global_policy(policy)


def _head_sizes(model: keras.Model) -> dict[str, int]:
    spec = model.compute_output_spec(keras.KerasTensor((1,) + tuple(model.input_shape[1:])))
    sizes = {}
    if isinstance(spec, dict) and "seg" in spec:
        sizes["n_seg_classes"] = int(spec["seg"].shape[-1])
    if isinstance(spec, dict) and "grade" in spec:
        sizes["n_grades"] = int(spec["grade"].shape[-1])
    return sizes


def grade_scorer(records, image_size: int, preprocessing: str = "none"
                 ) -> Callable[[keras.Model], dict[str, float]]:
    """The mean one-vs-rest AUC over the grades present (and quadratic kappa) of a model's grade
    output on ``records``, their images loaded once, as the run's graders see them."""
    from mtunet.data.pipeline import grade_arrays
    from mtunet.evaluate import predict_batches
    from mtunet.metrics import mean_roc_auc, quadratic_kappa

    records = list(records)
    images, truth = grade_arrays(records, image_size, preprocessing, progress=False)
    images = images.astype(np.float32)

    def score(model: keras.Model) -> dict[str, float]:
        prob = np.asarray(predict_batches(inference_model(model), images, batch_size=8)["grade"], dtype=np.float64)
        return {"mean_auc": float(mean_roc_auc(truth, prob)),
                "kappa": float(quadratic_kappa(truth, prob.argmax(axis=1)))}

    return score


class HeldOutSelection(keras.callbacks.Callback):
    """Scores the held-out images after every epoch, remembers the best epoch and stops the run
    ``patience`` epochs after it once that epoch is sane (0: never early). Place it before the
    CSV logger (the scores go into history.csv as ``heldout_<name>``) and the checkpointer (which
    stores :meth:`state`)."""

    def __init__(self, scorer: Callable[[keras.Model], dict[str, float]],
                 rank: Callable[[dict[str, float]], tuple], patience: int, rule: str,
                 n_images: int = 0):
        super().__init__()
        if patience < 0:
            raise UserError(f"patience must be >= 0 epochs, not {patience}")
        self.scorer, self.rank = scorer, rank
        self.patience, self.rule, self.n_images = int(patience), rule, int(n_images)
        self.run_dir: Path | None = None       # set by mtunet.train.fit
        self.scores: list[dict[str, float]] = []
        self.best_epoch: int | None = None
        self.stopped_early = False

    def attach(self, run_dir: Path, state: dict[str, Any] | None) -> None:
        """The run's folder, and the state of the checkpoint the run continues from (None: a
        run from scratch)."""
        self.run_dir = Path(run_dir)
        state = state or {}
        self.scores = [dict(s) for s in state.get("scores", [])]
        self.best_epoch = state.get("best_epoch")
        self.stopped_early = False

    def state(self) -> dict[str, Any]:
        return {"scores": self.scores, "best_epoch": self.best_epoch}

    def on_epoch_end(self, epoch, logs=None):
        scores = {k: float(v) for k, v in self.scorer(self.model).items()}
        del self.scores[epoch:]                 # a resumed epoch replaces what it had scored
        self.scores.append(scores)
        if logs is not None:
            logs.update({f"heldout_{k}": v for k, v in scores.items()})
        if self.best_epoch is None or self.rank(scores) > self.rank(self.scores[self.best_epoch]):
            self.best_epoch = epoch
            weights = {f"arr_{i}": np.asarray(w) for i, w in enumerate(self.model.get_weights())}
            _savez_atomic(self.run_dir / f"{BEST_PREFIX}{epoch + 1:03d}.npz", weights)
        best_is_sane = is_sane(self.rank(self.scores[self.best_epoch]))
        if self.patience and best_is_sane and epoch - self.best_epoch >= self.patience:
            self.stopped_early = True
            self.model.stop_training = True

    def prune(self) -> None:
        """Delete best-weight files of epochs other than the best (after the checkpoint that
        names the best is written, so a killed run always finds the file its checkpoint names)."""
        for path in self.run_dir.glob(f"{BEST_PREFIX}*.npz"):
            if self.best_epoch is None or path.name != _best_name(self.best_epoch):
                path.unlink(missing_ok=True)

    def restore_best(self) -> None:
        """Load the best epoch's weights into the model (the run keeps them)."""
        if self.best_epoch is None:
            return
        path = self.run_dir / _best_name(self.best_epoch)
        if not path.exists():
            raise UserError(f"{path}: missing; the held-out best weights of epoch "
                            f"{self.best_epoch + 1} are gone (delete the run folder to retrain it)")
        with np.load(path, allow_pickle=False) as data:
            self.model.set_weights([data[f"arr_{i}"] for i in range(len(data.files))])

    def summary(self, cap: int) -> dict[str, Any]:
        """run.json's record of the selection: rule, epochs run, best epoch, whether the cap
        ended the run, and every epoch's held-out scores."""
        run = len(self.scores)
        best = None if self.best_epoch is None else self.best_epoch + 1
        return {"rule": self.rule, "images": self.n_images, "patience": self.patience,
                "cap": int(cap), "epochs_run": run,
                "best_epoch": best, "cap_hit": run >= cap and not self.stopped_early,
                "best": self.scores[self.best_epoch] if best else None,
                "scores": json.loads(json.dumps(self.scores))}


class PruneBest(keras.callbacks.Callback):
    """Runs :meth:`HeldOutSelection.prune` after the checkpointer of the same epoch."""

    def __init__(self, selection: HeldOutSelection):
        super().__init__()
        self.selection = selection

    def on_epoch_end(self, epoch, logs=None):
        self.selection.prune()


def _best_name(epoch: int) -> str:
    return f"{BEST_PREFIX}{epoch + 1:03d}.npz"
