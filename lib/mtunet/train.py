"""Training: Adam, Keras progress bar, CSV log, checkpoints, exact resume, seeds, devices.

The paper trains every network with Adam at an initial learning rate of 1e-5 for 50 epochs on
512 x 512 inputs (4 x V100). `fit` is the one place that does this for every model of the
study, so every run is logged, checkpointed and resumable in the same way:

    runs/<run_id>/
        run.json            what was trained (model name, input size, config): enough to rebuild it;
                            plus whether it was resumed ("resumed", "resumes", "resume_exact")
        history.csv         one row per finished epoch (keras CSVLogger); never a row twice
        checkpoint.npz      while the run is unfinished: the state after the last finished epoch
                            (all model variables incl. RNG seed states, optimizer state and step,
                            epoch, history.csv rows, best-so-far, Python/numpy/keras RNG states)
        init.npz            while unfinished, only for a model passed already built: its initial
                            variables, so a restart from scratch starts from the same weights
        resume.jsonl        one line per start that found an unfinished earlier attempt
        best.weights.h5     the best epoch by `monitor` (only with validation data)
        final.npz           the trained weights and the layers' RNG seed states (no optimizer:
                            a third of a checkpoint); `load_run` rebuilds the model from run.json
        manifest.json       commit, backend, versions, seeds, data fingerprints, encoder init, wall time

Resume: start `fit` again with the same run id. It continues from the last finished epoch: a
partly trained epoch is discarded and trained again from the checkpoint of the epoch before, so
whatever the point of the kill (mid-epoch, at an epoch boundary, after the last epoch but before
final.npz) the finished run has the weights of an uninterrupted one, bit for bit on CPU (TensorFlow
with op determinism, and JAX: tests/test_resume.py). The checkpoint is written once per epoch
(not after the last one: final.npz is written instead), to a temporary file renamed into place,
so a kill while writing leaves the previous checkpoint; an unreadable one is set aside with a
warning (`checkpoint.npz.corrupt`) and the run restarts from scratch; one that does not fit the
model or the config raises a `UserError` naming it. Where exactness is not established (an
accelerator, another backend, data whose epoch state cannot be restored) the run record says
``"resume_exact": false``. A run whose final.npz exists is loaded, not trained again.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import json
import os
import random
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable

import keras
import numpy as np

from mtunet.config import runs_dir
from mtunet.errors import UserError
from mtunet.files import write_atomic


@dataclasses.dataclass
class TrainConfig:
    """Hyper-parameters of one training run (defaults are the paper's where it gives them)."""

    epochs: int = 50
    learning_rate: float = 1e-5          # paper: Adam, initial learning rate 1e-5
    lr_schedule: str = "constant"        # "constant" (paper) | "cosine": decays to 0 over the run
    alpha: float = 1.0                   # Eq. 3: L = L_B + alpha * L_C
    seg_loss: str = "bce"                # "bce" (paper) | "dice" | "generalized_dice"
    seed: int = 0
    steps_per_epoch: int | None = None   # None: one pass over the sequence; n: its first n batches
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
    resumed_from_epoch: int              # the epoch this call continued from (0: from scratch)
    wall_time_s: float
    resumed_from_step: int = 0           # optimizer steps already done when this call continued
    resumed: bool = False                # continued from a checkpoint, in this call or an earlier one
    resume_exact: bool | None = None     # None: never interrupted; False: may differ from an
                                         # uninterrupted run (see run.json "resumes")
    resumes: list[dict[str, Any]] = dataclasses.field(default_factory=list)


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


LR_SCHEDULES = ("constant", "cosine")


def learning_rate(config: TrainConfig, total_steps: int | None):
    """Adam's learning rate: constant (the paper), or cosine decay to 0 over the run's steps (a
    short CPU budget settles instead of oscillating between floods; DESIGN.md measured it)."""
    if config.lr_schedule not in LR_SCHEDULES:
        raise UserError(f"lr_schedule must be one of {LR_SCHEDULES}, not {config.lr_schedule!r}")
    if config.lr_schedule == "constant":
        return config.learning_rate
    if not total_steps:
        raise UserError("lr_schedule='cosine' needs the run's number of steps")
    return keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=int(total_steps))


