"""A plain grading recipe to hold the graders against: a linear probe on frozen encoder features.

A grader at chance on a test set means one of two things: its recipe is broken, or the training
images do not carry the grade to that test population at this scale. The probe tells them apart
for about a minute of CPU: the VGG16 encoder MTUnet starts from (HED-BSDS500 offline), frozen, its
block-4 and block-5 maps pooled (mean and max) at the graders' input size, and a multinomial
logistic regression whose regularisation is chosen by stratified cross-validation on the
training images alone (never on a test set). Where the probe beats chance and the graders do not,
the graders' recipe is at fault; where the probe is at chance too, no network trained on these
images can be ranked on that test set.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from mtunet.data.records import Record

PROBE = "Linear probe (frozen VGG16)"       # its name in grading_summary beside the graders
FEATURE_LAYERS = ("block4_conv3", "block5_conv3")
C_GRID = tuple(np.logspace(-4, 2, 13))
MAX_FOLDS = 5


def feature_extractor(image_size: int, encoder_weights="auto"):
    """The VGG16 encoder, its pretrained weights loaded, mapping raw RGB images to its block-4
    and block-5 maps (and how it was initialised)."""
    import keras

    from mtunet.models.encoders import build_encoder
    from mtunet.models.weights import load_encoder_weights

    inputs = keras.Input((image_size, image_size, 3), name="image")
    encoder = build_encoder("vgg16", inputs)
    model = keras.Model(inputs, [encoder.model.get_layer(n).output for n in FEATURE_LAYERS],
                        name="vgg16_features")
    used = load_encoder_weights(model, "vgg16", encoder_weights, encoder.layer_names,
                                (image_size, image_size, 3))
    return model, used


def pooled_features(extractor, records: Sequence[Record], image_size: int,
                    batch_size: int = 8, preprocessing: str = "none") -> np.ndarray:
    """(N, F): per image, the mean and the max of every feature map channel, from the images the
    graders are scored on (``grade_arrays``: the same crop, pad, resize and preprocessing)."""
    from mtunet.data.pipeline import grade_arrays

    images = grade_arrays(records, image_size, preprocessing, progress=False)[0]
    out = []
    for start in range(0, len(images), batch_size):
        maps = extractor.predict_on_batch(images[start:start + batch_size].astype("float32"))
        out.append(np.concatenate([np.concatenate([np.asarray(m, np.float32).mean((1, 2)),
                                                   np.asarray(m, np.float32).max((1, 2))], axis=1)
                                   for m in maps], axis=1))
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def fit_probe(features: np.ndarray, grades: np.ndarray, seed: int = 0):
    """Standardised features -> logistic regression; C by stratified k-fold log-loss on these
    training images (k = 5, fewer where a grade has fewer images; a fixed C below 2)."""
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    present = np.bincount(grades)
    folds = min(MAX_FOLDS, int(present[present > 0].min())) if len(grades) else 0
    if folds >= 2:
        classifier = LogisticRegressionCV(
            Cs=list(C_GRID), cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
            scoring="neg_log_loss", max_iter=5000)
    else:
        classifier = LogisticRegression(C=C_GRID[len(C_GRID) // 2], max_iter=5000)
    with warnings.catch_warnings():   # scikit-learn 1.8 announces a change of attribute names
        warnings.simplefilter("ignore", FutureWarning)
        return make_pipeline(StandardScaler(), classifier).fit(features, grades)


def probability_of_every_grade(probe, features: np.ndarray, n_grades: int = 5) -> np.ndarray:
    """(N, n_grades) probabilities, zero for a grade the training images lacked."""
    prob = np.zeros((len(features), n_grades))
    prob[:, probe.classes_] = probe.predict_proba(features)
    return prob


def probe_evaluations(train: Sequence[Record], tests: Mapping[str, Sequence[Record]],
                      image_size: int, encoder_weights="auto", runs_dir: Path | None = None,
                      seed: int = 0, preprocessing: str = "none") -> tuple[dict, str]:
    """{(PROBE, seed, role): GradingEval} for every non-empty test role, and the encoder's
    initialisation. Scores are cached under runs_dir (keyed by the images, size and weights)."""
    from mtunet.evaluate import GradingEval
    from mtunet.files import write_atomic
    from mtunet.metrics import roc_auc_per_grade
    from mtunet.study.runs import data_fingerprint

    folder = None
    if runs_dir is not None:
        folder = Path(runs_dir) / (f"linear_probe-{data_fingerprint(train)}-{image_size}-"
                                   f"{str(encoder_weights).replace('/', '_').replace(':', '_')}"
                                   + ("" if preprocessing == "none" else f"-{preprocessing}"))
    cached = {role: folder / f"eval-grade-{role}-{data_fingerprint(records)}.npz"
              for role, records in tests.items() if records} if folder else {}
    if cached and all(path.exists() for path in cached.values()):
        used = (folder / "encoder_init.txt").read_text() if (folder / "encoder_init.txt").exists() else ""
        return {(PROBE, seed, role): GradingEval.load(path) for role, path in cached.items()}, used
    extractor, used = feature_extractor(image_size, encoder_weights)
    grades = np.array([r.grade for r in train])
    probe = fit_probe(pooled_features(extractor, list(train), image_size,
                                      preprocessing=preprocessing), grades, seed)
    out = {}
    for role, records in tests.items():
        if not records:
            continue
        y = np.array([r.grade for r in records])
        prob = probability_of_every_grade(probe, pooled_features(extractor, list(records), image_size,
                                                                 preprocessing=preprocessing))
        evaluation = GradingEval([r.image_id for r in records], y, prob, roc_auc_per_grade(y, prob))
        out[(PROBE, seed, role)] = evaluation
        if folder:
            folder.mkdir(parents=True, exist_ok=True)
            write_atomic(cached[role], evaluation.save)
    if folder:
        (folder / "encoder_init.txt").write_text(used)
    return out, used
