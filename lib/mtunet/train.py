"""Training: Adam, Keras progress bar, CSV log, checkpoints, resume, seeds, devices.

The paper trains every network with Adam at an initial learning rate of 1e-5 for 50 epochs on
512 x 512 inputs (4 x V100). `fit` is the one place that does this for every model of the
study, so every run is logged, checkpointed and resumable in the same way:

    runs/<run_id>/
        run.json            what was trained (model name, input size, config): enough to rebuild it
        history.csv         one row per epoch (keras CSVLogger, appended on resume)
        backup/             keras BackupAndRestore state (weights + optimizer + epoch) while the
                            run is unfinished: a killed run resumes from its last finished epoch
        best.weights.h5     the best epoch by `monitor` (only with validation data)
        final.npz           the trained weights (model variables only: a third of a checkpoint
                            with the optimizer); `load_run` rebuilds the model from run.json
        manifest.json       commit, backend, versions, seeds, data fingerprints, encoder init, wall time

Resume: start `fit` again with the same run id and it continues from the last finished epoch
(BackupAndRestore). A run whose final.npz exists is loaded, not trained again.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import time
from pathlib import Path
from typing import Any, Callable

import keras
import numpy as np

from mtunet.config import runs_dir
from mtunet.errors import UserError


@dataclasses.dataclass
class TrainConfig:
    """Hyper-parameters of one training run (defaults are the paper's where it gives them)."""

    epochs: int = 50
    learning_rate: float = 1e-5          # paper: Adam, initial learning rate 1e-5
    alpha: float = 1.0                   # Eq. 3: L = L_B + alpha * L_C
    seg_loss: str = "bce"                # "bce" (paper) | "dice" | "generalized_dice"
    seed: int = 0
    steps_per_epoch: int | None = None   # None: one pass over the training sequence
    monitor: str = "val_loss"            # falls back to "loss" without validation data
    jit_compile: bool | str = False      # XLA; "auto" lets Keras decide (off on CPU)
    run_eagerly: bool = False            # skip graph tracing: faster for runs of a few steps
    mixed_precision: bool = False        # "mixed_bfloat16" policy (GPU/TPU)
    deterministic: bool = True           # TensorFlow op determinism (CPU: same numbers twice)
    verbose: int | str = "auto"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class FitResult:
    model: keras.Model
    run_dir: Path
    history: dict[str, list[float]]
    epochs_done: int
    resumed_from_epoch: int
    wall_time_s: float


def set_seeds(seed: int, deterministic: bool = True) -> None:
    """Seed Python, numpy and the backend; on TensorFlow also ask for deterministic ops."""
    keras.utils.set_random_seed(seed)
    if deterministic and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        try:
            tf.config.experimental.enable_op_determinism()
        except Exception:  # pragma: no cover - older TF
            pass


def set_precision(mixed_precision: bool) -> str:
    """Set the global dtype policy before a model is built; returns the policy name."""
    policy = "mixed_bfloat16" if mixed_precision else "float32"
    keras.mixed_precision.set_global_policy(policy)
    return policy


def visible_accelerators() -> int:
    """Number of GPUs/TPUs the current backend sees (0 on CPU)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return len(tf.config.list_logical_devices("GPU"))
    if backend == "jax":
        import jax

        return len([d for d in jax.devices() if d.platform != "cpu"])
    return 0


@contextlib.contextmanager
def distribution_scope():
    """Data parallelism across every visible accelerator, chosen automatically.

    TensorFlow: `tf.distribute.MirroredStrategy`; JAX: `keras.distribution.DataParallel`.
    With one device (or none) this is a no-op. Build and compile the model inside it.
    """
    n = visible_accelerators()
    backend = keras.backend.backend()
    if n <= 1:
        yield "single-device"
    elif backend == "tensorflow":
        import tensorflow as tf

        with tf.distribute.MirroredStrategy().scope():
            yield f"MirroredStrategy({n})"
    elif backend == "jax":
        previous = keras.distribution.distribution()
        keras.distribution.set_distribution(keras.distribution.DataParallel())
        try:
            yield f"DataParallel({n})"
        finally:
            keras.distribution.set_distribution(previous)
    else:  # pragma: no cover
        yield "single-device"


def compile_model(model: keras.Model, config: TrainConfig) -> keras.Model:
    """Compile with Adam and the losses of the tasks the model has (Eq. 1-3)."""
    from mtunet.losses import DiceCoefficient, multitask_loss

    losses, loss_weights = multitask_loss(alpha=config.alpha, seg_loss=config.seg_loss)
    tasks = list(model.output_names) if hasattr(model, "output_names") else list(model.output.keys())
    unknown = [t for t in tasks if t not in losses]
    if unknown:
        raise UserError(f"model {model.name!r} has outputs {unknown} that no loss is defined for")
    metrics: dict[str, list] = {}
    if "seg" in tasks:
        metrics["seg"] = [DiceCoefficient(class_indexes=(1, 2), name="red_dice"),
                          DiceCoefficient(class_indexes=(3, 4), name="yellow_dice")]
    if "grade" in tasks:
        metrics["grade"] = [keras.metrics.CategoricalAccuracy(name="acc")]
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
        loss={t: losses[t] for t in tasks},
        loss_weights={t: loss_weights[t] for t in tasks},
        metrics=metrics,
        jit_compile=config.jit_compile,
        run_eagerly=config.run_eagerly,
    )
    return model


def run_directory(run_id: str, root: Path | None = None) -> Path:
    return Path(root or runs_dir()) / run_id


def _epochs_in_backup(backup_dir: Path) -> int:
    """Epochs finished according to BackupAndRestore's metadata (0 when there is none)."""
    meta = backup_dir / "training_metadata.json"
    if not meta.exists():
        return 0
    try:
        return int(json.loads(meta.read_text())["epoch"])
    except (ValueError, KeyError, json.JSONDecodeError):
        return 0


def _history_from_csv(path: Path) -> dict[str, list[float]]:
    if not path.exists() or path.stat().st_size == 0:
        return {}
    import pandas as pd

    frame = pd.read_csv(path)
    return {c: frame[c].tolist() for c in frame.columns if c != "epoch"}


FINAL_WEIGHTS = "final.npz"


def save_final_weights(model: keras.Model, run_dir: Path) -> Path:
    """The model's variables (no optimizer state), written atomically."""
    path = Path(run_dir) / FINAL_WEIGHTS
    tmp = path.with_name("final.tmp.npz")
    np.savez(tmp, *[np.asarray(w) for w in model.get_weights()])
    tmp.replace(path)
    return path


def load_final_weights(model: keras.Model, run_dir: Path) -> keras.Model:
    with np.load(Path(run_dir) / FINAL_WEIGHTS) as data:
        model.set_weights([data[f"arr_{i}"] for i in range(len(data.files))])
    return model


def load_run(run_dir: Path) -> keras.Model:
    """Rebuild a finished run's model from run.json (registry name, input shape) and its weights."""
    from mtunet.models.registry import MODELS, build_model

    run_dir = Path(run_dir)
    info_path = run_dir / "run.json"
    if not info_path.exists():
        raise UserError(f"{run_dir}: not a training run (no run.json)")
    if not (run_dir / FINAL_WEIGHTS).exists():
        raise UserError(f"{run_dir / FINAL_WEIGHTS}: missing; the run has not finished "
                        "(start it again with the same run id to resume it)")
    info = json.loads(info_path.read_text())
    if info.get("model") not in MODELS:
        raise UserError(f"{info_path}: model {info.get('model')!r} cannot be rebuilt by name "
                        f"(known: {', '.join(MODELS)})")
    model = build_model(info["model"], tuple(info["input_shape"]),
                        n_seg_classes=info.get("n_seg_classes", 5), encoder_weights=None)
    return load_final_weights(model, run_dir)


class EpochTimer(keras.callbacks.Callback):
    """Adds `epoch_seconds` to the epoch logs (placed before CSVLogger, so history.csv has it):
    throughput figures need the steady-state epochs apart from the first, which compiles."""

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self._started


def _callbacks(run_dir: Path, monitor: str, has_val: bool,
               epochs: int) -> list[keras.callbacks.Callback]:
    callbacks: list[keras.callbacks.Callback] = [
        EpochTimer(), keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True)]
    if epochs > 1:  # a one-epoch run has nothing to resume from; skip writing the backup
        callbacks.insert(0, keras.callbacks.BackupAndRestore(
            str(run_dir / "backup"), save_freq="epoch", delete_checkpoint=True))
    if has_val:
        callbacks.append(keras.callbacks.ModelCheckpoint(
            str(run_dir / "best.weights.h5"), monitor=monitor, save_best_only=True,
            save_weights_only=True, mode="min"))
    if keras.backend.backend() == "tensorflow" and importlib.util.find_spec("tensorboard"):
        callbacks.append(keras.callbacks.TensorBoard(str(run_dir / "tensorboard"),
                                                     write_graph=False, profile_batch=0))
    return callbacks