def compile_model(model: keras.Model, config: TrainConfig, total_steps: int | None = None) -> keras.Model:
    """Compile with Adam and the losses of the tasks the model has (Eq. 1-3)."""
    from mtunet.losses import lesion_dice_metrics, multitask_loss

    losses, loss_weights = multitask_loss(alpha=config.alpha, seg_loss=config.seg_loss)
    tasks = list(model.output_names) if hasattr(model, "output_names") else list(model.output.keys())
    unknown = [t for t in tasks if t not in losses]
    if unknown:
        raise UserError(f"model {model.name!r} has outputs {unknown} that no loss is defined for")
    metrics: dict[str, list] = {}
    if "seg" in tasks:
        metrics["seg"] = lesion_dice_metrics()
    if "grade" in tasks:
        metrics["grade"] = [keras.metrics.CategoricalAccuracy(name="acc")]
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate(config, total_steps)),
        loss={t: losses[t] for t in tasks},
        loss_weights={t: loss_weights[t] for t in tasks},
        metrics=metrics,
        jit_compile=config.jit_compile,
        run_eagerly=config.run_eagerly,
    )
    return model


def run_directory(run_id: str, root: Path | None = None) -> Path:
    return Path(root or runs_dir()) / run_id


def _history_from_csv(path: Path) -> dict[str, list[float]]:
    if not path.exists() or path.stat().st_size == 0:
        return {}
    import pandas as pd

    frame = pd.read_csv(path)
    return {c: frame[c].tolist() for c in frame.columns if c != "epoch"}


FINAL_WEIGHTS = "final.npz"
CHECKPOINT = "checkpoint.npz"       # the resume state after the last finished epoch
INIT_WEIGHTS = "init.npz"           # initial variables of a model passed already built
RESUME_LOG = "resume.jsonl"         # one line per start that found an unfinished attempt
HISTORY = "history.csv"
LEGACY_BACKUP = "backup"            # keras BackupAndRestore folder of older versions
_CHECKPOINT_FORMAT = 1


# ---------------------------------------------------------------------------------------------
# Atomic files
# ---------------------------------------------------------------------------------------------
def _write_text_atomic(path: Path, text: str) -> Path:
    return write_atomic(path, lambda f: f.write(text.encode()))


def _savez_atomic(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    return write_atomic(path, lambda f: np.savez(f, **arrays))


def _state_variables(model: keras.Model) -> list:
    """Variables that are not weights: the layers' RNG seed states (Dropout ...). Not needed for
    inference, but a model continued after its run (variant B's frozen segmenter, whose Dropout
    still draws in step 2) must be the same whether its run was trained or loaded."""
    weights = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def save_final_weights(model: keras.Model, run_dir: Path) -> Path:
    """The model's weights (no optimizer state; ``arr_<i>`` in `get_weights` order) and its RNG
    seed states (``state_<i>``), written atomically."""
    arrays = {f"arr_{i}": np.asarray(w) for i, w in enumerate(model.get_weights())}
    arrays.update({f"state_{i}": a for i, a in enumerate(_values(_state_variables(model)))})
    return _savez_atomic(Path(run_dir) / FINAL_WEIGHTS, arrays)


def load_final_weights(model: keras.Model, run_dir: Path) -> keras.Model:
    path = Path(run_dir) / FINAL_WEIGHTS
    try:
        with np.load(path, allow_pickle=False) as data:
            n_weights = sum(1 for k in data.files if k.startswith("arr_"))
            n_states = sum(1 for k in data.files if k.startswith("state_"))
            weights = [data[f"arr_{i}"] for i in range(n_weights)]
            states = [data[f"state_{i}"] for i in range(n_states)]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise UserError(f"{path}: unreadable ({type(e).__name__}: {e}); delete it to train the "
                        "run again") from e
    model.set_weights(weights)
    variables = _state_variables(model)
    if [a.shape for a in states] == [tuple(v.shape) for v in variables]:  # else: older file
        _assign(variables, states)
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


# ---------------------------------------------------------------------------------------------
# The resume state: variables, optimizer, RNGs, epoch, history rows, best-so-far
# ---------------------------------------------------------------------------------------------
def _values(variables) -> list[np.ndarray]:
    return [np.asarray(keras.ops.convert_to_numpy(v)) for v in variables]


def _assign(variables, values) -> None:
    for variable, value in zip(variables, values):
        variable.assign(value)


def _fingerprint(values: list[np.ndarray]) -> str:
    """sha1 of variable values (dtype, shape and bytes), to tell whether two inits are the same."""
    h = hashlib.sha1()
    for a in values:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.reshape(-1).view(np.uint8))
    return h.hexdigest()[:16]


