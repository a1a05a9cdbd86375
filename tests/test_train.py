"""Training: resume continues a killed run, the same run gives the same numbers twice."""
from __future__ import annotations

import json

import keras
import numpy as np
import pandas as pd
import pytest

from mtunet.data import read_segmentation
from mtunet.data.pipeline import FundusSequence
from mtunet.models.registry import build_model
from mtunet.train import TrainConfig, fit, load_run


@pytest.fixture(scope="module")
def seg_records(synthetic_root):
    return [r for r in read_segmentation(synthetic_root / "IDRiD") if r.split == "train"][:4]


class KillAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise KeyboardInterrupt("simulated kill")


def _fit(records, tmp_path, run_id, epochs, seed=0, callbacks=None):
    data = FundusSequence(records, 32, batch_size=2, outputs=("seg",), seed=seed)
    config = TrainConfig(epochs=epochs, learning_rate=1e-3, seed=seed, verbose=0)
    return fit(lambda: build_model("unet", (32, 32, 3)), data, config, run_id,
               runs_root=tmp_path, describe={"model": "unet", "input_shape": [32, 32, 3]},
               callbacks=callbacks)


@pytest.mark.backend
def test_killed_run_resumes_from_its_last_epoch(seg_records, tmp_path):
    with pytest.raises(KeyboardInterrupt):                    # killed after epoch 1 of 2
        _fit(seg_records, tmp_path, "r", epochs=2, callbacks=[KillAfterFirstEpoch()])
    assert not (tmp_path / "r" / "final.npz").exists()
    second = _fit(seg_records, tmp_path, "r", epochs=2)       # started again, same run id
    assert second.resumed_from_epoch == 1                     # continued, not restarted
    history = pd.read_csv(tmp_path / "r" / "history.csv")
    assert history["epoch"].tolist() == [0, 1]
    run = json.loads((tmp_path / "r" / "run.json").read_text())
    assert run["model"] == "unet" and run["config"]["epochs"] == 2
    assert (tmp_path / "r" / "final.npz").exists() and (tmp_path / "r" / "manifest.json").exists()
    assert not (tmp_path / "r" / "checkpoint.npz").exists()   # resume state dropped once finished
    assert not (tmp_path / "r" / "backup").exists()
    assert run["resumed"] and run["resume_exact"] is True     # the record says it was resumed
    third = _fit(seg_records, tmp_path, "r", epochs=2)        # finished: loaded, not retrained
    assert third.wall_time_s == 0.0 and third.epochs_done == 2
    for a, b in zip(second.model.get_weights(), third.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    rebuilt = load_run(tmp_path / "r")
    np.testing.assert_array_equal(rebuilt.get_weights()[0], second.model.get_weights()[0])


def test_same_run_same_numbers(seg_records, tmp_path):
    a = _fit(seg_records, tmp_path, "a", epochs=1)
    b = _fit(seg_records, tmp_path, "b", epochs=1)
    assert np.isfinite(a.history["loss"][0])
    assert a.history["loss"] == pytest.approx(b.history["loss"], rel=1e-5)
    for wa, wb in zip(a.model.get_weights(), b.model.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-6)


def test_manifest_records_what_was_run(seg_records, tmp_path):
    _fit(seg_records, tmp_path, "m", epochs=1)
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["parameters"]["encoder_init"] == "random"
    assert manifest["environment"]["keras_backend"]
    assert "commit" in manifest["git"] and manifest["wall_time_s"] > 0


class _RecordingBatches(keras.utils.PyDataset):
    """3 fixed batches; remembers the order in which training asked for them."""

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(0)
        self.x = rng.uniform(0, 255, (3, 2, 8, 8, 3)).astype("float32")
        self.y = np.eye(5, dtype="float32")[rng.integers(0, 5, (3, 2, 8, 8))]
        self.asked: list[int] = []

    def __len__(self):
        return 3

    def __getitem__(self, i):
        self.asked.append(int(i))
        return self.x[i], {"seg": self.y[i]}


@pytest.mark.backend
def test_batches_are_read_in_the_sequence_own_order(tmp_path):
    """The sequence alone orders its batches (seeded per epoch): Keras does not permute them again
    with Python's global RNG, whose state depends on whatever else drew from it meanwhile."""
    def build():
        x = keras.Input((8, 8, 3))
        return keras.Model(x, {"seg": keras.layers.Conv2D(5, 1, activation="softmax", name="seg")(x)})

    data = _RecordingBatches()
    fit(build, data, TrainConfig(epochs=6, learning_rate=1e-3, seed=0, verbose=0, seg_loss="bce"),
        "order", runs_root=tmp_path, describe={"input_shape": [8, 8, 3]})
    # the first reads are Keras' look at the batch shapes; the rest are the 6 epochs, in order
    assert data.asked[-18:] == [0, 1, 2] * 6
