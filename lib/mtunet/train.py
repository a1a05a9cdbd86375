"""Training: Adam, Keras progress bar, CSV log, checkpoints, exact resume, seeds, devices.

The paper trains every network with Adam at an initial learning rate of 1e-5 for 50 epochs on
512 x 512 inputs (4 x V100). `fit` is the one place that does this for every model of the
study, so every run is logged, checkpointed and resumable in the same way. The run folder
(runs/<run_id>/: run.json, history.csv, checkpoint.npz, final.npz ...) and the resume contract
(a restarted run ends with the weights of an uninterrupted one) are described in
`mtunet.checkpoints`, which holds the resume state; its names are re-exported here.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import keras

# The resume state lives in mtunet.checkpoints; its names stay importable from here.
from mtunet.checkpoints import (  # noqa: F401
    _CHECKPOINT_FORMAT, CHECKPOINT, FINAL_WEIGHTS, HISTORY, INIT_WEIGHTS, LEGACY_BACKUP,
    RESUME_LOG, _append_resume, _assign, _check_fits, _Checkpointer, _config_for_resume,
    _CorruptCheckpoint, _data_mode, _exactness, _find_checkpoint, _fingerprint, _initial_state,
    _keras_global_seed_generator, _read_checkpoint, _read_resumes, _remove_resume_state,
    _restart_entry, _resume_summary, _rng_state, _savez_atomic, _set_rng_state, _State,
    _state_variables, _values, _write_checkpoint, _write_text_atomic, load_final_weights,
    save_final_weights,
)
from mtunet.config import runs_dir
from mtunet.devices import (  # noqa: F401 (re-exported)
    bf16_warning, distribution_scope, visible_accelerators)
from mtunet.errors import UserError


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
    warning = bf16_warning(mixed_precision)
    if warning:
        warnings.warn(warning, RuntimeWarning, stacklevel=2)
    keras.mixed_precision.set_global_policy(policy)
    return policy


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
    outputs = getattr(model, "output", None)
    # a dict of outputs names its tasks (a paired model's output layers are its two paths)
    tasks = list(outputs) if isinstance(outputs, dict) else list(model.output_names)
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


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None



# ---------------------------------------------------------------------------------------------
# fit, step by step
# ---------------------------------------------------------------------------------------------
def _build_and_compile(model: keras.Model | Callable[[], keras.Model],
                       train_data: keras.utils.PyDataset,
                       config: TrainConfig) -> tuple[keras.Model, bool, str, str]:
    """The model (built by the builder inside the distribution scope and the dtype policy, or the
    one passed), compiled for the run's steps. Returns it, whether it was passed already built,
    the dtype policy and the devices."""
    policy = set_precision(config.mixed_precision)
    prebuilt = isinstance(model, keras.Model) or not callable(model)
    try:
        with distribution_scope() as devices:
            built = model if prebuilt else model()
            compile_model(built, config,
                          total_steps=config.epochs * (config.steps_per_epoch or len(train_data)))
    finally:
        if config.mixed_precision:
            keras.mixed_precision.set_global_policy("float32")
    return built, prebuilt, policy, devices


def _run_record(describe: dict[str, Any] | None, run_id: str, built: keras.Model,
                config: TrainConfig, policy: str, devices: str) -> dict[str, Any]:
    """run.json's description of the run (the caller's `describe` first), before the resume
    fields are added."""
    info = dict(describe or {})
    info.update(run_id=run_id, model=info.get("model", built.name), config=config.to_dict(),
                encoder_init=getattr(built, "encoder_init", "random"), dtype_policy=policy,
                devices=devices, n_params=int(built.count_params()))
    return info


def _write_run_record(run_dir: Path, info: dict[str, Any]) -> None:
    _write_text_atomic(run_dir / "run.json", json.dumps(info, indent=2, default=str))


def _load_finished_run(built: keras.Model, run_dir: Path, config: TrainConfig,
                       info: dict[str, Any], previous: dict[str, Any] | None,
                       resumes: list[dict[str, Any]]) -> FitResult:
    """A run whose final.npz exists: its weights loaded into `built`, not trained again."""
    from mtunet.models.paired import inference_model

    load_final_weights(inference_model(built), run_dir)
    _remove_resume_state(run_dir)
    summary = _resume_summary(resumes)
    # what only the training knew: its initial weights, the commit and code that trained it, and
    # its held-out selection
    for key in ("init_fingerprint", "trained_by", "training_code", "heldout"):
        if previous and key in previous:
            info[key] = previous[key]
    info.update(summary)
    _write_run_record(run_dir, info)
    return FitResult(built, run_dir, _history_from_csv(run_dir / HISTORY), config.epochs,
                     config.epochs, 0.0, resumed=summary["resumed"],
                     resume_exact=summary["resume_exact"], resumes=resumes)


@dataclasses.dataclass
class _Start:
    """Where this call of `fit` starts training."""

    state: _State | None            # the checkpoint it continues from (None: from scratch)
    epoch: int                      # epochs already done
    step: int                       # optimizer steps already done
    best: float | None              # best `monitor` value so far (from the checkpoint)
    init_fingerprint: str | None    # of the run's initial variables
    entry: dict[str, Any] | None = None   # its resume.jsonl line (None: a first attempt)


def _resume_or_start(built: keras.Model, run_dir: Path, config: TrainConfig,
                     train_data: keras.utils.PyDataset, prebuilt: bool,
                     previous: dict[str, Any] | None, devices: str) -> _Start:
    """Continue from the checkpoint of the last finished epoch (its history.csv rows restored;
    its variables are restored by `_Checkpointer` when the epoch begins), or start from scratch
    (rows and best weights of an abandoned attempt dropped, the initial variables kept in
    init.npz); a start after an unfinished attempt gets a resume.jsonl entry. `train_data` is
    set to the epoch training continues with."""
    data_mode = _data_mode(train_data)
    exact, why = _exactness(config, data_mode, visible_accelerators())
    entry_base = {"at": time.strftime("%Y-%m-%dT%H:%M:%S"), "backend": keras.backend.backend(),
                  "devices": devices, "data_state": data_mode}
    # an earlier attempt that got as far as run.json is unfinished
    state, unfinished, reason = _find_checkpoint(run_dir, unfinished=previous is not None)
    if state is not None:
        if built.optimizer is not None and not built.optimizer.built:
            strategy = getattr(built, "distribute_strategy", None)   # TF: the model's devices
            with strategy.scope() if strategy is not None else contextlib.nullcontext():
                built.optimizer.build(built.trainable_variables)
        _check_fits(state, built, config)
        start = _Start(state, state.epoch, state.step, state.meta.get("best"),
                       state.meta.get("init_fingerprint"))
        _write_text_atomic(run_dir / HISTORY, state.meta.get("history_csv", ""))
        start.entry = dict(entry_base, event="resumed", from_epoch=start.epoch,
                           from_step=start.step, exact=exact, why=why)
    else:
        for stale in (HISTORY, "best.weights.h5"):   # rows and best of an abandoned attempt
            (run_dir / stale).unlink(missing_ok=True)
        start = _Start(None, 0, 0, None, _initial_state(built, run_dir, prebuilt))
        if unfinished:
            start.entry = _restart_entry(entry_base, exact, why, reason,
                                         (previous or {}).get("init_fingerprint"),
                                         start.init_fingerprint, prebuilt)
    if data_mode == "set_epoch":
        train_data.set_epoch(start.epoch)  # the shuffles/augmentations of an uninterrupted run
    return start


def _record_start(run_dir: Path, info: dict[str, Any], resumes: list[dict[str, Any]],
                  start: _Start) -> dict[str, Any]:
    """Append this start's resume.jsonl entry (if any) and write run.json with the initial-weights
    fingerprint and the record of interruptions; returns that record (`_resume_summary`)."""
    if start.entry is not None:
        _append_resume(run_dir, start.entry)
        resumes.append(start.entry)
    summary = _resume_summary(resumes)
    info.update(init_fingerprint=start.init_fingerprint, **summary)
    _write_run_record(run_dir, info)
    return summary


def _fit_callbacks(run_dir: Path, run_id: str, config: TrainConfig,
                   train_data: keras.utils.PyDataset, has_val: bool, start: _Start,
                   extra: list[keras.callbacks.Callback] | None,
                   selection=None) -> list[keras.callbacks.Callback]:
    """Every callback of the run, in order: the held-out selection (its scores go into the
    epoch's logs), epoch timer, CSV log, best weights (with validation data), TensorBoard, the
    checkpointer (after those, so a checkpoint holds their state of the same epoch), the
    selection's pruning of superseded best weights, then the caller's `extra`."""
    monitor = config.monitor if has_val else config.monitor.removeprefix("val_")
    standard = _callbacks(run_dir, monitor, has_val, start.best)
    best_cb = next((c for c in standard if isinstance(c, keras.callbacks.ModelCheckpoint)), None)
    init_fp = start.init_fingerprint

    def checkpoint_extra() -> dict[str, Any]:
        best_now = None if best_cb is None or best_cb.best is None else float(best_cb.best)
        return {"config": _config_for_resume(config), "best": best_now,
                "init_fingerprint": init_fp, "data_epoch": getattr(train_data, "epoch", None),
                "run_id": run_id, "heldout": selection.state() if selection else None}

    checkpointer = _Checkpointer(run_dir, config.epochs, checkpoint_extra, restore=start.state)
    if selection is None:
        return standard + [checkpointer] + list(extra or [])
    from mtunet.heldout import PruneBest

    return [selection] + standard + [checkpointer, PruneBest(selection)] + list(extra or [])


def _train_epochs(built: keras.Model, train_data: keras.utils.PyDataset,
                  val_data: keras.utils.PyDataset | None, config: TrainConfig, run_dir: Path,
                  run_id: str, start: _Start,
                  callbacks: list[keras.callbacks.Callback] | None, selection=None) -> None:
    """Keras `fit` from `start.epoch` to `config.epochs` (nothing when those are done), or until
    the held-out `selection` stops it."""
    fit_data, steps = train_data, config.steps_per_epoch
    if steps and isinstance(train_data, keras.utils.PyDataset):
        fit_data, steps = _FixedSteps(train_data, steps), None
    if selection is not None:
        selection.attach(run_dir, start.state.meta.get("heldout") if start.state else None)
    all_callbacks = _fit_callbacks(run_dir, run_id, config, train_data, val_data is not None,
                                   start, callbacks, selection)
    if start.epoch < config.epochs:
        built.fit(
            fit_data,
            validation_data=val_data,
            epochs=config.epochs,
            initial_epoch=start.epoch,
            steps_per_epoch=steps,
            # the sequences order their batches themselves (seeded, per epoch); Keras' shuffle
            # would permute them again with Python's global `random`, drawn in tf.data's generator
            # threads, one draw by an iterator that prefetches and may be dropped before it draws:
            # the order hung on thread timing (a 2-device run once ended elsewhere than the
            # 1-device run of the same batches)
            shuffle=False,
            callbacks=all_callbacks,
            verbose=config.verbose,
        )


def _keep_final_weights(built: keras.Model, run_dir: Path, selection=None) -> None:
    """Write final.npz with the weights the run keeps: those of the held-out `selection`'s best
    epoch, or without one those of its last epoch."""
    from mtunet.models.paired import inference_model

    if selection is not None:
        selection.restore_best()
    save_final_weights(inference_model(built), run_dir)


def _finish_run(built: keras.Model, run_dir: Path, info: dict[str, Any], started: float,
                config: TrainConfig, selection=None) -> float:
    """run.json with the held-out selection's record, the manifest, then final.npz (last: it
    marks the run finished), then the resume state dropped; returns the wall time."""
    from mtunet.report.manifest import write_manifest

    wall = time.time() - started
    if selection is not None:
        info["heldout"] = selection.summary(config.epochs)
        _write_run_record(run_dir, info)
    write_manifest(run_dir / "manifest.json", parameters=info, wall_time_s=wall)
    _keep_final_weights(built, run_dir, selection)
    _remove_resume_state(run_dir)
    for best in run_dir.glob("heldout-best-e*.npz"):   # final.npz holds the kept weights now
        best.unlink(missing_ok=True)
    return wall


def fit(
    model: keras.Model | Callable[[], keras.Model],
    train_data: keras.utils.PyDataset,
    config: TrainConfig,
    run_id: str,
    val_data: keras.utils.PyDataset | None = None,
    runs_root: Path | None = None,
    describe: dict[str, Any] | None = None,
    callbacks: list[keras.callbacks.Callback] | None = None,
    selection=None,
) -> FitResult:
    """Train `model` (or the model a zero-argument builder returns) and checkpoint every epoch.

    Pass a builder to get automatic multi-device data parallelism and mixed precision: both must
    be in place before the layers are created (and the builder runs after the seeds are set, so
    the initial weights depend on `config.seed` only). `describe` (model name, input shape, data
    fingerprints ...) is written to run.json and the manifest, so the run can be rebuilt.

    Starting again with the same `run_id` continues from the last finished epoch and ends with
    the weights of an uninterrupted run (see `mtunet.checkpoints`); a finished run is loaded.
    Whatever the path (trained, resumed or loaded), the global RNGs are re-seeded with
    `config.seed` on return, so what the caller does next does not depend on that path.

    `selection` (a :class:`mtunet.heldout.HeldOutSelection`): score held-out images after every
    epoch, stop after its patience, and keep the best epoch's weights; `config.epochs` is the cap.
    """
    run_dir = run_directory(run_id, runs_root)
    run_dir.mkdir(parents=True, exist_ok=True)
    set_seeds(config.seed, config.deterministic)
    started = time.time()
    built, prebuilt, policy, devices = _build_and_compile(model, train_data, config)
    info = _run_record(describe, run_id, built, config, policy, devices)
    previous = _read_json(run_dir / "run.json")
    resumes = _read_resumes(run_dir)
    if (run_dir / FINAL_WEIGHTS).exists():
        result = _load_finished_run(built, run_dir, config, info, previous, resumes)
    else:
        start = _resume_or_start(built, run_dir, config, train_data, prebuilt, previous, devices)
        summary = _record_start(run_dir, info, resumes, start)
        _train_epochs(built, train_data, val_data, config, run_dir, run_id, start, callbacks,
                      selection)
        wall = _finish_run(built, run_dir, info, started, config, selection)
        history = _history_from_csv(run_dir / HISTORY)
        result = FitResult(built, run_dir, history, len(next(iter(history.values()), [])),
                           start.epoch, wall, resumed_from_step=start.step,
                           resumed=summary["resumed"], resume_exact=summary["resume_exact"],
                           resumes=resumes)
    set_seeds(config.seed, config.deterministic)
    return result