def _keras_global_seed_generator(create: bool = False):
    """Keras's global SeedGenerator (ops called without a seed draw from it), if there is one."""
    try:
        from keras.src.backend.common import global_state
        from keras.src.random import seed_generator

        sg = global_state.get_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR)
        if sg is None and create:
            sg = seed_generator.global_seed_generator()
        return sg
    except Exception:  # pragma: no cover - private API moved
        return None


def _rng_state() -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Python, numpy and keras global RNG states (JSON part, array part)."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    meta = {"python": [version, list(internal), gauss],
            "numpy": [name, int(pos), int(has_gauss), float(cached)]}
    arrays = {"rng_numpy": np.asarray(keys)}
    sg = _keras_global_seed_generator()
    if sg is not None:
        arrays["rng_keras_global"] = np.array(keras.ops.convert_to_numpy(sg.state))
    return meta, arrays


def _set_rng_state(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))
    name, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, arrays["rng_numpy"], pos, has_gauss, cached))
    if "rng_keras_global" in arrays:
        sg = _keras_global_seed_generator(create=True)
        if sg is not None:
            sg.state.assign(arrays["rng_keras_global"])


def _config_for_resume(config: TrainConfig) -> dict[str, Any]:
    """The config fields a checkpoint must agree on (all but the progress bar)."""
    return {k: v for k, v in config.to_dict().items() if k != "verbose"}


class _CorruptCheckpoint(Exception):
    pass


@dataclasses.dataclass
class _State:
    path: Path
    meta: dict[str, Any]
    model_values: list[np.ndarray]
    optimizer_values: list[np.ndarray]
    rng_arrays: dict[str, np.ndarray]

    @property
    def epoch(self) -> int:
        return int(self.meta["epoch"])

    @property
    def step(self) -> int:
        return int(self.meta["step"])


def _write_checkpoint(path: Path, model: keras.Model, epoch: int, extra: dict[str, Any]) -> None:
    model_values = _values(model.variables)
    optimizer = model.optimizer
    optimizer_values = _values(optimizer.variables) if optimizer is not None else []
    step = int(np.asarray(keras.ops.convert_to_numpy(optimizer.iterations))) if optimizer else 0
    rng_meta, rng_arrays = _rng_state()
    meta = dict(extra, format=_CHECKPOINT_FORMAT, epoch=int(epoch), step=step, rng=rng_meta,
                backend=keras.backend.backend(), keras_version=keras.__version__,
                saved_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
                model_shapes=[[list(a.shape), str(a.dtype)] for a in model_values],
                optimizer_shapes=[[list(a.shape), str(a.dtype)] for a in optimizer_values])
    arrays = {"meta": np.frombuffer(json.dumps(meta).encode(), np.uint8)}
    arrays.update({f"m{i}": a for i, a in enumerate(model_values)})
    arrays.update({f"o{i}": a for i, a in enumerate(optimizer_values)})
    arrays.update(rng_arrays)
    _savez_atomic(path, arrays)


