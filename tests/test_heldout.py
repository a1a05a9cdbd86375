"""Training length chosen on held-out training images: the rule, early stopping, the kept weights,
and a killed run that continues with the same choice."""
from __future__ import annotations

import json
import math

import keras
import numpy as np
import pandas as pd
import pytest

from mtunet.data import read_segmentation
from mtunet.data.pipeline import FundusSequence
from mtunet.heldout import (HeldOutSelection, band_distance, grade_rank, is_sane, lesion_rank,
                            lesion_scorer)
from mtunet.models.registry import build_model
from mtunet.train import TrainConfig, fit

STEPS = 2          # batches per epoch: 4 records, batch 2


def seg(red, yellow, red_area=1.0, yellow_area=1.0):
    return {"red_dice": red, "yellow_dice": yellow, "red_area_ratio": red_area,
            "yellow_area_ratio": yellow_area}


def test_band_distance():
    assert band_distance(1.0) == 0.0 and band_distance(0.5) == 0.0 and band_distance(2.0) == 0.0
    assert band_distance(4.0) == pytest.approx(math.log(2))
    assert band_distance(0.25) == pytest.approx(math.log(2))
    assert band_distance(0.0) == math.inf and band_distance(float("nan")) == math.inf


def test_a_sane_epoch_beats_a_flood_with_a_higher_dice():
    sane, flood = seg(0.20, 0.50), seg(0.40, 0.60, red_area=3.5)
    assert lesion_rank(sane) > lesion_rank(flood)
    assert lesion_rank(seg(0.30, 0.50)) > lesion_rank(sane)            # both sane: Dice decides
    nearer, further = seg(0.1, 0.1, red_area=2.5), seg(0.5, 0.5, red_area=5.0)
    assert lesion_rank(nearer) > lesion_rank(further)                   # both out: the nearer
    collapse = seg(0.0, 0.5, red_area=0.0)
    assert lesion_rank(further) > lesion_rank(collapse)
    assert grade_rank({"mean_auc": 0.7}) > grade_rank({"mean_auc": 0.6}) > grade_rank(
        {"mean_auc": float("nan")})


@pytest.fixture(scope="module")
def seg_records(synthetic_root):
    return [r for r in read_segmentation(synthetic_root / "IDRiD") if r.split == "train"][:4]


def scripted(by_epoch):
    """A scorer whose result depends only on how many epochs the model has trained (its
    optimiser's step count), so a resumed run sees what an uninterrupted one saw. `by_epoch`
    holds a Dice (sane areas) or a whole score dict per epoch."""
    def score(model):
        epoch = int(keras.ops.convert_to_numpy(model.optimizer.iterations)) // STEPS - 1
        value = by_epoch[epoch]
        return value if isinstance(value, dict) else seg(value, value)
    return score


