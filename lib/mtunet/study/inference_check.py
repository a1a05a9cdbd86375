"""Why a run that learns its crops floods the whole image: context, or batch-norm statistics?

A segmenter trained on 128-px crops is scored on whole 512-px fundus images, its batch norms in
inference mode (moving statistics). When the held-out score floods while the training Dice on
crops is sane, two causes are possible, and this check tells them apart on the held-out images:

- **context**: the whole image differs from a crop (deep features over 16 x 16 cells, a black
  surround, a global pooling over the whole fundus). Then predicting 128-px tiles
  (:mod:`mtunet.tiling`) scores differently from predicting the whole image.
- **batch-norm statistics**: the moving means and variances lag behind weights that still move
  fast. Then the same inputs scored with each batch's own statistics differ from the moving ones.

Each row: one way of predicting (whole image or tiles x moving or batch statistics), the area
ratios and Dice at the working size (the truth mapped to it, :func:`mtunet.evaluate.oracle_probabilities`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from mtunet.data.records import Record
from mtunet.errors import UserError

RED, YELLOW = (1, 2), (3, 4)        # MA, HE / EX, SE in the label maps
COLUMNS = ["inference", "batch_norm", "red_area_ratio", "yellow_area_ratio", "red_dice",
           "yellow_dice"]


def run_network(run_dir: Path):
    """(the run's network, its run.json, the epoch its weights are from): the final weights of a
    finished run, else the latest checkpoint of one still training."""
    from mtunet.checkpoints import CHECKPOINT, FINAL_WEIGHTS, _read_checkpoint, load_final_weights
    from mtunet.study.run_training import build_for_training, build_untrained
    from mtunet.study.runs import RunSpec

    info = json.loads((run_dir / "run.json").read_text())
    spec = RunSpec(**info["spec"])
    if (run_dir / FINAL_WEIGHTS).exists():
        return load_final_weights(build_untrained(spec), run_dir), info, "final"
    if not (run_dir / CHECKPOINT).exists():
        raise UserError(f"{run_dir}: neither {FINAL_WEIGHTS} nor {CHECKPOINT}; nothing to check")
    state = _read_checkpoint(run_dir / CHECKPOINT)
    trained = build_for_training(spec)
    for variable, value in zip(trained.variables, state.model_values):
        variable.assign(value)
    from mtunet.models.paired import inference_model

    return inference_model(trained), info, f"checkpoint after epoch {state.meta['epoch']}"


def _overlap(pred: np.ndarray, truth: np.ndarray, classes) -> tuple[float, float]:
    p, t = np.isin(pred, classes), np.isin(truth, classes)
    area = p.sum() / t.sum() if t.sum() else float("nan")
    dice = 2 * (p & t).sum() / (p.sum() + t.sum()) if p.sum() + t.sum() else float("nan")
    return float(area), float(dice)


def _predictor(model, training: bool):
    def predict(images: np.ndarray) -> np.ndarray:
        out = model(images, training=training)
        return np.asarray(out["seg"] if isinstance(out, dict) else out)
    return predict


def inference_check(net, model_name: str, records: Sequence[Record], work_size: int,
                    batch_size: int = 8) -> pd.DataFrame:
    """The four ways of predicting ``records`` (see the module), scored at ``work_size``.
    Moving statistics are scored first: a training-mode call updates them."""
    from mtunet.data.preprocess import fit_square, fundus_bbox, load_rgb
    from mtunet.evaluate import model_at_size, oracle_probabilities
    from mtunet.tiling import tiled_predictor

    images, truths = [], []
    for record in records:
        image = load_rgb(record.image_path)
        box = fundus_bbox(image)
        images.append(fit_square(image, work_size, box).astype(np.float32))
        truths.append(oracle_probabilities(record, work_size, image=image, bbox=box).argmax(-1))
    x, truth = np.stack(images), np.stack(truths)
    tile = int(net.input_shape[1])
    whole = model_at_size(net, work_size, name=model_name)
    rows = []
    for batch_norm, training in (("moving", False), ("batch", True)):
        for inference in ("whole", "tiles"):
            if inference == "whole":
                predict = _predictor(whole, training)
                probs = np.concatenate([predict(x[i:i + batch_size])
                                        for i in range(0, len(x), batch_size)])
            else:
                probs = tiled_predictor(_predictor(net, training), tile, 0.0, batch_size)(x)
            pred = probs.argmax(-1)
            (red_area, red_dice), (yellow_area, yellow_dice) = (
                _overlap(pred, truth, RED), _overlap(pred, truth, YELLOW))
            rows.append([inference, batch_norm, red_area, yellow_area, 100 * red_dice,
                         100 * yellow_dice])
    return pd.DataFrame(rows, columns=COLUMNS)