def _read_checkpoint(path: Path) -> _State:
    """The checkpoint at `path`; `_CorruptCheckpoint` when it cannot be read back whole."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes().decode())
            if meta.get("format") != _CHECKPOINT_FORMAT:
                raise ValueError(f"unknown checkpoint format {meta.get('format')!r}")
            model_values = [z[f"m{i}"] for i in range(len(meta["model_shapes"]))]
            optimizer_values = [z[f"o{i}"] for i in range(len(meta["optimizer_shapes"]))]
            rng_arrays = {k: z[k] for k in z.files if k.startswith("rng_")}
        for values, shapes in ((model_values, meta["model_shapes"]),
                               (optimizer_values, meta["optimizer_shapes"])):
            if [[list(a.shape), str(a.dtype)] for a in values] != shapes:
                raise ValueError("array shapes differ from the ones its metadata lists")
        int(meta["epoch"]), int(meta["step"]), meta["rng"]["python"], rng_arrays["rng_numpy"]
    except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as e:
        raise _CorruptCheckpoint(f"{path}: unreadable checkpoint ({type(e).__name__}: {e})") from e
    return _State(Path(path), meta, model_values, optimizer_values, rng_arrays)


def _check_fits(state: _State, model: keras.Model, config: TrainConfig) -> None:
    """A readable checkpoint that belongs to another model or config is an error, not garbage
    to load or to throw away silently."""
    def mismatch(values, variables) -> str | None:
        if len(values) != len(variables):
            return f"{len(values)} variables, the model has {len(variables)}"
        for a, v in zip(values, variables):
            if tuple(a.shape) != tuple(v.shape) or np.dtype(a.dtype) != np.dtype(v.dtype):
                return f"{v.path}: {a.dtype}{tuple(a.shape)} saved, {v.dtype}{tuple(v.shape)} in the model"
        return None

    saved = state.meta.get("config", {})
    now = _config_for_resume(config)
    differ = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    problem = f"written with another config ({', '.join(differ)} differ)" if differ else None
    problem = problem or mismatch(state.model_values, model.variables)
    if problem is None and model.optimizer is not None:
        problem = mismatch(state.optimizer_values, model.optimizer.variables)
        problem = problem and f"optimizer: {problem}"
    if problem:
        raise UserError(f"{state.path}: this checkpoint does not belong to the run being started "
                        f"({problem}); delete it to start the run from scratch")


def _read_resumes(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / RESUME_LOG
    entries = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:  # a line torn by a kill
                continue
    return entries


def _append_resume(run_dir: Path, entry: dict[str, Any]) -> None:
    path = run_dir / RESUME_LOG
    torn = path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n")
    with open(path, "a") as f:
        f.write(("\n" if torn else "") + json.dumps(entry, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _resume_summary(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """run.json's record of interruptions: "resumed" (continued from a checkpoint at least once),
    "resume_exact" (None: never interrupted; True: every restart is known to give the
    uninterrupted run's numbers bit for bit; False: the numbers may differ) and the entries."""
    return {"resumed": any(e.get("event") == "resumed" for e in entries),
            "resume_exact": all(bool(e.get("exact")) for e in entries) if entries else None,
            "resumes": entries}


def _data_mode(data) -> str:
    """How the training data's per-epoch state (order, augmentation) is restored on resume."""
    if hasattr(data, "set_epoch"):
        return "set_epoch"
    if isinstance(data, keras.utils.PyDataset):
        cls, base = type(data), keras.utils.PyDataset
        if cls.on_epoch_end is base.on_epoch_end and cls.on_epoch_begin is base.on_epoch_begin:
            return "stateless"
    return "unknown"


def _exactness(config: TrainConfig, data_mode: str) -> tuple[bool, str]:
    """Whether a resumed run of this config is known to equal an uninterrupted one bit for bit."""
    backend = keras.backend.backend()
    if data_mode == "unknown":
        return False, "the training data's per-epoch state cannot be restored"
    if visible_accelerators() > 0:
        return False, f"{backend} on an accelerator: bit-exact resume not verified"
    if backend == "tensorflow" and config.deterministic:
        return True, "tensorflow on CPU with op determinism (tested bit for bit)"
    if backend == "jax":
        return True, "jax on CPU (tested bit for bit)"
    return False, (f"{backend} on CPU, deterministic={config.deterministic}: bit-exact resume "
                   "not verified")


class _FixedSteps(keras.utils.PyDataset):
    """Each epoch = batches 0..steps-1 of the wrapped sequence's order for that epoch (cycling).

    Keras, given `steps_per_epoch` smaller than the sequence, keeps one iterator across epochs
    while the sequence reshuffles at every epoch end, and its prefetching decides which order the
    batches around the boundary come from; so such a run is neither repeatable nor resumable.
    """

    def __init__(self, inner: keras.utils.PyDataset, steps: int):
        super().__init__(workers=inner.workers, use_multiprocessing=inner.use_multiprocessing,
                         max_queue_size=inner.max_queue_size)
        self.inner, self.steps = inner, int(steps)

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, i: int):
        return self.inner[i % len(self.inner)]

    def on_epoch_begin(self) -> None:
        self.inner.on_epoch_begin()

    def on_epoch_end(self) -> None:
        self.inner.on_epoch_end()


