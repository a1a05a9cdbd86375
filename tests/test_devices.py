"""Data parallelism tested on 2 virtual CPU devices (TensorFlow logical devices; JAX's forced host
device count): a run on 2 devices ends where the run on 1 device of the same distributed path
(``MTUNET_DATA_PARALLEL=1``) with the same global batch ends, to floating-point tolerance; a
killed 2-device run resumes; run.json records the devices."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

SCRIPT = textwrap.dedent('''
    import os, sys
    if os.environ["KERAS_BACKEND"] == "tensorflow":
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    from mtunet.train import TrainConfig, fit

    class Batches(keras.utils.PyDataset):
        """3 fixed batches of 8 random 16-px images with random 5-class masks."""
        def __init__(self):
            super().__init__()
            rng = np.random.default_rng(0)
            self.x = rng.uniform(0, 255, (3, 8, 16, 16, 3)).astype("float32")
            self.y = np.eye(5, dtype="float32")[rng.integers(0, 5, (3, 8, 16, 16))]
        def __len__(self):
            return 3
        def __getitem__(self, i):
            return self.x[i], {"seg": self.y[i]}, {"seg": np.ones(8, "float32")}

    def build():   # no batch norm: per-device batch statistics would differ from one device's
        x = keras.Input((16, 16, 3))
        h = keras.layers.Rescaling(1 / 255)(x)
        h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(h)
        seg = keras.layers.Conv2D(5, 1, activation="softmax", name="seg")(h)
        return keras.Model(x, {"seg": seg})

    class Kill(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt("simulated kill")

    root, run_id, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    config = TrainConfig(epochs=3, learning_rate=1e-2, seed=0, verbose=0, seg_loss="bce")
    result = fit(build, Batches(), config, run_id, runs_root=root,
                 describe={"input_shape": [16, 16, 3]}, callbacks=[Kill()] if mode == "kill" else None)
    np.savez(os.path.join(root, run_id + ".npz"), *result.model.get_weights())
''')

BACKENDS = ["tensorflow"] + (["jax"] if importlib.util.find_spec("jax") else [])


def _run(backend, root, run_id, devices, mode="train"):
    env = {**os.environ, "KERAS_BACKEND": backend}
    env["MTUNET_DATA_PARALLEL"] = str(devices)
    if backend == "jax":
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()
    return subprocess.run([sys.executable, "-c", SCRIPT, str(root), run_id, mode], env=env,
                          capture_output=True, text=True, timeout=600)


def _weights(root, run_id):
    with np.load(root / f"{run_id}.npz") as data:
        return [data[k] for k in sorted(data.files, key=lambda k: int(k.split("_")[1]))]


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_virtual_devices_match_one_and_a_killed_run_resumes(backend, tmp_path):
    one = _run(backend, tmp_path, "one", devices=1)
    assert one.returncode == 0, one.stderr[-3000:]
    two = _run(backend, tmp_path, "two", devices=2)
    assert two.returncode == 0, two.stderr[-3000:]
    for a, b in zip(_weights(tmp_path, "one"), _weights(tmp_path, "two")):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    info = json.loads((tmp_path / "two" / "run.json").read_text())
    assert info["devices"].startswith(("MirroredStrategy(2", "DataParallel(2"))
    assert json.loads((tmp_path / "one" / "run.json").read_text())["devices"].startswith(
        ("MirroredStrategy(1", "DataParallel(1"))

    killed = _run(backend, tmp_path, "resumed", devices=2, mode="kill")
    assert killed.returncode != 0 and "simulated kill" in killed.stderr
    assert (tmp_path / "resumed" / "checkpoint.npz").exists()
    resumed = _run(backend, tmp_path, "resumed", devices=2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((tmp_path / "resumed" / "run.json").read_text())["resumed"] is True
    for a, b in zip(_weights(tmp_path, "two"), _weights(tmp_path, "resumed")):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_more_devices_than_the_backend_has_is_a_clear_error(monkeypatch):
    from mtunet.devices import parallel_devices
    from mtunet.errors import UserError

    monkeypatch.setenv("MTUNET_DATA_PARALLEL", "64")
    with pytest.raises(UserError, match="MTUNET_DATA_PARALLEL=64"):
        parallel_devices()
    monkeypatch.setenv("MTUNET_DATA_PARALLEL", "two")
    with pytest.raises(UserError, match="device count"):
        parallel_devices()


def test_cpu_flags_read_from_cpuinfo(tmp_path):
    from mtunet import devices

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu sse avx2 fma\n\n"
                       "processor\t: 1\nflags\t\t: other\n")
    assert devices.cpu_flags(str(cpuinfo)) == {"fpu", "sse", "avx2", "fma"}
    assert devices.cpu_flags(str(tmp_path / "absent")) == set()


def test_bf16_warning_only_where_bf16_is_emulated():
    from mtunet import devices

    assert devices.bf16_warning(True, {"avx2", "fma"}) is not None
    assert "mixed_precision: false" in devices.bf16_warning(True, {"avx2"})
    assert devices.bf16_warning(True, {"avx2", "avx512_bf16"}) is None
    assert devices.bf16_warning(True, {"amx_bf16"}) is None
    assert devices.bf16_warning(False, {"avx2"}) is None
    assert devices.bf16_warning(True, set()) is None      # flags unknown: no guess
