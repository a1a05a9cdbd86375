"""mtunet.study: the lesion-size table that explains resolution effects on Dice."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mtunet.study import datasets
from mtunet.data.records import Record


def _record(tmp_path, squares: list[tuple[int, int, int]], size: int = 200) -> Record:
    """A uniformly bright 'fundus' (the crop is the whole frame) with square MA lesions."""
    image = np.full((size, size, 3), 120, np.uint8)
    mask = np.zeros((size, size), np.uint8)
    for y, x, side in squares:
        mask[y:y + side, x:x + side] = 255
    Image.fromarray(image).save(tmp_path / "img.png")
    Image.fromarray(mask).save(tmp_path / "ma.png")
    return Record("img", tmp_path / "img.png", None, {"MA": tmp_path / "ma.png"}, has_masks=True)


def test_lesion_sizes_measures_each_component(tmp_path):
    record = _record(tmp_path, [(8, 8, 4), (100, 100, 20)])
    table = datasets.lesion_sizes([record], sizes=(50, 200))
    assert list(table["lesion"]) == ["MA", "MA", "MA"]          # native, 50, 200
    at50 = table[table["image_size"] == 50].iloc[0]
    assert at50["components"] == 2
    d_small, d_big = 2 * np.sqrt(16 / np.pi) * 0.25, 2 * np.sqrt(400 / np.pi) * 0.25
    assert at50["median_diameter_px"] == pytest.approx((d_small + d_big) / 2)
    assert at50["share_below_1px"] == 0.0 and at50["share_below_3px"] == 0.5
    # any-overlap at 1/4 scale, both squares aligned to the 4-pixel grid: 1 + 25 output pixels
    # for a true area of (16 + 400) / 16 = 26 pixels
    assert at50["mask_inflation"] == pytest.approx(1.0)
    native = table.iloc[0]
    assert native["image_size"] == "native (~200)" and native["mask_inflation"] == 1.0


def test_lesion_sizes_inflation_when_lesions_straddle_pixels(tmp_path):
    record = _record(tmp_path, [(2, 2, 1)])        # one pixel, at 1/4 scale still one output pixel
    row = datasets.lesion_sizes([record], sizes=(50,)).iloc[1]
    assert row["mask_inflation"] == pytest.approx(16.0)
    assert row["share_below_1px"] == 1.0


def test_lesion_sizes_on_a_study_without_masks_is_empty(tmp_path):
    image = tmp_path / "g.png"
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(image)
    table = datasets.lesion_sizes([Record("g", image, 2)])
    assert table.empty and list(table.columns) == datasets.LESION_SIZE_COLUMNS


def test_lesion_sizes_misaligned_lesions_get_fatter(tmp_path):
    record = _record(tmp_path, [(10, 10, 4)])    # rows/cols 2.5-3.5 at 1/4 scale: 2x2 pixels
    row = datasets.lesion_sizes([record], sizes=(50,)).iloc[1]
    assert row["mask_inflation"] == pytest.approx(4.0)


def test_pooled_dice_over_seeds_from_counts():
    from mtunet.study.table2_segmentation import pooled_dice_over_seeds

    # two images, two seeds: (intersection, predicted, true) per image
    counts = np.array([[[5, 10, 10], [0, 0, 10]],
                       [[5, 10, 10], [10, 10, 10]]], float)       # (N images, S seeds, 3)
    # seed 0: 2*10/(20+20) = 50 %; seed 1: 2*10/(10+20) = 66.7 %
    assert pooled_dice_over_seeds(counts) == pytest.approx((50 + 200 / 3) / 2)


def test_details_put_area_ratio_and_per_image_dice_beside_each_group():
    import pandas as pd

    from mtunet.study.table2_segmentation import details

    scores = pd.DataFrame({"network": ["UNet"] * 4, "seed": [0, 1, 0, 1],
                           "metric": ["red_area_ratio"] * 2 + ["yellow_dice_per_image"] * 2,
                           "value": [2.0, 4.0, 30.0, 50.0]})
    table = details(scores).set_index("metric")
    assert table.loc["red", "area_ratio"] == 3.0 and table.loc["yellow", "dice_per_image"] == 40.0
    assert np.isnan(table.loc["red", "dice_per_image"])


def test_encoder_init_reads_the_run_and_names_both_steps_of_a_two_step_run(tmp_path):
    import json

    from mtunet.study.parameters import DEFAULTS
    from mtunet.study.runs import Context

    ctx = Context.from_parameters({**DEFAULTS, "profile": "test", "runs_dir": str(tmp_path)})
    one, two = ctx.spec(model="mtunet", seed=0), ctx.spec(model="variant_b", seed=0)
    assert ctx.encoder_init(one, []) == ""                                  # not trained
    (ctx.run_dir(one, [])).mkdir(parents=True)
    (ctx.run_dir(one, []) / "run.json").write_text(json.dumps({"encoder_init": "hed-bsds500"}))
    assert ctx.encoder_init(one, []) == "hed-bsds500"
    for step, init in (("step1-segmenter", "random"), ("step2-grader", "hed-bsds500")):
        (ctx.run_dir(two, []) / step).mkdir(parents=True)
        (ctx.run_dir(two, []) / step / "run.json").write_text(json.dumps({"encoder_init": init}))
    assert ctx.encoder_init(two, []) == "segmenter: random; grader: hed-bsds500"


def test_training_runs_inventory_per_notebook_with_resumes(tmp_path):
    """Each notebook's rows are replaced when it runs again; a resumed run says so, with its
    exactness; a two-step run sums its steps; a run never trained is left out."""
    import json

    import pandas as pd

    from mtunet.study.parameters import DEFAULTS
    from mtunet.study.runs import Context, write_training_runs

    results = tmp_path / "results"
    results.mkdir()

    def fake_run(folder, init, epochs_seconds, resumed=False, exact=None):
        folder.mkdir(parents=True)
        (folder / "run.json").write_text(json.dumps({"encoder_init": init, "dtype_policy": "mixed_bfloat16",
                                                     "resumed": resumed, "resume_exact": exact}))
        pd.DataFrame({"epoch": range(len(epochs_seconds)), "epoch_seconds": epochs_seconds}).to_csv(
            folder / "history.csv", index=False)

    ctx = Context.from_parameters({**DEFAULTS, "profile": "test", "runs_dir": str(tmp_path / "runs")})
    unet, vb, never = (ctx.spec(model=m, seed=0) for m in ("unet", "variant_b", "fpn"))
    fake_run(ctx.run_dir(unet, []), "hed-bsds500", [60, 60], resumed=True, exact=True)
    fake_run(ctx.run_dir(vb, []) / "step1-segmenter", "random", [30])
    fake_run(ctx.run_dir(vb, []) / "step2-grader", "hed-bsds500", [90])
    ctx.run_dir(never, [])
    rows = write_training_runs(ctx, results, "04").set_index("model")
    assert set(rows.index) == {"unet", "variant_b"}
    assert rows.loc["unet", "resumed"] and rows.loc["unet", "resume_exact"]
    assert rows.loc["unet", "train_minutes"] == 2.0 and rows.loc["unet", "epochs"] == 2
    assert rows.loc["variant_b", "train_minutes"] == 2.0 and rows.loc["variant_b", "epochs"] == 2
    assert rows.loc["variant_b", "encoder_init"] == "random; hed-bsds500"
    assert not rows.loc["variant_b", "resumed"] and pd.isna(rows.loc["variant_b", "resume_exact"])

    other = Context.from_parameters({**DEFAULTS, "profile": "test", "runs_dir": str(tmp_path / "runs")})
    other.run_dir(unet, [])
    write_training_runs(other, results, "05")
    write_training_runs(other, results, "04")              # 04 again, now with one run only
    table = pd.read_csv(results / "training_runs.csv", dtype={"notebook": str})
    assert sorted(zip(table["notebook"], table["model"])) == [("04", "unet"), ("05", "unet")]


def test_each_training_session_records_its_cpu_and_the_inventory_names_every_type(tmp_path, monkeypatch):
    """A run started on one CPU type and resumed on another says so in training_runs; a run
    trained before the record existed has a blank, not a guess; an unreadable line is skipped."""
    import json

    from mtunet.report import manifest
    from mtunet.study import runs
    from mtunet.study.parameters import DEFAULTS

    ctx = runs.Context.from_parameters({**DEFAULTS, "profile": "test", "runs_dir": str(tmp_path / "runs")})
    spec = ctx.spec(model="unet", seed=0)
    folder = ctx.run_dir(spec, [])
    for label in ("CPU A [aaaa]", "CPU A [aaaa]"):                       # start, resume
        monkeypatch.setattr(manifest, "cpu", lambda label=label: {"type": label[-5:-1], "label": label})
        runs.record_training_cpu(folder)
    monkeypatch.setattr(manifest, "cpu", lambda: {"type": "bbbb", "label": "CPU B [bbbb]"})
    with pytest.warns(UserWarning, match="started on CPU A .aaaa., resumes on CPU B .bbbb."):
        runs.record_training_cpu(folder)                                   # resumed elsewhere
    with open(folder / runs.TRAINED_ON, "a") as handle:
        handle.write("{not json\n")
    assert runs.training_cpus(folder) == ["CPU A [aaaa]", "CPU B [bbbb]"]
    assert json.loads((folder / runs.TRAINED_ON).read_text().splitlines()[0])["cpu_type"] == "aaaa"

    (folder / "run.json").write_text(json.dumps({"encoder_init": "random", "dtype_policy": "float32"}))
    assert runs.run_inventory_row(spec, folder)["trained_on"] == "CPU A [aaaa]; CPU B [bbbb]"
    old = ctx.run_dir(ctx.spec(model="unet", seed=1), [])
    old.mkdir(parents=True)
    (old / "run.json").write_text(json.dumps({"encoder_init": "random"}))
    assert runs.run_inventory_row(ctx.spec(model="unet", seed=1), old)["trained_on"] == ""


def test_the_cpu_type_is_read_from_cpuinfo_and_the_cache_sizes(tmp_path):
    """The CPU identity holds what changes a run's rounding (instruction sets, caches, CPU count)
    and nothing else; two machines of one type get one `type`, another cache size another."""
    from mtunet.report.manifest import cpu

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\n"
                    "model name\t: AMD EPYC\nstepping\t: 1\nflags\t\t: fpu sse4_2 avx avx2 fma avx512f "
                    "avx512_bf16 rdrand\n\nprocessor\t: 1\nmodel name\t: other\n")
    caches = tmp_path / "cache"
    for index, (level, kind, size) in enumerate([(1, "Data", "48K"), (2, "Unified", "1024K")]):
        folder = caches / f"index{index}"
        folder.mkdir(parents=True)
        for name, value in (("level", level), ("type", kind), ("size", size)):
            (folder / name).write_text(f"{value}\n")
    here = cpu(info, caches)
    assert here["model_name"] == "AMD EPYC" and here["family"] == "26" and here["model"] == "2"
    assert here["isa"] == ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16"]
    assert here["caches"] == {"L1d": "48K", "L2": "1024K"}
    assert here["label"].startswith("AMD EPYC, family 26 model 2, AVX-512 + BF16, L2 1024K, ")
    assert here["label"].endswith(f"[{here['type']}]") and cpu(info, caches)["type"] == here["type"]
    (caches / "index1" / "size").write_text("2048K\n")
    assert cpu(info, caches)["type"] != here["type"]
    assert cpu(tmp_path / "absent", tmp_path / "absent")["isa"] == []       # macOS: no cpuinfo


def test_training_runs_table_writes_epochs_as_integers():
    from mtunet.study.runs import _epoch_text

    assert _epoch_text(3.0) == "3" and _epoch_text("3; 5") == "3; 5" and _epoch_text(4) == "4"
    assert _epoch_text(float("nan")) == "" and _epoch_text("") == "" and _epoch_text(None) == ""


def test_eager_grading_predictions_hold_a_bounded_number_of_pixels():
    """An eagerly called model keeps every layer's output for the whole batch: at 512 px its
    grading predictions go one image at a time; traced models and small images keep the default."""
    from types import SimpleNamespace

    from mtunet.study.runs import eager_prediction_batch

    eager, traced = SimpleNamespace(run_eagerly=True), SimpleNamespace(run_eagerly=False)
    assert eager_prediction_batch(eager, 512) == {"batch_size": 1}
    assert eager_prediction_batch(eager, 256) == {"batch_size": 4}
    assert eager_prediction_batch(eager, 128) == {} == eager_prediction_batch(eager, 64)
    assert eager_prediction_batch(traced, 512) == {} == eager_prediction_batch(object(), 512)