class _Checkpointer(keras.callbacks.Callback):
    """Writes checkpoint.npz at the end of every epoch but the last one (final.npz follows that),
    and restores a checkpoint just before the first epoch it continues with.

    Placed after CSVLogger and ModelCheckpoint, so the checkpoint holds their state of the same
    epoch (the rows of history.csv, the best value so far).
    """

    def __init__(self, run_dir: Path, epochs: int, extra: Callable[[], dict[str, Any]],
                 restore: _State | None = None):
        super().__init__()
        self.run_dir, self.epochs, self.extra, self.restore = run_dir, epochs, extra, restore

    def on_epoch_begin(self, epoch, logs=None):
        state, self.restore = self.restore, None
        if state is None:
            return
        # Here, not before model.fit: whatever fit's set-up does (tracing, building metrics,
        # drawing seeds) happened before epoch 0 in the uninterrupted run, not between epochs.
        _assign(self.model.variables, state.model_values)
        if self.model.optimizer is not None:
            _assign(self.model.optimizer.variables, state.optimizer_values)
        _set_rng_state(state.meta["rng"], state.rng_arrays)

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        if done >= self.epochs or self.model.stop_training:
            return
        history = self.run_dir / HISTORY
        extra = dict(self.extra(), history_csv=history.read_text() if history.exists() else "")
        _write_checkpoint(self.run_dir / CHECKPOINT, self.model, done, extra)


class EpochTimer(keras.callbacks.Callback):
    """Adds `epoch_seconds` to the epoch logs (placed before CSVLogger, so history.csv has it):
    throughput figures need the steady-state epochs apart from the first, which compiles."""

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self._started


def _callbacks(run_dir: Path, monitor: str, has_val: bool,
               best: float | None = None) -> list[keras.callbacks.Callback]:
    callbacks: list[keras.callbacks.Callback] = [
        EpochTimer(), keras.callbacks.CSVLogger(str(run_dir / HISTORY), append=True)]
    if has_val:  # on resume, the best value so far comes from the checkpoint
        callbacks.append(keras.callbacks.ModelCheckpoint(
            str(run_dir / "best.weights.h5"), monitor=monitor, save_best_only=True,
            save_weights_only=True, mode="min", initial_value_threshold=best))
    if keras.backend.backend() == "tensorflow" and importlib.util.find_spec("tensorboard"):
        callbacks.append(keras.callbacks.TensorBoard(str(run_dir / "tensorboard"),
                                                     write_graph=False, profile_batch=0))
    return callbacks


