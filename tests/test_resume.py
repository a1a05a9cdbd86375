"""Exact resume: a run killed anywhere and started again ends with the uninterrupted run's weights.

Kill points: mid-epoch, exactly at an epoch boundary (after the checkpoint, before the next epoch),
after the last epoch but before final.npz, twice in a row, during a checkpoint write, between two
fit() steps (variant B's shape), a real SIGKILL of a training subprocess; plus a truncated
checkpoint (set aside, restart from scratch), a checkpoint of another model/config (clear error)
and a model passed already built (a restart starts from its first initialisation).
Weights are compared with np.array_equal: bit for bit on CPU (TensorFlow with op determinism, JAX).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from mtunet.data import read_segmentation
from mtunet.data.augment import Augmentation
from mtunet.data.pipeline import FundusSequence
from mtunet.train import CHECKPOINT, TrainConfig, fit, visible_accelerators

pytestmark = pytest.mark.resume

EPOCHS = 3
# bit for bit on CPU; on an accelerator a resumed run is only marked "resume_exact": false
exact_backend = keras.backend.backend() in ("tensorflow", "jax") and visible_accelerators() == 0
needs_exact = pytest.mark.skipif(not exact_backend,
                                 reason="bit-exact resume is established on CPU (TensorFlow, JAX)")


class Killed(Exception):
    """Stands for a kill: raised by a callback at a chosen point."""


class KillAt(keras.callbacks.Callback):
    """Raise at a global step (after that many train batches), or at an epoch's begin/end, or at
    the end of training (after the last epoch, before final.npz)."""

    def __init__(self, step=None, epoch_end=None, epoch_begin=None, train_end=False):
        super().__init__()
        self.step, self.epoch_end, self.epoch_begin = step, epoch_end, epoch_begin
        self.train_end = train_end
        self.seen = 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.step is not None and self.seen == self.step:
            raise Killed(f"step {self.seen}")

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch_end:
            raise Killed(f"end of epoch {epoch}")

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch_begin:
            raise Killed(f"begin of epoch {epoch}")

    def on_train_end(self, logs=None):
        if self.train_end:
            raise Killed("after the last epoch")


def tiny_model():
    """Conv + BatchNorm (non-trainable statistics) + Dropout (a seed-generator state)."""
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Dropout(0.3)(x)
    seg = keras.layers.Conv2D(5, 1, activation="softmax", name="seg")(x)
    return keras.Model(inputs, {"seg": seg}, name="tiny")


def records_of(data_root):
    return [r for r in read_segmentation(data_root / "IDRiD") if r.split == "train"]


@pytest.fixture(scope="module")
def records(synthetic_root):
    return records_of(synthetic_root)


def sequence(records, n=6, shuffle=True):
    return FundusSequence(records[:n], 32, batch_size=2, outputs=("seg",),
                          augmentation=Augmentation() if shuffle else None, shuffle=shuffle, seed=3)


def run(records, root, run_id, model=tiny_model, callbacks=None, epochs=EPOCHS, val=True, lr=0.3,
        steps_per_epoch=None):
    """A 3-epoch run, 3 batches an epoch (Keras shuffles them with Python's `random`). lr 0.3 makes
    epoch 2's val_loss worse than an earlier one, so a run resumed at epoch 2 that forgot the best
    so far would overwrite best.weights.h5 with it."""
    config = TrainConfig(epochs=epochs, learning_rate=lr, seed=1, verbose=0,
                         steps_per_epoch=steps_per_epoch)
    return fit(model, sequence(records), config, run_id, runs_root=root,
               val_data=sequence(records[6:], n=2, shuffle=False) if val else None,
               describe={"model": "tiny"}, callbacks=callbacks)


def weights(model):
    return [np.array(keras.ops.convert_to_numpy(v)) for v in model.variables]


def history(run_dir):
    return pd.read_csv(run_dir / "history.csv").drop(columns="epoch_seconds")


def best_weights(run_dir):
    import h5py

    out = []
    with h5py.File(run_dir / "best.weights.h5", "r") as f:
        f.visititems(lambda name, obj: out.append((name, obj[()])) if hasattr(obj, "shape") else None)
    return out


def same(a, b):
    """Bit for bit: every array of `a` equals its counterpart in `b`."""
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def assert_same_run(result, reference):
    assert same(weights(result.model), reference["weights"]), "weights differ from uninterrupted"
    frame = history(result.run_dir)
    assert frame["epoch"].tolist() == list(range(EPOCHS))          # each epoch once
    pd.testing.assert_frame_equal(frame, reference["history"], check_exact=True)
    bw = best_weights(result.run_dir)
    assert [n for n, _ in bw] == [n for n, _ in reference["best"]]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(bw, reference["best"]))
    assert not (result.run_dir / CHECKPOINT).exists()
    with np.load(result.run_dir / "final.npz") as z:
        saved = [z[f"arr_{i}"] for i in range(len(result.model.get_weights()))]
    assert same(saved, result.model.get_weights())


@pytest.fixture(scope="module")
def reference(records, tmp_path_factory):
    result = run(records, tmp_path_factory.mktemp("reference"), "ref")
    assert result.resume_exact is None and not result.resumed
    val_loss = result.history["val_loss"]
    assert val_loss[2] > min(val_loss[:2]), val_loss   # a run resumed at epoch 2 must keep the best
    return {"weights": weights(result.model), "history": history(result.run_dir),
            "best": best_weights(result.run_dir)}


KILLS = {
    "mid-epoch": [KillAt(step=4)],                          # epoch 1, after its first batch
    "epoch-end": [KillAt(epoch_end=0)],                     # right after epoch 0's checkpoint
    "epoch-begin": [KillAt(epoch_begin=2)],                 # between epochs 1 and 2
    "after-last-epoch": [KillAt(train_end=True)],           # all epochs done, no final.npz
    "twice": [KillAt(step=3), KillAt(step=5)],              # epoch 0's last batch; mid-epoch 1
}


@needs_exact
@pytest.mark.parametrize("kill", list(KILLS))
def test_resume_after_kill_equals_uninterrupted(kill, records, reference, tmp_path):
    for killer in KILLS[kill]:
        with pytest.raises(Killed):
            run(records, tmp_path, "r", callbacks=[killer])
        assert not (tmp_path / "r" / "final.npz").exists()
    result = run(records, tmp_path, "r")
    assert_same_run(result, reference)
    info = json.loads((tmp_path / "r" / "run.json").read_text())
    assert info["resumes"] and info["resume_exact"] is True
    last = info["resumes"][-1]
    assert last["from_epoch"] == result.resumed_from_epoch
    assert last["from_step"] == result.resumed_from_step
    assert result.resumed_from_step == 3 * result.resumed_from_epoch   # 3 batches per epoch
    if kill == "epoch-end":
        assert info["resumed"] and last == dict(last, event="resumed", from_epoch=1, from_step=3)
    if kill == "after-last-epoch":
        assert last["from_epoch"] == EPOCHS - 1                    # the last epoch trained again
    again = run(records, tmp_path, "r")                             # finished: loaded, not trained
    assert again.wall_time_s == 0.0 and again.resumed and again.resume_exact is True
    assert same(again.model.get_weights(), result.model.get_weights())


@needs_exact
def test_truncated_checkpoint_is_set_aside_and_the_run_restarts(records, reference, tmp_path):
    with pytest.raises(Killed):
        run(records, tmp_path, "c", callbacks=[KillAt(epoch_end=1)])
    path = tmp_path / "c" / CHECKPOINT
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])                        # a torn file
    with pytest.warns(UserWarning, match=r"checkpoint\.npz: unreadable checkpoint"):
        result = run(records, tmp_path, "c")
    assert result.resumed_from_epoch == 0                           # from scratch, same numbers
    assert_same_run(result, reference)
    (entry,) = json.loads((tmp_path / "c" / "run.json").read_text())["resumes"]
    assert entry["event"] == "restarted" and "corrupt" in entry["reason"] and entry["exact"]
    assert not (tmp_path / "c" / (CHECKPOINT + ".corrupt")).exists()   # dropped once finished


@needs_exact
def test_kill_while_writing_a_checkpoint_keeps_the_previous_one(records, reference, tmp_path,
                                                                monkeypatch):
    real_savez, calls = np.savez, []

    def savez_killed_midway(file, **arrays):
        calls.append(1)
        if len(calls) == 2:                                         # epoch 1's checkpoint
            file.write(b"PK\x03\x04 half a zip")
            raise Killed("during the checkpoint write")
        return real_savez(file, **arrays)

    monkeypatch.setattr(np, "savez", savez_killed_midway)
    with pytest.raises(Killed):
        run(records, tmp_path, "w")
    monkeypatch.setattr(np, "savez", real_savez)
    torn = tmp_path / "w" / (CHECKPOINT + ".tmp")
    torn.write_bytes(b"PK\x03\x04 half a zip")                   # what a SIGKILL leaves behind ...
    result = run(records, tmp_path, "w")                            # ... is never read
    assert result.resumed_from_epoch == 1
    assert_same_run(result, reference)
    assert not (tmp_path / "w" / (CHECKPOINT + ".tmp")).exists()


def test_checkpoint_of_another_model_or_config_is_an_error(records, tmp_path):
    from mtunet.errors import UserError

    with pytest.raises(Killed):
        run(records, tmp_path, "x", callbacks=[KillAt(epoch_end=0)], val=False, epochs=2)
    assert (tmp_path / "x" / CHECKPOINT).exists()

    def wider():
        inputs = keras.Input((32, 32, 3))
        seg = keras.layers.Conv2D(5, 3, padding="same", activation="softmax", name="seg")(inputs)
        return keras.Model(inputs, {"seg": seg})

    with pytest.raises(UserError, match=r"checkpoint\.npz: this checkpoint does not belong"):
        run(records, tmp_path, "x", model=wider, val=False, epochs=2)
    with pytest.raises(UserError, match="learning_rate"):
        run(records, tmp_path, "x", val=False, epochs=2, lr=1e-3)
    assert (tmp_path / "x" / CHECKPOINT).exists()                   # left for the user to decide


@needs_exact
def test_prebuilt_model_restarts_from_its_first_initialisation(records, tmp_path):
    keras.utils.set_random_seed(7)
    first = tiny_model()
    keras.utils.set_random_seed(7)
    reference = run(records, tmp_path, "pre-ref", model=tiny_model(), val=False, epochs=2)
    with pytest.raises(Killed):                                     # killed before any checkpoint
        run(records, tmp_path, "pre", model=first, callbacks=[KillAt(step=1)], val=False, epochs=2)
    assert (tmp_path / "pre" / "init.npz").exists()
    keras.utils.set_random_seed(99)                                 # the caller's RNG moved on
    result = run(records, tmp_path, "pre", model=tiny_model(), val=False, epochs=2)
    assert same(weights(result.model), weights(reference.model))
    (entry,) = result.resumes
    assert entry["event"] == "restarted" and entry["exact"] and not result.resumed
    assert not (tmp_path / "pre" / "init.npz").exists()


def two_steps(records, root, kill_between=False):
    """Variant B's shape: step 1 trains a model; step 2 trains a head built on the frozen step-1
    model after step 1's fit returned (trained, or loaded on a rerun)."""
    keras.utils.set_random_seed(5)                                  # the run layer seeds the build
    segmenter = tiny_model()
    run(records, root, "vb/step1", model=segmenter, val=False, epochs=2)
    if kill_between:
        raise Killed("between the two steps")
    segmenter.trainable = False
    inputs = keras.Input((32, 32, 3))
    mask = segmenter(inputs)["seg"]        # its Dropout still draws: its seed state matters
    x = keras.layers.Concatenate()([keras.layers.Rescaling(1 / 255)(inputs), mask])
    seg = keras.layers.Conv2D(5, 3, padding="same", activation="softmax", name="seg")(x)
    head = keras.Model(inputs, {"seg": seg})
    return run(records, root, "vb/step2", model=head, val=False, epochs=2)


@needs_exact
def test_kill_between_two_fit_steps_resumes_exactly(records, tmp_path):
    a = two_steps(records, tmp_path / "a")
    with pytest.raises(Killed):
        two_steps(records, tmp_path / "b", kill_between=True)
    b = two_steps(records, tmp_path / "b")        # step 1 loaded from final.npz, step 2 trained
    assert same(weights(a.model), weights(b.model))


@needs_exact
def test_registry_model_with_fundus_sequence_resumes_exactly(records, tmp_path):
    from mtunet.models.registry import build_model

    def unet():
        return build_model("unet", (32, 32, 3), encoder_weights=None)

    # eager: a third faster here than tracing the UNet three times (graph mode: the tests above)
    config = TrainConfig(epochs=2, learning_rate=1e-3, seed=0, verbose=0, run_eagerly=True)
    a = fit(unet, sequence(records), config, "a", runs_root=tmp_path, describe={"model": "unet"})
    with pytest.raises(Killed):
        fit(unet, sequence(records), config, "b", runs_root=tmp_path, describe={"model": "unet"},
            callbacks=[KillAt(step=4)])
    b = fit(unet, sequence(records), config, "b", runs_root=tmp_path, describe={"model": "unet"})
    assert b.resumed_from_epoch == 1 and b.resume_exact is True
    assert same(weights(a.model), weights(b.model))
    pd.testing.assert_frame_equal(history(a.run_dir), history(b.run_dir), check_exact=True)


@needs_exact
def test_steps_per_epoch_run_resumes_exactly(records, tmp_path):
    """steps_per_epoch < len(sequence): each epoch takes the first batches of its own order."""
    a = run(records, tmp_path, "s-ref", val=False, steps_per_epoch=2)
    with pytest.raises(Killed):
        run(records, tmp_path, "s", val=False, steps_per_epoch=2, callbacks=[KillAt(step=3)])
    b = run(records, tmp_path, "s", val=False, steps_per_epoch=2)
    assert b.resumed_from_epoch == 1 and b.resumed_from_step == 2
    assert same(weights(a.model), weights(b.model))


CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import keras
    sys.path.insert(0, {tests!r})
    from test_resume import run, records_of

    class Slow(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            time.sleep(0.15)

    run(records_of(Path({data!r})), Path({root!r}), "k", callbacks=[Slow()])
""")


@needs_exact
def test_sigkilled_subprocess_resumes_exactly(records, reference, synthetic_root, tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(tests=str(Path(__file__).parent), data=str(synthetic_root),
                                   root=str(tmp_path)))
    log = tmp_path / "child.log"
    with open(log, "wb") as out:                                    # a file: a pipe could fill up
        child = subprocess.Popen([sys.executable, str(script)], env=dict(os.environ),
                                 stdout=out, stderr=subprocess.STDOUT)
    checkpoint = tmp_path / "k" / CHECKPOINT
    deadline = time.monotonic() + 120
    try:
        while not checkpoint.exists():                              # epoch 0 finished
            assert child.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.05)
        time.sleep(0.2)                                             # into epoch 1
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert not (tmp_path / "k" / "final.npz").exists()
    result = run(records, tmp_path, "k")
    assert result.resumed and result.resumed_from_epoch >= 1
    assert_same_run(result, reference)
