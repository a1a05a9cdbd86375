"""The run folder and its resume state: checkpoints, RNG states, init.npz, resume.jsonl, final.npz.

`mtunet.train.fit` trains every model of the study; this module holds what makes each of its runs
logged, checkpointed and resumable in the same way (it does not import `mtunet.train`):

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
                            a third of a checkpoint); `mtunet.train.load_run` rebuilds the model
                            from run.json
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

import dataclasses
import hashlib
import json
import os
import random
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable, Protocol

import keras
import numpy as np

from mtunet.errors import UserError
from mtunet.files import write_atomic


FINAL_WEIGHTS = "final.npz"
CHECKPOINT = "checkpoint.npz"       # the resume state after the last finished epoch
INIT_WEIGHTS = "init.npz"           # initial variables of a model passed already built
RESUME_LOG = "resume.jsonl"         # one line per start that found an unfinished attempt
HISTORY = "history.csv"
LEGACY_BACKUP = "backup"            # keras BackupAndRestore folder of older versions
_CHECKPOINT_FORMAT = 1


class _Config(Protocol):
    """What this module reads of a `mtunet.train.TrainConfig`."""

    deterministic: bool

    def to_dict(self) -> dict[str, Any]: ...


# ---------------------------------------------------------------------------------------------
# Atomic files
# ---------------------------------------------------------------------------------------------
def _write_text_atomic(path: Path, text: str) -> Path:
    return write_atomic(path, lambda f: f.write(text.encode()))


def _savez_atomic(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    return write_atomic(path, lambda f: np.savez(f, **arrays))


# ---------------------------------------------------------------------------------------------
# final.npz: the weights of a finished run
# ---------------------------------------------------------------------------------------------
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


def _config_for_resume(config: _Config) -> dict[str, Any]:
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


def _check_fits(state: _State, model: keras.Model, config: _Config) -> None:
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


# ---------------------------------------------------------------------------------------------
# resume.jsonl and run.json's record of interruptions; whether a resume is exact
# ---------------------------------------------------------------------------------------------
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


def _exactness(config: _Config, data_mode: str, accelerators: int) -> tuple[bool, str]:
    """Whether a resumed run of this config is known to equal an uninterrupted one bit for bit
    (`accelerators`: the number of GPUs/TPUs the backend sees, `mtunet.train.visible_accelerators`)."""
    backend = keras.backend.backend()
    if data_mode == "unknown":
        return False, "the training data's per-epoch state cannot be restored"
    if accelerators > 0:
        return False, f"{backend} on an accelerator: bit-exact resume not verified"
    if backend == "tensorflow" and config.deterministic:
        return True, "tensorflow on CPU with op determinism (tested bit for bit)"
    if backend == "jax":
        return True, "jax on CPU (tested bit for bit)"
    return False, (f"{backend} on CPU, deterministic={config.deterministic}: bit-exact resume "
                   "not verified")



# ---------------------------------------------------------------------------------------------
# What `fit` does with them: write one per epoch, find one on start, restore it, clean up
# ---------------------------------------------------------------------------------------------
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



def _find_checkpoint(run_dir: Path, unfinished: bool) -> tuple[_State | None, bool, str | None]:
    """The checkpoint an earlier attempt left (None: none, or an unreadable one, set aside with a
    warning; an old-format backup/ is removed with one), whether an earlier attempt is unfinished
    (`unfinished`: it got as far as run.json) and why a restart from scratch threw state away.
    Warnings name `fit`'s caller (called by `mtunet.train.fit` through `_resume_or_start`)."""
    reason = None
    if (run_dir / LEGACY_BACKUP).is_dir():
        import shutil

        warnings.warn(f"{run_dir / LEGACY_BACKUP}: a keras BackupAndRestore folder of an older "
                      "mtunet.train (without the RNG and data state an exact resume needs, and "
                      "possibly torn); ignored: the run restarts from scratch", stacklevel=4)
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
                          stacklevel=4)
            reason = f"corrupt checkpoint set aside: {e}"
    return state, unfinished, reason


def _restart_entry(entry_base: dict[str, Any], exact: bool, why: str, reason: str | None,
                   before: str | None, init_fp: str, prebuilt: bool) -> dict[str, Any]:
    """The resume.jsonl line of a restart from scratch after an unfinished attempt (`before`: the
    initial-weights fingerprint the earlier attempt recorded in run.json, if any)."""
    # From scratch nothing is carried over: the run is an uninterrupted one, the same as
    # the earlier attempt would have been if it starts from the same initial weights.
    if before is None:   # an attempt of an older mtunet.train: a builder is seeded
        same_init = not prebuilt
        why_not = "the earlier attempt's initial weights are unknown (model passed built)"
    else:
        same_init = before == init_fp
        why_not = f"initial weights differ from the earlier attempt's ({before} != {init_fp})"
    return dict(entry_base, event="restarted", from_epoch=0, from_step=0,
                reason=reason or "no checkpoint (killed in the first epoch, or a "
                                 "one-epoch run)",
                exact=exact and same_init, why=why if same_init else why_not)


def _remove_resume_state(run_dir: Path) -> None:
    """Drop what only an unfinished run needs (also what a kill after final.npz left behind)."""
    import shutil

    for name in (CHECKPOINT, CHECKPOINT + ".tmp", CHECKPOINT + ".corrupt", INIT_WEIGHTS,
                 INIT_WEIGHTS + ".tmp", FINAL_WEIGHTS + ".tmp"):
        (run_dir / name).unlink(missing_ok=True)
    if (run_dir / LEGACY_BACKUP).is_dir():
        shutil.rmtree(run_dir / LEGACY_BACKUP, ignore_errors=True)



def _initial_state(built: keras.Model, run_dir: Path, prebuilt: bool) -> str:
    """A model passed already built keeps the initial variables of the run's first attempt
    (init.npz), so a restart from scratch starts where the first attempt started, whatever the
    caller's RNG did meanwhile. Returns the fingerprint of the initial variables. (Its warning
    names `fit`'s caller: called by `mtunet.train.fit` through `_resume_or_start`.)"""
    path = run_dir / INIT_WEIGHTS
    if prebuilt and path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                values = [z[f"m{i}"] for i in range(len(z.files))]
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as e:
            warnings.warn(f"{path}: unreadable ({type(e).__name__}: {e}); replaced by the "
                          "model's current initial variables", stacklevel=4)
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

