"""The devices a run trains on: data parallelism across every visible accelerator, or across
the first N devices of the backend when ``MTUNET_DATA_PARALLEL=N`` says so (CPU devices
included: how the multi-device path is tested here on virtual devices, TensorFlow's logical
CPUs or JAX's ``--xla_force_host_platform_device_count``).

TensorFlow: ``tf.distribute.MirroredStrategy``; JAX: ``keras.distribution.DataParallel``. Each
step's global batch is split across the devices and the gradients are averaged, so a run on N
devices is the run on one to floating-point tolerance (batch norms excepted: they see their
device's share of the batch). ``run.json`` records the devices a run trained on.
"""
from __future__ import annotations

import contextlib
import os

import keras

from mtunet.errors import UserError

ENV = "MTUNET_DATA_PARALLEL"


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


# CPU flags of native bfloat16 arithmetic: without one, XLA/oneDNN emulate bf16 and a
# mixed_bfloat16 run gives the same numbers far slower (MTUnet, 128 px, batch 8, on an AVX2-only
# CPU: 82 s per step against 6.2 s in float32)
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set[str]:
    """The first CPU's feature flags (empty where the file is absent, as on macOS)."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def bf16_warning(mixed_precision: bool, flags: set[str] | None = None) -> str | None:
    """Why a mixed_bfloat16 run will crawl here, or None: it asks for bf16 with no accelerator,
    on a CPU whose flags are known and have no native bf16 arithmetic."""
    if not mixed_precision or visible_accelerators():
        return None
    flags = cpu_flags() if flags is None else flags
    if not flags or flags & set(NATIVE_BF16_FLAGS):
        return None
    return ("mixed_precision is on, but this CPU has no native bfloat16 arithmetic (none of "
            f"{', '.join(NATIVE_BF16_FLAGS)}): the same numbers come out, an order of magnitude "
            "slower than float32; set mixed_precision: false for a run on this machine")


def requested_devices() -> int | None:
    """``$MTUNET_DATA_PARALLEL`` as a device count (None when unset)."""
    text = os.environ.get(ENV, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise UserError(f"{ENV}={text!r}: expected a device count >= 1")
    return int(text)


def parallel_devices() -> list[str]:
    """The devices data parallelism spreads a run over: every accelerator, or the first
    ``$MTUNET_DATA_PARALLEL`` devices of the backend (accelerators first, else CPUs)."""
    backend = keras.backend.backend()
    wanted = requested_devices()
    if backend == "tensorflow":
        import tensorflow as tf

        accelerators = [d.name for d in tf.config.list_logical_devices("GPU")]
        pool = accelerators or ([d.name for d in tf.config.list_logical_devices("CPU")] if wanted else [])
    elif backend == "jax":
        import jax

        accelerators = [f"{d.platform}:{d.id}" for d in jax.devices() if d.platform != "cpu"]
        pool = accelerators or ([f"cpu:{d.id}" for d in jax.devices("cpu")] if wanted else [])
    else:  # pragma: no cover
        pool = []
    if wanted is not None:
        if wanted > len(pool):
            raise UserError(f"{ENV}={wanted}: the {backend} backend sees {len(pool)} device(s) "
                            f"({', '.join(pool) or 'none'})")
        pool = pool[:wanted]
    return pool


@contextlib.contextmanager
def distribution_scope():
    """Data parallelism across :func:`parallel_devices` (a no-op for one device or none); yields
    the description run.json records. Build and compile the model inside it."""
    devices = parallel_devices()
    backend = keras.backend.backend()
    # asked for explicitly (even one device): the distributed path, so that a run on N devices
    # and one on a single device differ only in the device count
    if len(devices) < 1 or (len(devices) == 1 and requested_devices() is None):
        yield "single-device" if not devices else f"single-device ({devices[0]})"
    elif backend == "tensorflow":
        import tensorflow as tf

        with tf.distribute.MirroredStrategy(devices=devices).scope():
            yield f"MirroredStrategy({len(devices)}: {', '.join(devices)})"
    else:
        previous = keras.distribution.distribution()
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        try:
            yield f"DataParallel({len(devices)}: {', '.join(devices)})"
        finally:
            keras.distribution.set_distribution(previous)