def fit(
    model: keras.Model | Callable[[], keras.Model],
    train_data: keras.utils.PyDataset,
    config: TrainConfig,
    run_id: str,
    val_data: keras.utils.PyDataset | None = None,
    runs_root: Path | None = None,
    describe: dict[str, Any] | None = None,
    callbacks: list[keras.callbacks.Callback] | None = None,
) -> FitResult:
    """Train `model` (or the model a zero-argument builder returns) and checkpoint every epoch.

    Pass a builder to get automatic multi-device data parallelism and mixed precision: both must
    be in place before the layers are created. `describe` (model name, input shape, data
    fingerprints ...) is written to run.json and the manifest, so the run can be rebuilt.
    Starting again with the same `run_id` resumes from the last finished epoch.
    """
    from mtunet.manifest import write_manifest

    run_dir = run_directory(run_id, runs_root)
    run_dir.mkdir(parents=True, exist_ok=True)
    set_seeds(config.seed, config.deterministic)
    policy = set_precision(config.mixed_precision)
    started = time.time()
    try:
        with distribution_scope() as devices:
            built = model() if callable(model) and not isinstance(model, keras.Model) else model
            compile_model(built, config)
    finally:
        if config.mixed_precision:
            keras.mixed_precision.set_global_policy("float32")

    info = dict(describe or {})
    info.update(run_id=run_id, model=info.get("model", built.name), config=config.to_dict(),
                encoder_init=getattr(built, "encoder_init", "random"), dtype_policy=policy,
                devices=devices, n_params=int(built.count_params()))
    (run_dir / "run.json").write_text(json.dumps(info, indent=2, default=str))

    if (run_dir / FINAL_WEIGHTS).exists():
        load_final_weights(built, run_dir)
        return FitResult(built, run_dir, _history_from_csv(run_dir / "history.csv"),
                         config.epochs, config.epochs, 0.0)
    done = _epochs_in_backup(run_dir / "backup")
    if done and hasattr(train_data, "set_epoch"):
        train_data.set_epoch(done)  # the same shuffles/augmentations as an uninterrupted run

    has_val = val_data is not None
    monitor = config.monitor if has_val else config.monitor.removeprefix("val_")
    built.fit(
        train_data,
        validation_data=val_data,
        epochs=config.epochs,
        steps_per_epoch=config.steps_per_epoch,
        callbacks=_callbacks(run_dir, monitor, has_val, config.epochs) + list(callbacks or []),
        verbose=config.verbose,
    )
    wall = time.time() - started
    save_final_weights(built, run_dir)
    write_manifest(run_dir / "manifest.json", parameters=info, wall_time_s=wall)
    return FitResult(built, run_dir, _history_from_csv(run_dir / "history.csv"),
                     config.epochs, done, wall)