class WeightsPerEpoch(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.weights = {}

    def on_epoch_end(self, epoch, logs=None):
        self.weights[epoch] = [np.array(w) for w in self.model.get_weights()]


class KillAfter(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt("simulated kill")


def _fit(records, root, run_id, dice, epochs, patience, callbacks=None):
    data = FundusSequence(records, 32, batch_size=2, outputs=("seg",), seed=0)
    config = TrainConfig(epochs=epochs, learning_rate=1e-3, seed=0, verbose=0)
    selection = HeldOutSelection(scripted(dice), lesion_rank, patience, rule="lesions", n_images=3)
    return fit(lambda: build_model("unet", (32, 32, 3)), data, config, run_id, runs_root=root,
               describe={"model": "unet", "input_shape": [32, 32, 3]}, callbacks=callbacks,
               selection=selection)


@pytest.mark.backend
def test_the_run_stops_after_its_patience_and_keeps_the_best_epoch(seg_records, tmp_path):
    dice = [0.1, 0.3, 0.2, 0.25, 0.9, 0.9]       # best: epoch 2 (index 1); patience 2 ends it at 4
    seen = WeightsPerEpoch()
    result = _fit(seg_records, tmp_path, "r", dice, epochs=6, patience=2, callbacks=[seen])
    assert sorted(seen.weights) == [0, 1, 2, 3] and result.epochs_done == 4
    for kept, best in zip(result.model.get_weights(), seen.weights[1]):
        np.testing.assert_array_equal(kept, best)
    info = json.loads((tmp_path / "r" / "run.json").read_text())["heldout"]
    assert (info["epochs_run"], info["best_epoch"], info["cap_hit"]) == (4, 2, False)
    assert info["best"]["red_dice"] == 0.3 and info["images"] == 3 and info["cap"] == 6
    history = pd.read_csv(tmp_path / "r" / "history.csv")
    assert history["heldout_red_dice"].tolist() == dice[:4]
    assert not list((tmp_path / "r").glob("heldout-best-*.npz"))      # final.npz holds them now
    from mtunet.train import load_run
    np.testing.assert_array_equal(load_run(tmp_path / "r").get_weights()[0], seen.weights[1][0])


@pytest.mark.backend
def test_a_run_without_a_better_epoch_runs_to_its_cap(seg_records, tmp_path):
    result = _fit(seg_records, tmp_path, "c", [0.1, 0.2, 0.3], epochs=3, patience=2)
    info = json.loads((tmp_path / "c" / "run.json").read_text())["heldout"]
    assert result.epochs_done == 3 and info["best_epoch"] == 3 and info["cap_hit"] is True


@pytest.mark.backend
def test_patience_waits_for_a_sane_epoch(seg_records, tmp_path):
    scores = [seg(0.0, 0.2, red_area=0.29),     # a near-empty start, nearer the band than
              seg(0.08, 0.2, red_area=13.4),    # the floods of a network that is learning
              seg(0.10, 0.2, red_area=5.0),
              seg(0.30, 0.4, red_area=1.2),     # first sane epoch: patience runs from here
              seg(0.35, 0.4), seg(0.2, 0.3), seg(0.9, 0.9)]
    result = _fit(seg_records, tmp_path, "w", scores, epochs=7, patience=1)
    info = json.loads((tmp_path / "w" / "run.json").read_text())["heldout"]
    assert result.epochs_done == 6 and info["best_epoch"] == 5 and info["cap_hit"] is False
    assert info["best"]["red_dice"] == 0.35


@pytest.mark.backend
def test_a_run_never_sane_trains_to_its_cap_and_keeps_the_nearest_epoch(seg_records, tmp_path):
    scores = [seg(0.0, 0.2, red_area=0.29), seg(0.1, 0.2, red_area=13.4),
              seg(0.2, 0.3, red_area=2.4)]
    result = _fit(seg_records, tmp_path, "n", scores, epochs=3, patience=1)
    info = json.loads((tmp_path / "n" / "run.json").read_text())["heldout"]
    assert result.epochs_done == 3 and info["cap_hit"] is True and info["best_epoch"] == 3


def test_is_sane_reads_the_first_element_of_either_rank():
    assert is_sane(lesion_rank(seg(0.1, 0.1)))
    assert not is_sane(lesion_rank(seg(0.5, 0.5, red_area=3)))
    assert is_sane(grade_rank({"mean_auc": 0.5}))
    assert not is_sane(grade_rank({"mean_auc": float("nan")}))


@pytest.mark.backend
def test_a_killed_run_continues_with_the_same_choice(seg_records, tmp_path):
    dice = [0.1, 0.5, 0.2, 0.3, 0.1]
    reference = _fit(seg_records, tmp_path, "ref", dice, epochs=5, patience=2)
    with pytest.raises(KeyboardInterrupt):
        _fit(seg_records, tmp_path, "k", dice, epochs=5, patience=2, callbacks=[KillAfter(2)])
    assert (tmp_path / "k" / "heldout-best-e002.npz").exists()      # the best so far, on disk
    assert len(list((tmp_path / "k").glob("heldout-best-*.npz"))) == 1
    resumed = _fit(seg_records, tmp_path, "k", dice, epochs=5, patience=2)
    assert resumed.resumed_from_epoch == 3 and resumed.epochs_done == 4
    for a, b in zip(resumed.model.get_weights(), reference.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    run = json.loads((tmp_path / "k" / "run.json").read_text())["heldout"]
    ref = json.loads((tmp_path / "ref" / "run.json").read_text())["heldout"]
    assert run["scores"] == ref["scores"] and run["best_epoch"] == ref["best_epoch"] == 2


@pytest.mark.backend
def test_lesion_scorer_scores_the_held_out_images_at_their_own_size(seg_records):
    model = build_model("unet", (32, 32, 3))
    scores = lesion_scorer(seg_records[:2], work_size=64, model_name="unet")(model)
    assert set(scores) == {"red_dice", "yellow_dice", "red_area_ratio", "yellow_area_ratio"}
    assert all(0.0 <= scores[k] <= 1.0 for k in ("red_dice", "yellow_dice"))
    assert all(scores[k] >= 0.0 for k in ("red_area_ratio", "yellow_area_ratio"))


def test_bad_patience_is_an_error():
    from mtunet.errors import UserError

    with pytest.raises(UserError, match="patience"):
        HeldOutSelection(lambda m: {}, lesion_rank, -1, rule="lesions")
