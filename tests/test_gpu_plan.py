"""`bench --gpu-plan` (mtunet.commands.gpu_plan): the arithmetic from given figures, the count of the
paper profile's training runs, and one plan end to end on a small synthetic set."""
from __future__ import annotations

import math

import pytest

from mtunet.commands import gpu_plan
from mtunet.commands.gpu_protocol import Planned
from mtunet.errors import UserError

PAPER_SIZES = gpu_plan.training_set_sizes(n_seg_train=54, n_grade_train=1135)


# -- arithmetic ------------------------------------------------------------------------------------

def test_workers_are_the_gpu_rate_over_one_workers_rounded_up():
    assert gpu_plan.workers_needed(1000.0, 30.0) == 34           # 33.3 -> 34
    assert gpu_plan.workers_needed(90.0, 30.0) == 3              # exactly 3, not 4
    assert gpu_plan.workers_needed(0.3 * 3, 0.3) == 3            # 0.9 / 0.3 = 3.0000000000000004
    assert gpu_plan.workers_needed(5.0, 100.0) == 1              # one worker is the least
    with pytest.raises(ValueError):
        gpu_plan.workers_needed(100.0, 0.0)


def test_gpu_images_per_s_is_the_sustained_rate_over_the_training_flops_per_image():
    # 1000 TFLOP/s x 0.4 = 4e14 FLOP/s; 1,000 GFLOP per training image -> 400 images/s
    assert gpu_plan.gpu_images_per_s(1000.0, peak_tflops=1000.0, utilisation=0.4) == pytest.approx(400.0)
    # MTUnet at 512 px (1,398 GFLOP per training image) on an H100/H200 at 40 %
    assert gpu_plan.gpu_images_per_s(1398.0, 989.4, 0.4) == pytest.approx(283.1, abs=0.05)
    with pytest.raises(ValueError):
        gpu_plan.gpu_images_per_s(0.0, 1000.0, 0.4)


def test_protocol_gpu_hours_sum_every_runs_training_flops():
    runs = [Planned("table2", "unet", 0, images=100, epochs=10, forward_gflop=200.0),   # 0.6 PFLOP
            Planned("table1", "mtunet", 1, images=1000, epochs=50, forward_gflop=400.0)]  # 60 PFLOP
    # 60.6 PFLOP = 6.06e16 FLOP at 5e14 FLOP/s = 121.2 s
    assert gpu_plan.protocol_gpu_hours(runs, peak_tflops=1000.0, utilisation=0.5) == \
        pytest.approx(121.2 / 3600)
    assert gpu_plan.protocol_gpu_hours(runs, 1000.0, 0.25) == pytest.approx(2 * 121.2 / 3600)


def test_a_mixed_set_takes_the_time_of_each_part():
    assert gpu_plan.mixed_rate([(1, 1.0), (1, 3.0)]) == pytest.approx(1.5)   # 2 images in 4/3 s
    assert gpu_plan.mixed_rate([(10, 5.0), (0, 1.0)]) == pytest.approx(5.0)
    with pytest.raises(ValueError):
        gpu_plan.mixed_rate([(0, 1.0)])


def test_each_training_set_reads_at_its_measured_rate():
    rate = gpu_plan.PipelineRate
    rates = {"seg_train": rate("seg_train", "", 4, uncached=10.0, cached=100.0),
             "grade_train": rate("grade_train", "", 4, uncached=30.0, cached=300.0)}
    sizes = gpu_plan.training_set_sizes(n_seg_train=10, n_grade_train=30)
    by_set = gpu_plan.set_rates(rates, sizes)
    assert by_set["seg_train"] == by_set["graded_seg_train"] == (10.0, 100.0)
    assert by_set["pseudo_train"] == (30.0, 300.0)
    # 10 images at 10/s + 30 at 30/s: 40 images in 2 s
    assert by_set["multitask"] == (pytest.approx(20.0), pytest.approx(200.0))


def test_demand_rows_divide_the_gpus_rate_by_the_workers():
    spec = type("Spec", (), {"image_size": 512})()
    runs = [(Planned("table2", "unet", 0, 54, 50, forward_gflop=100.0), "seg_train", spec),
            (Planned("table2", "unet", 1, 54, 50, forward_gflop=100.0), "seg_train", spec)]
    rows = gpu_plan.demand_rows(runs, {"seg_train": (20.0, 50.0)}, peak_tflops=1000.0, utilisation=0.3)
    assert len(rows) == 1                                   # one row per model and training set
    row = rows[0]
    assert row["gpu_images_per_s"] == pytest.approx(1000.0)  # 3e14 / 3e11
    assert (row["workers_cached"], row["workers_first_epoch"]) == (20, 50)


# -- the paper profile's runs --------------------------------------------------------------------

