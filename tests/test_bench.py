"""mtunet.bench: analytic FLOPs on toy models with hand-computed counts, and the matmul reference."""
from __future__ import annotations

import pytest

keras = pytest.importorskip("keras")

from mtunet.commands.bench import analytic_flops, matmul_flops_per_s  # noqa: E402

pytestmark = pytest.mark.backend


def test_dense_only():
    inputs = keras.Input((10,))
    x = keras.layers.Dense(20)(inputs)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    assert analytic_flops(model) == 2 * 10 * 20 + 2 * 20 * 3  # 520


def test_dense_on_a_sequence_counts_every_position():
    inputs = keras.Input((7, 4))
    model = keras.Model(inputs, keras.layers.Dense(6)(inputs))
    assert analytic_flops(model) == 2 * 4 * 6 * 7


def test_conv2d_only():
    inputs = keras.Input((16, 12, 3))
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)            # 16x12 out
    x = keras.layers.Conv2D(4, (3, 1), strides=2, padding="valid")(x)  # 7x6 out
    x = keras.layers.Conv2D(6, 1, groups=2)(x)                          # grouped 1x1
    model = keras.Model(inputs, x)
    expected = (2 * 3 * 3 * 3 * 8 * 16 * 12
                + 2 * 3 * 1 * 8 * 4 * 7 * 6
                + 2 * 1 * 1 * (4 // 2) * 6 * 7 * 6)
    assert analytic_flops(model) == expected


def test_conv2d_transpose_counts_per_input_pixel():
    inputs = keras.Input((5, 4, 6))
    x = keras.layers.Conv2DTranspose(3, 2, strides=2, padding="same")(inputs)   # 10x8 out
    y = keras.layers.Conv2DTranspose(2, 3, strides=2, padding="same")(x)        # 20x16 out
    model = keras.Model(inputs, y)
    # kernel = stride: 2*kh*kw*Cin*Cout*H_in*W_in == 2*Cin*Cout*H_out*W_out
    first = 2 * 2 * 2 * 6 * 3 * 5 * 4
    assert first == 2 * 6 * 3 * 10 * 8
    second = 2 * 3 * 3 * 3 * 2 * 10 * 8
    assert analytic_flops(model) == first + second


def test_nested_model_and_ignored_layers():
    inner_in = keras.Input((8, 8, 2))
    inner = keras.Model(inner_in, keras.layers.Conv2D(4, 3, padding="same")(inner_in), name="inner")
    inputs = keras.Input((8, 8, 2))
    x = inner(inputs)
    x = keras.layers.MaxPooling2D()(x)                 # not counted
    x = keras.layers.GlobalMaxPooling2D()(x)           # not counted
    outputs = keras.layers.Dense(5)(x)
    model = keras.Model(inputs, outputs)
    assert analytic_flops(model) == 2 * 9 * 2 * 4 * 64 + 2 * 4 * 5


def test_matmul_flops_positive():
    rate = matmul_flops_per_s(n=256, repeats=3)
    assert rate > 0


def test_matmul_rejects_bad_arguments():
    with pytest.raises(ValueError):
        matmul_flops_per_s(n=0)


def test_benchmark_times_the_arrays_before_and_after_the_pipeline():
    """The overhead is measured against both arrays runs, and their drift is reported beside it."""
    from mtunet.commands.bench import run_benchmark

    lines: list[str] = []
    res = run_benchmark(size=32, batch=1, steps=2, warmup=1, model_name="unet", matmul_n=64,
                        out=lines.append)
    assert len(res["train_arrays_step_s"]) == len(res["train_arrays_after_step_s"]) == 2
    reference = (res["train_arrays_s"] + res["train_arrays_after_s"]) / 2
    assert res["pipeline_overhead"] == pytest.approx(res["train_pipeline_s"] / reference - 1)
    assert res["arrays_drift"] == pytest.approx(res["train_arrays_after_s"] / res["train_arrays_s"] - 1)
    assert any("drift" in line for line in lines)


def test_the_grade_batches_of_a_multitask_network_are_timed_both_ways():
    """MTUnet's whole-image grade batch through the whole network and through its grade path:
    both rates are reported, with their ratio."""
    from mtunet.commands.bench import run_benchmark

    lines: list[str] = []
    res = run_benchmark(size=32, batch=2, steps=2, warmup=1, model_name="mtunet", matmul_n=64,
                        pipeline=False, out=lines.append)
    assert res["grade_batch_full_images_per_s"] > 0 and res["grade_batch_encoder_images_per_s"] > 0
    assert res["grade_batch_speedup"] == pytest.approx(
        res["grade_batch_encoder_images_per_s"] / res["grade_batch_full_images_per_s"])
    assert any(line.strip().startswith("grade batches") for line in lines)
