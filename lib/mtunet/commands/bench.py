"""`python -m mtunet bench`: how fast MTUnet trains and predicts here, and how close that is to the machine.

One process measures, in this order:

1. the machine's float32 matrix-multiply rate with numpy (an n x n float32 product, best of 3,
   2 n^3 flops): the reference "what this CPU/BLAS can do" figure;
2. training images/s of the model fed in-memory numpy arrays (``model.fit`` on arrays);
3. training images/s of the same model, same steps, fed by ``mtunet.data.pipeline.FundusSequence``
   with the paper's augmentation over a small synthetic set, then the arrays run again: the input
   pipeline's overhead is ``time_pipeline / mean(time_arrays before, after) - 1``, and the drift
   between the two arrays runs (warm-up, a noisy neighbour) is printed beside it, so an overhead
   smaller than the drift reads as "not measurable here";
4. inference images/s (``predict_on_batch`` on arrays).

Warm-up steps (graph tracing, XLA compilation, the first batch) are excluded: the clock runs from
the end of the last warm-up step to the end of the last timed step of one ``fit`` call, so the data
fetched for the timed steps is inside the timing and Keras's per-``fit`` setup is not.

FLOPs are counted analytically from the layer shapes (:func:`mtunet.flops.analytic_flops`), one
multiply-add = 2 FLOPs, biases, activations, pooling, concatenation and the loss not counted; a
training step is taken as 3 x the forward pass (forward + gradient w.r.t. inputs + gradient w.r.t.
weights).
Achieved FLOP/s divided by the measured matmul FLOP/s says how well the framework uses the machine.

The training path is the one ``mtunet.train.fit`` uses: ``set_seeds`` (with TensorFlow op
determinism unless ``--no-determinism``), ``compile_model`` (Adam, the multi-task loss, the Dice
and accuracy metrics), ``jit_compile`` from ``--jit``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mtunet.cli import positive_int
from mtunet.errors import UserError
from mtunet.flops import analytic_flops, flops_by_type, layer_flops  # noqa: F401 (re-exported)

# ----------------------------------------------------------------------------------------------
# The machine's reference rate
# ----------------------------------------------------------------------------------------------


def matmul_flops_per_s(n: int = 4096, repeats: int = 3, seed: int = 0) -> float:
    """float32 ``n x n @ n x n`` with numpy: ``2 n^3 / best time`` over ``repeats`` runs (FLOP/s)."""
    if n < 1 or repeats < 1:
        raise ValueError("n and repeats must be >= 1")
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), np.float32)
    np.matmul(a, b, out=out)  # warm up: thread pool, page faults
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / max(best, 1e-12)


def blas_info() -> str:
    """Which BLAS numpy calls, and with how many threads (threadpoolctl if installed)."""
    try:
        from threadpoolctl import threadpool_info

        rows = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        mine = [p for p in rows if Path(np.__file__).parent.name in p.get("filepath", "")
                or "numpy" in p.get("filepath", "")]
        rows = mine or rows
        if rows:
            return "; ".join(f"{p.get('internal_api')} {p.get('version')} "
                             f"({p.get('architecture', '?')}, {p.get('num_threads')} threads, "
                             f"{Path(p.get('filepath', '')).name})" for p in rows)
    except ImportError:
        pass
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        return f"{blas.get('name', '?')} {blas.get('version', '')} (numpy.show_config)"
    except Exception:  # pragma: no cover - very old numpy
        return "unknown"


# ----------------------------------------------------------------------------------------------
# Timing helpers
# ----------------------------------------------------------------------------------------------


def _timer_callback(warmup: int):
    import keras

    class StepTimer(keras.callbacks.Callback):
        """Wall-clock time from the end of step ``warmup`` to the end of the last step."""

        def __init__(self):
            super().__init__()
            self.ends: list[float] = []

        def on_train_batch_end(self, batch, logs=None):
            self.ends.append(time.perf_counter())

        def timed(self) -> list[float]:
            """Durations of the timed steps (end of step k-1 to end of step k, k > warmup)."""
            if len(self.ends) <= warmup:
                raise RuntimeError(f"only {len(self.ends)} steps ran; need more than {warmup}")
            return list(np.diff(self.ends[warmup - 1:]))

    return StepTimer()


def _fit_timed(model, data, warmup: int, steps: int, **fit_kwargs) -> list[float]:
    """Seconds of each of the ``steps`` timed training steps after ``warmup`` steps (one fit)."""
    timer = _timer_callback(warmup)
    model.fit(data, epochs=1, steps_per_epoch=warmup + steps, callbacks=[timer], verbose=0,
              **fit_kwargs)
    durations = timer.timed()
    if len(durations) != steps:
        raise RuntimeError(f"expected {steps} timed steps, ran {len(durations)}")
    return durations


def _synthetic_arrays(n: int, size: int, n_classes: int, tasks, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, size=(n, size, size, 3)).astype(np.float32)
    y, sw = {}, {}
    if "seg" in tasks:
        y["seg"] = np.eye(n_classes, dtype=np.float32)[rng.integers(0, n_classes, (n, size, size))]
        sw["seg"] = np.ones((n,), np.float32)
    if "grade" in tasks:
        y["grade"] = np.eye(5, dtype=np.float32)[rng.integers(0, 5, n)]
        sw["grade"] = np.ones((n,), np.float32)
    return x, y, sw


def _synthetic_sequence(tmp: Path, n_images: int, size: int, batch: int, n_classes: int, tasks,
                        seed: int = 0):
    """FundusSequence with augmentation over written synthetic IDRiD images (cache preloaded)."""
    from mtunet.data.augment import Augmentation
    from mtunet.data.idrid import read_segmentation
    from mtunet.data.pipeline import FundusSequence
    from mtunet.data.synthetic import write_synthetic

    n_write = max(3, min(n_images, 24))
    root = write_synthetic(tmp / "synthetic", n_seg=n_write, n_grading=0, n_kaggle=0,
                           size=max(256, size), seed=seed)
    records = read_segmentation(root / "IDRiD")
    # Repeat the records to fill the timed steps (augmentation differs per position k).
    records = [records[i % len(records)] for i in range(n_images)]
    seq = FundusSequence(records, size, batch_size=batch, n_seg_classes=n_classes, outputs=tasks,
                         augmentation=Augmentation(), shuffle=True, seed=seed)
    t0 = time.perf_counter()
    seq.preload(progress=False)
    prepare_s = (time.perf_counter() - t0) / n_write
    return seq, prepare_s


# ----------------------------------------------------------------------------------------------
# The benchmark
# ----------------------------------------------------------------------------------------------


def _configure_threads(threads: int | None, inter_threads: int | None) -> str:
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if threads is not None:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
        if inter_threads is not None:
            tf.config.threading.set_inter_op_parallelism_threads(inter_threads)
        intra = tf.config.threading.get_intra_op_parallelism_threads()
        inter = tf.config.threading.get_inter_op_parallelism_threads()
        return f"TF intra-op {intra or 'auto'}, inter-op {inter or 'auto'}"
    if threads is not None or inter_threads is not None:
        print(f"warning: --threads/--inter-threads only apply to TensorFlow; {backend} ignores them "
              f"(use XLA_FLAGS for JAX)", file=sys.stderr)
    return f"{backend}: backend default (XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r})"


def _env_summary() -> str:
    keys = ("TF_ENABLE_ONEDNN_OPTS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
            "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "MKL_NUM_THREADS", "XLA_FLAGS", "TF_XLA_FLAGS")
    set_ = [f"{k}={os.environ[k]}" for k in keys if k in os.environ]
    return ", ".join(set_) or "(none of the thread/BLAS variables set)"


def _cpus() -> str:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count()
    return f"{usable} usable of {os.cpu_count()}"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_benchmark(size: int = 256, batch: int = 2, steps: int = 6, warmup: int = 1,
                  model_name: str = "mtunet", jit: bool = False, threads: int | None = None,
                  inter_threads: int | None = None, deterministic: bool = True,
                  mixed_precision: bool = False, matmul_n: int = 4096, pipeline: bool = True,
                  seed: int = 0, out=print) -> dict:
    """Run the benchmark; print a report through ``out`` and return the figures as a dict."""
    t_start = time.perf_counter()
    res: dict = {"size": size, "batch": batch, "steps": steps, "warmup": warmup,
                 "model": model_name}

    # 1. reference: numpy matmul (before the backend spins up its own thread pools)
    res["blas"] = blas_info()
    res["matmul_n"] = matmul_n
    res["matmul_flops_per_s"] = matmul_flops_per_s(matmul_n, 3)
    threads_desc = _configure_threads(threads, inter_threads)
    from mtunet.train import TrainConfig

    backend, versions = _backend_versions()
    res.update(backend=backend, versions=versions, threads=threads_desc, env=_env_summary())
    config = TrainConfig(epochs=1, jit_compile=jit, deterministic=deterministic,
                         mixed_precision=mixed_precision, seed=seed, verbose=0)
    model, tasks = _built_model(model_name, size, config, jit, res)
    n_classes, flops, imgs = 5, res["flops_forward_per_image"], steps * batch
    x, y, sw = _synthetic_arrays((warmup + steps) * batch, size, n_classes, tasks, seed)

    # 2. training on in-memory arrays
    d_arrays = _fit_timed(model, x, warmup, steps, y=y, sample_weight=sw, batch_size=batch,
                          shuffle=False)
    t_arrays = float(sum(d_arrays))
    res["train_arrays_step_s"] = [round(float(d), 4) for d in d_arrays]
    res["train_arrays_s"] = t_arrays
    res["train_images_per_s"] = imgs / t_arrays
    res["train_flops_per_s"] = 3 * flops * imgs / t_arrays

    # 3. training fed by FundusSequence + augmentation
    if pipeline:
        res.update(_time_pipeline(model, config, (x, y, sw), d_arrays, size, batch, warmup, steps,
                                  n_classes, tasks, seed))
    # 4. whole-image grade batches of a multi-task network: whole network against grade path
    if set(tasks) == {"seg", "grade"}:
        from mtunet.commands.bench_grade_batches import time_grade_batches

        res.update(time_grade_batches(model, config, (x, y, sw), batch, warmup, steps, _fit_timed))
    # 5. inference
    t_inf = _time_inference(model, x, batch, warmup, steps)
    res["infer_s"] = t_inf
    res["infer_images_per_s"] = imgs / t_inf
    res["infer_flops_per_s"] = flops * imgs / t_inf

    mm = res["matmul_flops_per_s"]
    res["train_vs_matmul"] = res["train_flops_per_s"] / mm
    res["infer_vs_matmul"] = res["infer_flops_per_s"] / mm
    res["wall_s"] = time.perf_counter() - t_start
    _report(res, out)
    return res


def _backend_versions() -> tuple[str, dict[str, str]]:
    """The Keras backend and the versions of Keras and of that backend."""
    import keras

    backend = keras.backend.backend()
    versions = {"keras": keras.__version__}
    if backend == "tensorflow":
        import tensorflow as tf

        versions["tensorflow"] = tf.__version__
    elif backend == "jax":
        import jax

        versions["jax"] = jax.__version__
    return backend, versions


def _built_model(model_name: str, size: int, config, jit: bool, res: dict):
    """The compiled model at `size` and its tasks; adds its build time, dtype policy, XLA state,
    parameter count and analytic FLOPs to `res`."""
    from mtunet.models.registry import MODELS, build_model
    from mtunet.train import compile_model, set_precision, set_seeds

    if model_name not in MODELS:
        raise UserError(f"unknown model {model_name!r}; choose one of {', '.join(MODELS)}")
    set_seeds(config.seed, config.deterministic)
    policy = set_precision(config.mixed_precision)
    t0 = time.perf_counter()
    try:
        model = build_model(model_name, (size, size, 3), n_seg_classes=5)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    finally:
        if config.mixed_precision:
            set_precision(False)
    compile_model(model, config)
    res["build_s"] = time.perf_counter() - t0
    res["dtype_policy"] = policy
    res["jit_compile"] = bool(getattr(model, "jit_compile", jit))
    res["xla"] = "yes (JAX always compiles with XLA)" if res["backend"] == "jax" else (
        "yes (jit_compile=True)" if res["jit_compile"] else "no")
    if jit and not res["jit_compile"] and res["backend"] == "tensorflow" and config.deterministic:
        res["xla"] += (" -- Keras turns XLA off while TensorFlow op determinism is on "
                       "(train.fit's default); add --no-determinism")
    res["n_params"] = int(model.count_params())
    flops = analytic_flops(model)
    res["flops_forward_per_image"] = flops
    res["flops_train_per_image"] = 3 * flops
    res["flops_by_layer_type"] = flops_by_type(model)
    return model, tuple(MODELS[model_name].tasks)


def _time_pipeline(model, config, arrays, d_arrays, size, batch, warmup, steps, n_classes,
                   tasks, seed) -> dict:
    """Training fed by FundusSequence + augmentation, then the arrays again (so a clock that
    drifted between runs is seen, not read as pipeline overhead)."""
    from mtunet.train import compile_model

    x, y, sw = arrays
    with tempfile.TemporaryDirectory(prefix="mtunet-bench-") as tmp:
        seq, prep_s = _synthetic_sequence(Path(tmp), (warmup + steps) * batch, size, batch,
                                          n_classes, tasks, seed)
        # A fresh train function: TensorFlow's tf.function(reduce_retracing=True) would
        # otherwise generalise the arrays' and the PyDataset's input specs into one of unknown
        # rank, which Keras's loss code cannot handle. The warm-up step absorbs the retrace.
        compile_model(model, config)
        d_pipe = _fit_timed(model, seq, warmup, steps)
    compile_model(model, config)
    d_after = _fit_timed(model, x, warmup, steps, y=y, sample_weight=sw, batch_size=batch,
                         shuffle=False)
    t_arrays, t_after, t_pipe = float(sum(d_arrays)), float(sum(d_after)), float(sum(d_pipe))
    return {"train_pipeline_step_s": [round(float(d), 4) for d in d_pipe],
            "train_arrays_after_step_s": [round(float(d), 4) for d in d_after],
            "train_arrays_after_s": t_after,
            "arrays_drift": t_after / t_arrays - 1.0,
            "pipeline_overhead_median_step": float(
                np.median(d_pipe) / np.median(list(d_arrays) + list(d_after)) - 1),
            "prepare_s_per_image": prep_s,
            "train_pipeline_s": t_pipe,
            "train_pipeline_images_per_s": steps * batch / t_pipe,
            "pipeline_overhead": t_pipe / ((t_arrays + t_after) / 2) - 1.0}


def _time_inference(model, x, batch, warmup, steps) -> float:
    """Seconds for `steps` prediction batches after `warmup` untimed ones."""
    for i in range(warmup):
        model.predict_on_batch(x[i * batch:(i + 1) * batch])
    t0 = time.perf_counter()
    for i in range(warmup, warmup + steps):
        model.predict_on_batch(x[i * batch:(i + 1) * batch])
    return time.perf_counter() - t0


def _g(v: float) -> str:
    return f"{v / 1e9:,.1f} GFLOP/s"


def _report(r: dict, out=print) -> None:
    versions = ", ".join(f"{k} {v}" for k, v in r["versions"].items())
    out(f"mtunet bench: {r['model']} {r['size']}x{r['size']}, batch {r['batch']}, "
        f"{r['steps']} timed steps after {r['warmup']} warm-up step(s)")
    out(f"  machine        {_cpu_model()}; CPUs {_cpus()}; python {platform.python_version()}")
    out(f"  backend        {r['backend']} ({versions}); dtype policy {r['dtype_policy']}")
    out(f"  XLA            {r['xla']}")
    out(f"  threads        {r['threads']}")
    out(f"  environment    {r['env']}")
    out(f"  numpy BLAS     {r['blas']}")
    out(f"  model          {r['n_params']:,} parameters; built+compiled in {r['build_s']:.1f} s")
    out(f"  FLOPs/image    forward {r['flops_forward_per_image'] / 1e9:,.2f} GFLOP, "
        f"training ~3x = {r['flops_train_per_image'] / 1e9:,.2f} GFLOP "
        f"({', '.join(f'{k} {v / 1e9:,.2f}' for k, v in r['flops_by_layer_type'].items())})")
    out(f"  matmul         numpy float32 {r['matmul_n']}x{r['matmul_n']} best of 3: "
        f"{_g(r['matmul_flops_per_s'])}")
    out(f"  train          {r['train_images_per_s']:.3f} images/s ({1 / r['train_images_per_s']:.2f} "
        f"s/image), {_g(r['train_flops_per_s'])} = {100 * r['train_vs_matmul']:.0f}% of matmul "
        f"[in-memory arrays]")
    out(f"  inference      {r['infer_images_per_s']:.3f} images/s ({1 / r['infer_images_per_s']:.2f} "
        f"s/image), {_g(r['infer_flops_per_s'])} = {100 * r['infer_vs_matmul']:.0f}% of matmul")
    if "pipeline_overhead" in r:
        out(f"  pipeline       FundusSequence + augmentation: {r['train_pipeline_images_per_s']:.3f} "
            f"images/s; overhead vs arrays {100 * r['pipeline_overhead']:+.1f}% "
            f"({r['train_pipeline_s']:.1f} s vs {r['train_arrays_s']:.1f} s before and "
            f"{r['train_arrays_after_s']:.1f} s after: drift {100 * r['arrays_drift']:+.1f}%; median "
            f"step {100 * r['pipeline_overhead_median_step']:+.1f}%); one-off decode+prepare "
            f"{r['prepare_s_per_image'] * 1e3:.0f} ms/image (cached after the first epoch)")
    from mtunet.commands.bench_grade_batches import report_line

    if report_line(r):
        out(report_line(r))
    out(f"  wall time      {r['wall_s']:.0f} s")


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "bench", help="training/inference speed, FLOP/s vs numpy matmul, input-pipeline overhead; "
                      "--gpu-plan: a profile's GPU time and data workers",
        description="Benchmark MTUnet on this machine: training and inference images/s, analytic "
                    "FLOPs and achieved FLOP/s against a numpy float32 matmul measured in the same "
                    "run, and the FundusSequence input pipeline's overhead over in-memory arrays. "
                    "With --gpu-plan, instead: the GPU time of a profile's whole protocol and the "
                    "data workers a GPU needs (mtunet.commands.gpu_plan). "
                    "Backend: KERAS_BACKEND (tensorflow or jax).")
    p.add_argument("--size", type=positive_int, default=None,
                   help="input side in pixels (default 256; with --gpu-plan, the profile's)")
    p.add_argument("--batch", type=positive_int, default=None,
                   help="batch size (default 2; with --gpu-plan, the profile's)")
    p.add_argument("--steps", type=positive_int, default=6,
                   help="timed steps per measurement (default 6)")
    p.add_argument("--warmup", type=positive_int, default=1,
                   help="untimed warm-up steps before each measurement (default 1)")
    p.add_argument("--model", default="mtunet", help="a model of mtunet.models.registry (default mtunet)")
    p.add_argument("--jit", action="store_true", help="compile the train/predict steps with XLA")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="TensorFlow intra-op threads (default: TensorFlow decides)")
    p.add_argument("--inter-threads", type=positive_int, default=None,
                   help="TensorFlow inter-op threads (default: TensorFlow decides)")
    p.add_argument("--no-determinism", action="store_true",
                   help="skip TensorFlow op determinism (train.fit enables it by default)")
    p.add_argument("--mixed-precision", action="store_true",
                   help="mixed_bfloat16 policy (FLOP/s then compare bf16 work with a float32 matmul)")
    p.add_argument("--no-pipeline", action="store_true", help="skip the input-pipeline measurement")
    p.add_argument("--matmul-n", type=positive_int, default=4096,
                   help="side of the numpy reference matmul (default 4096)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    from mtunet.commands.gpu_plan import add_arguments

    add_arguments(p)
    p.set_defaults(func=main)
    return p


def main(args) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.json is not None and args.json.exists() and args.json.is_dir():
        raise UserError(f"--json {args.json}: is a folder, expected a file path")
    if args.gpu_plan:
        from mtunet.commands import gpu_plan

        res = gpu_plan.main(args, machine=f"{_cpu_model()}; CPUs {_cpus()}")
    else:
        res = run_benchmark(size=args.size or 256, batch=args.batch or 2, steps=args.steps,
                            warmup=args.warmup,
                            model_name=args.model, jit=args.jit, threads=args.threads,
                            inter_threads=args.inter_threads,
                            deterministic=not args.no_determinism,
                            mixed_precision=args.mixed_precision, matmul_n=args.matmul_n,
                            pipeline=not args.no_pipeline)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2, default=str))
    return 0