def test_the_paper_profile_trains_47_distinct_runs():
    p = gpu_plan.profile_parameters("paper")
    runs = gpu_plan.profile_runs(p, PAPER_SIZES)
    by_experiment: dict[str, int] = {}
    for planned, _, _ in runs:
        by_experiment[planned.experiment] = by_experiment.get(planned.experiment, 0) + 1
    # encoder init "auto" is the seed segmenter; Table 2's first UNet too; the ablations at
    # alpha = 1 and bce are Table 1's MTUnet; Fig. 6's VGG16 MTUnet is Table 2's, plus a random one
    assert by_experiment == {"seed segmenter": 1, "encoder init": 1, "table1": 9, "ablation alpha": 4,
                             "ablation seg_loss": 2, "table2": 14, "fig6": 4, "tables3-4": 12}
    steps = {s: sum(r.image_steps for r, ts, _ in runs if ts == s) for s in PAPER_SIZES}
    # IDRiD-S: seed segmenter, random-init UNet, Table 2's 11 segmenters; with MTUnet's grades:
    # Table 2's 3 MTUnets and Fig. 6's 4; Table 1's 9 + 6 ablations; 4 graders x 3 seeds
    assert steps == {"seg_train": 13 * 54 * 50, "graded_seg_train": 7 * 54 * 50,
                     "multitask": 15 * 1189 * 50, "pseudo_train": 12 * 1135 * 50}
    assert sum(steps.values()) == 1_626_750


def test_held_out_images_are_not_trained_on_and_crops_are_refused():
    p = gpu_plan.profile_parameters("paper", heldout_images=10, heldout_grade_images=100)
    images = {ts: {r.images for r, s, _ in gpu_plan.profile_runs(p, PAPER_SIZES) if s == ts}
              for ts in PAPER_SIZES}
    assert images == {"seg_train": {44}, "graded_seg_train": {44}, "multitask": {1179},
                      "pseudo_train": {1035}}
    with pytest.raises(UserError, match="crops"):
        gpu_plan.profile_runs(gpu_plan.profile_parameters("cpu"), PAPER_SIZES)


def test_the_utilisation_option_is_a_share():
    from mtunet.cli import build_parser

    args = build_parser().parse_args(["bench", "--gpu-plan", "--utilisation", "0.5"])
    assert args.gpu_plan and args.utilisation == 0.5 and args.profile == "paper"
    assert args.size is None and args.gpu_tflops is None       # the profile's, gpu_protocol's peak
    for bad in ("1.5", "0", "x"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["bench", "--gpu-plan", "--utilisation", bad])


# -- end to end ------------------------------------------------------------------------------------

def test_the_plan_runs_end_to_end_on_a_small_synthetic_set(tmp_path):
    pytest.importorskip("keras")
    from mtunet.data.synthetic import write_synthetic

    root = write_synthetic(tmp_path / "synthetic", n_seg=3, n_grading=0, n_kaggle=10, size=64, seed=1)
    lines: list[str] = []
    res = gpu_plan.run_gpu_plan(
        "paper", data_dir=root, peak_tflops=100.0, utilisation=0.5, n_images=4, image_size=32,
        batch_size=2, out=lines.append,
        overrides=dict(models=["unet", "mtunet"], variants=["mtunet"], encoders=["mtunet"],
                       grading_models=["densenet201"], alpha_values=[1.0, 5.0], seg_losses=["bce"],
                       init_comparison=["auto"], seeds=[0], epochs=2, seed_epochs=2))
    assert res["synthetic"] and "synthetic images" in lines[1]
    n_seg, n_grade = res["training_sets"]["seg_train"], res["training_sets"]["pseudo_train"]
    assert n_seg > 0 and n_grade > 0
    # seed segmenter (= Table 2's UNet), Table 1's MTUnet (= alpha 1, bce), alpha 5, Table 2's
    # MTUnet (= Fig. 6's), Fig. 6's random VGG16, one DenseNet-201
    assert res["n_runs"] == 6
    assert res["image_steps"] == 2 * (3 * n_seg + 2 * (n_seg + n_grade) + n_grade)
    assert res["gpu_hours"] == pytest.approx(res["train_pflop"] * 1e3 / (100.0 * 0.5) / 3600)
    for rate in res["pipeline"].values():
        assert rate["images"] == min(4, n_seg if rate["role"] == "seg_train" else n_grade)
        assert rate["uncached"] > 0 and rate["cached"] > 0
    for row in res["workers"]:
        assert row["workers_cached"] == math.ceil(row["gpu_images_per_s"] /
                                                  row["worker_images_per_s_cached"] - 1e-9)
    assert any(line.strip().startswith("GPU time") for line in lines)
    assert any(line.strip().startswith("most workers") for line in lines)