def _remove_resume_state(run_dir: Path) -> None:
    """Drop what only an unfinished run needs (also what a kill after final.npz left behind)."""
    import shutil

    for name in (CHECKPOINT, CHECKPOINT + ".tmp", CHECKPOINT + ".corrupt", INIT_WEIGHTS,
                 INIT_WEIGHTS + ".tmp", FINAL_WEIGHTS + ".tmp"):
        (run_dir / name).unlink(missing_ok=True)
    if (run_dir / LEGACY_BACKUP).is_dir():
        shutil.rmtree(run_dir / LEGACY_BACKUP, ignore_errors=True)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _initial_state(built: keras.Model, run_dir: Path, prebuilt: bool) -> str:
    """A model passed already built keeps the initial variables of the run's first attempt
    (init.npz), so a restart from scratch starts where the first attempt started, whatever the
    caller's RNG did meanwhile. Returns the fingerprint of the initial variables."""
    path = run_dir / INIT_WEIGHTS
    if prebuilt and path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                values = [z[f"m{i}"] for i in range(len(z.files))]
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as e:
            warnings.warn(f"{path}: unreadable ({type(e).__name__}: {e}); replaced by the "
                          "model's current initial variables", stacklevel=3)
            path.unlink()
            values = None
        if values is not None:
            if [(a.shape, np.dtype(a.dtype)) for a in values] != \
                    [(tuple(v.shape), np.dtype(v.dtype)) for v in built.variables]:
                raise UserError(f"{path}: initial variables of another model; delete it to start "
                                "the run from scratch")
            _assign(built.variables, values)
    current = _values(built.variables)
    if prebuilt and not path.exists():
        _savez_atomic(path, {f"m{i}": a for i, a in enumerate(current)})
    return _fingerprint(current)


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
    be in place before the layers are created (and the builder runs after the seeds are set, so
    the initial weights depend on `config.seed` only). `describe` (model name, input shape, data
    fingerprints ...) is written to run.json and the manifest, so the run can be rebuilt.

    Starting again with the same `run_id` continues from the last finished epoch and ends with
    the weights of an uninterrupted run (see the module docstring); a finished run is loaded.
    Whatever the path (trained, resumed or loaded), the global RNGs are re-seeded with
    `config.seed` on return, so what the caller does next does not depend on that path.
    """
    from mtunet.report.manifest import write_manifest

    run_dir = run_directory(run_id, runs_root)
    run_dir.mkdir(parents=True, exist_ok=True)
    set_seeds(config.seed, config.deterministic)
    policy = set_precision(config.mixed_precision)
    started = time.time()
    prebuilt = isinstance(model, keras.Model) or not callable(model)
    try:
        with distribution_scope() as devices:
            built = model if prebuilt else model()
            compile_model(built, config,
                          total_steps=config.epochs * (config.steps_per_epoch or len(train_data)))
    finally:
        if config.mixed_precision:
            keras.mixed_precision.set_global_policy("float32")

    info = dict(describe or {})
    info.update(run_id=run_id, model=info.get("model", built.name), config=config.to_dict(),
                encoder_init=getattr(built, "encoder_init", "random"), dtype_policy=policy,
                devices=devices, n_params=int(built.count_params()))
    previous = _read_json(run_dir / "run.json")
    resumes = _read_resumes(run_dir)

    if (run_dir / FINAL_WEIGHTS).exists():
        load_final_weights(built, run_dir)
        _remove_resume_state(run_dir)
        summary = _resume_summary(resumes)
        if previous and "init_fingerprint" in previous:
            info["init_fingerprint"] = previous["init_fingerprint"]
        info.update(summary)
        _write_text_atomic(run_dir / "run.json", json.dumps(info, indent=2, default=str))
        set_seeds(config.seed, config.deterministic)
        return FitResult(built, run_dir, _history_from_csv(run_dir / HISTORY), config.epochs,
                         config.epochs, 0.0, resumed=summary["resumed"],
                         resume_exact=summary["resume_exact"], resumes=resumes)

    data_mode = _data_mode(train_data)
    exact, why = _exactness(config, data_mode)
    entry_base = {"at": time.strftime("%Y-%m-%dT%H:%M:%S"), "backend": keras.backend.backend(),
                  "devices": devices, "data_state": data_mode}
    unfinished = previous is not None            # an earlier attempt got as far as run.json
    reason = None
    if (run_dir / LEGACY_BACKUP).is_dir():
        import shutil

        warnings.warn(f"{run_dir / LEGACY_BACKUP}: a keras BackupAndRestore folder of an older "
                      "mtunet.train (without the RNG and data state an exact resume needs, and "
                      "possibly torn); ignored: the run restarts from scratch", stacklevel=2)
        shutil.rmtree(run_dir / LEGACY_BACKUP, ignore_errors=True)
        reason, unfinished = "an old-format backup/ was ignored", True
    state = None
    if (run_dir / CHECKPOINT).exists():
        unfinished = True
        try:
            state = _read_checkpoint(run_dir / CHECKPOINT)
        except _CorruptCheckpoint as e:
            aside = run_dir / (CHECKPOINT + ".corrupt")
            os.replace(run_dir / CHECKPOINT, aside)
            warnings.warn(f"{e}; set aside as {aside.name}: the run restarts from scratch",
                          stacklevel=2)
            reason = f"corrupt checkpoint set aside: {e}"

    entry = None
    if state is not None:
        if built.optimizer is not None and not built.optimizer.built:
            built.optimizer.build(built.trainable_variables)
        _check_fits(state, built, config)
        done, step = state.epoch, state.step
        best = state.meta.get("best")
        init_fp = state.meta.get("init_fingerprint")
        _write_text_atomic(run_dir / HISTORY, state.meta.get("history_csv", ""))
        entry = dict(entry_base, event="resumed", from_epoch=done, from_step=step, exact=exact,
                     why=why)
    else:
        done = step = 0
        best = None
        for stale in (HISTORY, "best.weights.h5"):   # rows and best of an abandoned attempt
            (run_dir / stale).unlink(missing_ok=True)
        init_fp = _initial_state(built, run_dir, prebuilt)
        if unfinished:
            # From scratch nothing is carried over: the run is an uninterrupted one, the same as
            # the earlier attempt would have been if it starts from the same initial weights.
            before = (previous or {}).get("init_fingerprint")
            if before is None:   # an attempt of an older mtunet.train: a builder is seeded
                same_init = not prebuilt
                why_not = "the earlier attempt's initial weights are unknown (model passed built)"
            else:
                same_init = before == init_fp
                why_not = f"initial weights differ from the earlier attempt's ({before} != {init_fp})"
            entry = dict(entry_base, event="restarted", from_epoch=0, from_step=0,
                         reason=reason or "no checkpoint (killed in the first epoch, or a "
                                          "one-epoch run)",
                         exact=exact and same_init, why=why if same_init else why_not)
    if data_mode == "set_epoch":
        train_data.set_epoch(done)  # the shuffles/augmentations of an uninterrupted run
    if entry is not None:
        _append_resume(run_dir, entry)
        resumes.append(entry)
    summary = _resume_summary(resumes)
    info.update(init_fingerprint=init_fp, **summary)
    _write_text_atomic(run_dir / "run.json", json.dumps(info, indent=2, default=str))

    fit_data, steps = train_data, config.steps_per_epoch
    if steps and isinstance(train_data, keras.utils.PyDataset):
        fit_data, steps = _FixedSteps(train_data, steps), None
    has_val = val_data is not None
    monitor = config.monitor if has_val else config.monitor.removeprefix("val_")
    standard = _callbacks(run_dir, monitor, has_val, best)
    best_cb = next((c for c in standard if isinstance(c, keras.callbacks.ModelCheckpoint)), None)

    def checkpoint_extra() -> dict[str, Any]:
        best_now = None if best_cb is None or best_cb.best is None else float(best_cb.best)
        return {"config": _config_for_resume(config), "best": best_now,
                "init_fingerprint": init_fp, "data_epoch": getattr(train_data, "epoch", None),
                "run_id": run_id}

    checkpointer = _Checkpointer(run_dir, config.epochs, checkpoint_extra, restore=state)
    if done < config.epochs:
        built.fit(
            fit_data,
            validation_data=val_data,
            epochs=config.epochs,
            initial_epoch=done,
            steps_per_epoch=steps,
            callbacks=standard + [checkpointer] + list(callbacks or []),
            verbose=config.verbose,
        )
    wall = time.time() - started
    write_manifest(run_dir / "manifest.json", parameters=info, wall_time_s=wall)
    save_final_weights(built, run_dir)           # last: final.npz marks the run finished
    _remove_resume_state(run_dir)
    set_seeds(config.seed, config.deterministic)
    return FitResult(built, run_dir, _history_from_csv(run_dir / HISTORY), config.epochs, done,
                     wall, resumed_from_step=step, resumed=summary["resumed"],
                     resume_exact=summary["resume_exact"], resumes=resumes)
