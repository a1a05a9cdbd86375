"""Figures: every function returns a Figure (or array), saves a non-empty PNG; overlay colours."""
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from mtunet.report import figures as F  # noqa: E402
from mtunet.config import CLASS_COLOURS, CLASS_INDEX  # noqa: E402

RNG = np.random.default_rng(0)


def _image(h=64, w=80):
    return RNG.integers(0, 255, size=(h, w, 3), dtype=np.uint8)


def _class_map(h=64, w=80):
    cm = np.zeros((h, w), np.uint8)
    cm[5:10, 5:10] = CLASS_INDEX["MA"]
    cm[20:30, 20:35] = CLASS_INDEX["HE"]
    cm[40:50, 10:30] = CLASS_INDEX["EX"]
    cm[45:60, 50:70] = CLASS_INDEX["SE"]
    cm[2:15, 60:75] = CLASS_INDEX["OD"]
    return cm


def _grading(n=120, seed=1):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 5, size=n)
    logits = rng.normal(size=(n, 5))
    logits[np.arange(n), y] += 2.0
    prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, prob


def _saved(fig, tmp_path, name):
    assert isinstance(fig, Figure)
    assert fig._suptitle is not None or any(ax.get_title() for ax in fig.axes)
    path = F.save(fig, tmp_path / "sub" / f"{name}.png")
    assert path.exists() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return path


# ---------------------------------------------------------------------------- pure arrays

def test_overlay_paints_ma_and_keeps_background():
    img = np.full((16, 16, 3), 100, np.uint8)
    cm = np.zeros((16, 16), np.uint8)
    cm[3, 4] = CLASS_INDEX["MA"]
    out = F.overlay(img, cm, alpha=1.0)
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert tuple(out[3, 4]) == CLASS_COLOURS["MA"]
    assert np.array_equal(out[0, 0], img[0, 0])
    mask = np.ones((16, 16), bool)
    mask[3, 4] = False
    assert np.array_equal(out[mask], img[mask])
    # default alpha blends towards the MA colour
    blended = F.overlay(img, cm).astype(int)[3, 4]
    expected = np.round(0.45 * 100 + 0.55 * np.array(CLASS_COLOURS["MA"])).astype(int)
    assert np.abs(blended - expected).max() <= 1


def test_overlay_od_optional():
    img = np.zeros((8, 8, 3), np.uint8)
    cm = np.zeros((8, 8), np.uint8)
    cm[1, 1] = CLASS_INDEX["OD"]
    assert tuple(F.overlay(img, cm, alpha=1.0)[1, 1]) == CLASS_COLOURS["OD"]
    assert tuple(F.overlay(img, cm, alpha=1.0, include_od=False)[1, 1]) == (0, 0, 0)


def test_overlay_smaller_class_map_is_resized_nearest():
    img = np.zeros((40, 60, 3), np.uint8)
    small = np.zeros((4, 6), np.uint8)
    small[0, 0] = CLASS_INDEX["EX"]  # covers the top-left 10 x 10 block of the image
    out = F.overlay(img, small, alpha=1.0)
    assert out.shape == (40, 60, 3)
    assert tuple(out[5, 5]) == CLASS_COLOURS["EX"]
    assert tuple(out[30, 50]) == (0, 0, 0)


def test_error_map_rgb_colours_tp_fp_fn():
    img = np.full((6, 6, 3), 50, np.uint8)
    truth = np.zeros((6, 6), np.uint8)
    pred = np.zeros((6, 6), np.uint8)
    truth[1, 1] = pred[1, 1] = CLASS_INDEX["MA"]          # TP
    pred[2, 2] = CLASS_INDEX["HE"]                         # FP
    truth[3, 3] = CLASS_INDEX["HE"]                        # FN
    pred[4, 4] = truth[4, 4] = CLASS_INDEX["EX"]           # other group: TN for red
    rgb = F.error_map_rgb(img, pred, truth, group="red")
    assert tuple(rgb[1, 1]) == F.ERROR_COLOURS["TP"]
    assert tuple(rgb[2, 2]) == F.ERROR_COLOURS["FP"]
    assert tuple(rgb[3, 3]) == F.ERROR_COLOURS["FN"]
    assert tuple(rgb[4, 4]) == (50, 50, 50)
    assert tuple(rgb[0, 0]) == (50, 50, 50)
    yellow = F.error_map_rgb(img, pred, truth, group="yellow")
    assert tuple(yellow[4, 4]) == F.ERROR_COLOURS["TP"]
    assert tuple(yellow[1, 1]) == (50, 50, 50)
    # error colours differ from every lesion colour
    assert not set(F.ERROR_COLOURS.values()) & set(CLASS_COLOURS.values())


# ---------------------------------------------------------------------------- figures

def test_class_balance(tmp_path):
    summary = pd.DataFrame({"role": ["train", "val", "test"],
                            "grade_0": [500, 60, 30], "grade_1": [50, 6, 3],
                            "grade_2": [120, 14, 8], "grade_3": [20, 3, 2],
                            "grade_4": [15, 2, 1]})
    lesions = pd.DataFrame({"lesion": ["MA", "HE", "EX", "SE"],
                            "fraction": [0.0003, 0.006, 0.009, 0.001]})
    _saved(F.class_balance(summary, lesions), tmp_path, "class_balance")
    _saved(F.class_balance(summary), tmp_path, "class_balance_only")


def test_sample_grid(tmp_path):
    imgs = [_image() for _ in range(3)]
    maps = [_class_map(), _class_map(32, 40), None]
    fig = F.sample_grid(imgs, maps, ["a", "b", "c"], ncols=4)
    assert len(fig.axes) == 2 * 4  # 2 rows of 4 panels: 2 samples (image + overlay) per row
    _saved(fig, tmp_path, "sample_grid")


def test_training_curves(tmp_path):
    h1 = pd.DataFrame({"epoch": range(10), "loss": np.linspace(1, 0.2, 10),
                       "val_loss": np.linspace(1.1, 0.4, 10), "dice": np.linspace(0, 0.5, 10)})
    h2 = pd.DataFrame({"loss": np.linspace(1.2, 0.3, 8)})
    fig = F.training_curves({"MTUnet": h1, "UNet": h2}, metrics=("loss", "val_dice", "kappa"))
    assert len(fig.axes) == 3
    assert len(fig.axes[0].lines) == 3
    assert any(line.get_linestyle() == "--" for line in fig.axes[0].lines)
    _saved(fig, tmp_path, "training_curves")


def test_overlay_comparison(tmp_path):
    img = _image(96, 96)
    truth = _class_map(96, 96)
    preds = {"UNet": np.roll(truth, 3, axis=0), "MTUnet": truth, "ResNet": np.zeros_like(truth)}
    fig = F.overlay_comparison(img, truth, preds, title="Fig. 6")
    assert sum(ax.get_title() in ("UNet", "MTUnet", "ResNet") for ax in fig.axes) == 3
    assert fig.legends
    _saved(fig, tmp_path, "overlay_comparison")


def test_lesion_error_map(tmp_path):
    truth = _class_map()
    pred = np.roll(truth, 2, axis=1)
    _saved(F.lesion_error_map(_image(), pred, truth, group="red"), tmp_path, "err_red")
    _saved(F.lesion_error_map(_image(), np.zeros_like(truth), np.zeros_like(truth),
                              group="yellow"), tmp_path, "err_empty")


def test_roc_curves_with_absent_grade(tmp_path):
    y, prob = _grading()
    y[y == 3] = 2
    fig = F.roc_curves(y, prob, title="ROC")
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any("no image of this grade" in t for t in texts)   # readable, not "y_true"
    assert sum("AUC" in t for t in texts) == 4
    _saved(fig, tmp_path, "roc")


def test_confusion_matrix_plot(tmp_path):
    y, prob = _grading()
    _saved(F.confusion_matrix_plot(y, prob.argmax(1), title="Confusion"), tmp_path, "cm")


def test_reliability_diagram_and_ece(tmp_path):
    y, prob = _grading()
    from mtunet.metrics import expected_calibration_error, reliability_curve

    conf, acc, counts = reliability_curve(y, prob, 10)
    assert counts.sum() == len(y)
    manual = sum(c * abs(a - m) for c, a, m in zip(counts, acc, conf) if c) / len(y)
    assert expected_calibration_error(y, prob, 10) == pytest.approx(manual)
    # perfectly confident and right: ECE 0
    onehot = np.eye(5)[y]
    assert expected_calibration_error(y, onehot, 10) == pytest.approx(0.0)
    fig = F.reliability_diagram(y, prob, n_bins=10, title="Calibration")
    assert "ECE" in fig.axes[0].get_title()
    _saved(fig, tmp_path, "reliability")


def test_lesion_size_plot_draws_one_line_per_lesion_and_skips_native_rows():
    import pandas as pd

    from mtunet.report import figures

    table = pd.DataFrame({"lesion": ["MA", "MA", "MA", "EX", "EX", "EX"],
                          "image_size": ["native (~800)", 128, 512, "native (~800)", 128, 512],
                          "share_below_1px": [0, .7, 0, 0, .6, 0],
                          "mask_inflation": [1, 4.9, 1.7, 1, 2.7, 1.4]})
    fig = figures.lesion_size_plot(table)
    left, right = fig.axes
    assert [line.get_label() for line in left.get_lines()] == ["MA", "EX"]
    assert list(left.get_lines()[0].get_xdata()) == [128, 512]
    assert list(left.get_lines()[0].get_ydata()) == [70.0, 0.0]
    assert list(right.get_lines()[1].get_ydata()) == [2.7, 1.4]


# ---------------------------------------------------------------------------- readable figures

def _legend_texts(fig):
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    return [t.get_text() for lg in legends for t in lg.get_texts()]


def _fundus_image(size=64):
    img = np.zeros((size, size, 3), np.uint8)
    yy, xx = np.mgrid[:size, :size]
    img[(yy - size // 2) ** 2 + (xx - size // 2) ** 2 < (size // 2 - 6) ** 2] = (180, 80, 30)
    return img


def test_overlay_fov_leaves_outside_unpainted_even_dilated():
    img = np.full((20, 20, 3), 100, np.uint8)
    cm = np.zeros((20, 20), np.uint8)
    cm[2, 2] = cm[10, 10] = CLASS_INDEX["EX"]
    fov = np.zeros((20, 20), bool)
    fov[5:15, 5:15] = True
    out = F.overlay(img, cm, alpha=1.0, dilate=2, fov=fov)
    assert tuple(out[10, 10]) == CLASS_COLOURS["EX"] and tuple(out[12, 12]) == CLASS_COLOURS["EX"]
    assert np.array_equal(out[~fov], img[~fov])          # outside: neither the lesion nor its halo


def test_error_map_counts_inside_the_fov_only():
    truth = np.zeros((10, 10), np.uint8)
    pred = np.zeros((10, 10), np.uint8)
    pred[0, 0] = pred[5, 5] = truth[5, 5] = CLASS_INDEX["HE"]
    fov = np.zeros((10, 10), bool)
    fov[2:8, 2:8] = True
    assert F._error_counts(pred, truth, (10, 10), "red") == {"TP": 1, "FP": 1, "FN": 0}
    assert F._error_counts(pred, truth, (10, 10), "red", fov) == {"TP": 1, "FP": 0, "FN": 0}


def test_overlay_legend_lists_only_classes_drawn_inside_the_fundus():
    img = _fundus_image()
    truth = np.zeros((64, 64), np.uint8)
    truth[30:34, 30:34] = CLASS_INDEX["HE"]
    pred = truth.copy()
    pred[0:3, 0:3] = CLASS_INDEX["SE"]          # only in the black corner: masked out
    fig = F.overlay_comparison(img, truth, {"UNet": pred})
    texts = _legend_texts(fig)
    assert any(t.startswith("HE") for t in texts)
    assert not any(t.startswith(("SE", "OD", "MA", "EX")) for t in texts)
    shown = F.overlay_comparison(img, truth, {"UNet": pred}, inside_fundus=False)
    assert any(t.startswith("SE") for t in _legend_texts(shown))


def test_segmentation_overlays_title_each_panel_with_its_dice(tmp_path):
    from types import SimpleNamespace

    img = _fundus_image()
    cm = np.zeros((1, 64, 64), np.uint8)
    cm[0, 30:34, 30:34] = CLASS_INDEX["MA"]
    ev = SimpleNamespace(pred_maps=cm, per_image={"red": np.array([0.304]), "yellow": np.array([np.nan])})
    rows = {"Table 2 networks": {"UNet": ev, "LinkNet": ev, "MTUnet": ev, "DeepLabv3": ev},
            "MTUnet encoders": {"VGG16": ev, "ResNet50": ev}}
    fig = F.segmentation_overlays(img, cm[0], rows, 0, "Fig. 6")
    titles = [ax.get_title() for ax in fig.axes]
    assert "UNet\nDice red 30 % · yellow –" in titles
    assert sum("Dice red" in t for t in titles) == 6
    assert {ax.get_ylabel() for ax in fig.axes} >= {"Table 2 networks", "MTUnet encoders"}
    assert [t for t in _legend_texts(fig) if "–" in t] == ["MA – Microaneurysms"]
    _saved(fig, tmp_path, "segmentation_overlays")


def _comparison_table():
    return pd.DataFrame({"network": ["Variant A", "Variant A", "Variant C", "Variant C"],
                         "metric": ["dice", "roc", "dice", "roc"],
                         "paper_mean": [55.4, 86.3, 76.1, 89.5], "paper_std": [np.nan] * 4,
                         "ours_mean": [7.1, 53.4, np.nan, 53.0], "ours_std": [0.7, 0.4, np.nan, 1.7],
                         "ci_low": [np.nan, 50.0, np.nan, 49.0], "ci_high": [np.nan, 57.0, np.nan, 57.5],
                         "n_runs": [2, 2, 0, 2]})


def test_paper_vs_ours_one_panel_per_metric_with_error_bars(tmp_path):
    fig = F.paper_vs_ours(_comparison_table(), {"dice": "Lesion Dice, IDRiD-S test", "roc": "Mean ROC AUC"},
                          {"dice": "Dice (%)", "roc": "ROC AUC (%)"}, "Table 1")
    dice, roc = fig.axes
    assert "Dice" in dice.get_title() and "ROC" in roc.get_title()
    assert dice.get_xlabel() == "Dice (%)" and roc.get_xlabel() == "ROC AUC (%)"
    ticks = [t.get_text().split("\n")[0] for t in dice.get_yticklabels()]
    assert ticks == ["Variant A", "Variant C"]                   # each network once, not per metric
    assert len(roc.containers) >= 2                               # error bars: the 95 % intervals
    assert any("not run" in t.get_text() for t in dice.texts)     # Variant C's Dice is missing
    assert any("95 % interval" in t for t in _legend_texts(fig))
    assert not any(t in ("value", "label") for t in (dice.get_xlabel(), roc.get_xlabel()))
    _saved(fig, tmp_path, "paper_vs_ours_panels")


def test_paper_vs_ours_writes_the_area_beside_each_dice_and_draws_a_flood_hollow(tmp_path):
    table = _comparison_table().assign(red_area_ratio=[3.2, np.nan, np.nan, np.nan],
                                       yellow_area_ratio=[1.1, np.nan, np.nan, np.nan])
    fig = F.paper_vs_ours(table, {"dice": "Lesion Dice", "roc": "Mean ROC AUC"}, title="Table 1")
    dice, roc = fig.axes
    labels = [t.get_text() for t in dice.texts]
    assert "7.10 ± 0.70 · red area 3.2× (a flood), yellow area 1.1×" in labels, labels
    assert not any("area" in t.get_text() for t in roc.texts)    # an AUC rests on no area
    hollow = [line for line in dice.lines if line.get_marker() == "o" and line.get_markerfacecolor() == "white"]
    assert len(hollow) == 1
    assert any("a flood or a collapse" in t for t in _legend_texts(fig))
    sane = F.paper_vs_ours(table.assign(red_area_ratio=[0.9, np.nan, np.nan, np.nan]),
                           {"dice": "Lesion Dice"}, title="Table 1")
    assert not any("a flood or a collapse" in t for t in _legend_texts(sane))
    _saved(fig, tmp_path, "paper_vs_ours_areas")


def _grading_table(one_class=("DenseNet-201",)):
    rows = []
    for net in ("DenseNet-201", "MTUnet"):
        for g, grade in enumerate(["Mild", "No DR", "Severe"]):       # not in grade order
            rows.append({"network": net, "grade": grade, "paper_mean": 60.0 + g, "paper_std": 2.0,
                         "ours_mean": np.nan if grade == "No DR" else 55.0, "ours_std": 3.0,
                         "ci_low": 40.0, "ci_high": 70.0, "n_positive": 0 if grade == "No DR" else 4,
                         "one_class": net in one_class, "test_set": "table3_test (stand-in): note"})
    return pd.DataFrame(rows)


def test_grading_heatmap_hatches_one_class_graders(tmp_path):
    from matplotlib.patches import Rectangle

    fig = F.grading_heatmap(_grading_table(), name="Table 3")
    paper, ours = fig.axes[:2]
    hatched = [p for p in ours.patches if isinstance(p, Rectangle) and p.get_hatch()]
    assert len(hatched) == 1 and hatched[0].get_y() == pytest.approx(-0.5)   # DenseNet-201's row
    labels = [t.get_text() for t in paper.get_yticklabels()]
    assert "one grade" in labels[0] and "one grade" not in labels[1]
    assert [t.get_text().split("\n")[0] for t in ours.get_xticklabels()] == ["0 No DR", "1 Mild", "3 Severe"]
    assert any("no positive" in t.get_text() for t in ours.texts)
    assert "ROC AUC (%)" in fig._suptitle.get_text() and "table3_test" in fig._suptitle.get_text()
    assert not [p for p in F.grading_heatmap(_grading_table(one_class=())).axes[1].patches if p.get_hatch()]
    _saved(fig, tmp_path, "heatmap")


def test_lesion_area_by_grade_has_a_discrete_grade_axis(tmp_path):
    by_grade = pd.DataFrame({"grade": [0, 1, 2, 3, 4], "MA_fraction": [0, 0.1, 0.2, 0.3, 0.5],
                             "EX_fraction": [0, 1.0, 2.0, 3.0, 4.0], "images": [5, 5, 5, 6, 6]})
    fig = F.lesion_area_by_grade(by_grade)
    ax = fig.axes[0]
    assert list(ax.get_xticks()) == [0, 1, 2, 3, 4]                     # one tick per grade, no 0.5
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[0] == "0 No DR\nn=5" and labels[4].startswith("4 Proliferative")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["MA – Microaneurysms", "EX – Hard Exudates"]
    assert "%" in ax.get_ylabel()
    _saved(fig, tmp_path, "area_by_grade")


def test_grade_ticks_on_y():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    F.grade_ticks(ax, [1, 2, 3], axis="y")
    assert list(ax.get_yticks()) == [1, 2, 3] and ax.get_ylim() == (0.5, 3.5)
    plt.close(fig)


def test_reliability_diagram_counts_and_warns_when_one_bin_holds_everything():
    y = np.arange(40) % 5
    uniform = np.full((40, 5), 0.2) + np.random.default_rng(0).normal(0, 1e-3, (40, 5))
    uniform /= uniform.sum(axis=1, keepdims=True)
    fig = F.reliability_diagram(y, uniform, n_bins=10)
    top, bottom = fig.axes
    assert "only 1 of 10 bins holds images" in top.get_title()
    assert any("Caution" in t.get_text() and "near-uniform outputs" in t.get_text() for t in top.texts)
    assert sorted(t.get_text() for t in bottom.texts) == sorted(["40"] + ["0"] * 9)   # per-bin counts
    y2, prob = _grading()
    spread = F.reliability_diagram(y2, prob, n_bins=10)
    assert not any("Caution" in t.get_text() for t in spread.axes[0].texts)


def test_training_curves_colour_per_network_integer_epochs_percent_dice():
    frames = {(net, seed): pd.DataFrame({"epoch": [0, 1, 2], "seg_loss": [1.0, 0.8, 0.7],
                                         "seg_red_dice": [0.1, 0.2, 0.3]})
              for net in ("UNet", "MTUnet") for seed in (0, 1)}
    fig = F.training_curves(frames, ("seg_loss", "red_dice"), "Table 2 runs")
    loss, dice = fig.axes
    assert list(loss.get_xticks()) == [1, 2, 3]
    colours = {line.get_label().split(" · ")[0]: line.get_color() for line in loss.lines}
    assert len(set(colours.values())) == 2                              # one colour per network
    assert list(dice.lines[0].get_ydata()) == pytest.approx([10, 20, 30])   # Dice in %
    assert "(%)" in dice.get_ylabel() and dice.get_title() == "red-lesion Dice"
    assert "UNet · seed 1" in _legend_texts(fig)
    assert "hold out no validation images" in fig._suptitle.get_text()   # says why no dashed line
    with_val = {k: f.assign(val_seg_loss=[1.1, 0.9, 0.8]) for k, f in frames.items()}
    fig = F.training_curves(with_val, ("seg_loss",), "Table 2 runs")
    assert "validation" in _legend_texts(fig) and "no validation" not in fig._suptitle.get_text()


def test_training_curves_single_epoch_runs_stay_on_epoch_one():
    frames = {("A", 0): pd.DataFrame({"epoch": [0], "loss": [1.0]}),
              ("B", 0): pd.DataFrame({"epoch": [0], "loss": [1.0]})}
    fig = F.training_curves(frames, ("loss",))
    ax = fig.axes[0]
    assert list(ax.get_xticks()) == [1] and ax.get_xlim() == (0.5, 1.5)
    xs = [line.get_xdata()[0] for line in ax.lines]
    assert xs[0] != xs[1] and all(0.5 < x < 1.5 for x in xs)           # equal values both visible
    assert "one epoch per run" in fig._suptitle.get_text()


def test_roc_by_network_one_panel_per_grader_flags_one_class(tmp_path):
    y, prob = _grading()
    flat = np.tile([0.9, 0.025, 0.025, 0.025, 0.025], (len(y), 1))
    flat[:, 1] += np.linspace(0, 0.01, len(y))                        # scores vary, argmax does not
    fig = F.roc_by_network({"DenseNet-201": (y, prob), "MTUnet": (y, flat), "NASNet": (y, prob)}, "ROC")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == "DenseNet-201" and titles[1].startswith("MTUnet") and "one grade" in titles[1]
    assert len(fig.axes) == 3
    assert all(ax.get_legend().get_title().get_text() == "ROC AUC (%)" for ax in fig.axes)
    _saved(fig, tmp_path, "roc_grid")


def test_ablation_plot_alpha_on_a_log_axis_with_the_values_tried(tmp_path):
    frame = pd.DataFrame({"alpha": [5.0, 0.1, 1.0], "dice": [6.7, 6.6, 7.1], "red_dice": [8.5, 8.6, 8.6],
                          "yellow_dice": [4.9, 4.7, 5.6], "roc": [61.9, 42.3, 51.8], "n_runs": [1, 1, 1]})
    fig = F.ablation_plot(frame, "alpha", "α ablation", paper_choice=1.0)
    dice, roc = fig.axes
    assert dice.get_xscale() == "log"
    assert [t.get_text() for t in dice.get_xticklabels()] == ["0.1", "1", "5"]
    assert "α" in dice.get_xlabel()
    assert "Dice" in dice.get_title() and "ROC" in roc.get_title()
    _saved(fig, tmp_path, "ablation_alpha")
    losses = pd.DataFrame({"seg_loss": ["bce", "generalized_dice"], "dice": [0.0, 14.6], "roc": [55.3, 57.2]})
    fig = F.ablation_plot(losses, "seg_loss", "loss ablation", paper_choice="bce")
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["binary cross-entropy\n(paper's loss)", "generalised Dice"]
    with_areas = losses.assign(red_dice=[0.0, 9.0], red_area_ratio=[0.001, 1.3])
    fig = F.ablation_plot(with_areas, "seg_loss", "loss ablation", paper_choice="bce")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "0.00\narea 0.001×\n(a collapse)" in texts and "9.00\narea 1.3×" in texts, texts
    fig = F.ablation_plot(frame.assign(red_area_ratio=[3.0, 1.0, 1.0]), "alpha", "α ablation")
    assert "area 3×\n(a flood)" in [t.get_text() for t in fig.axes[0].texts]


def test_readable_names_never_raw_columns():
    assert F.readable("red_dice") == "red-lesion Dice"
    assert F.readable("HE_fraction") == "Haemorrhages"
    assert "validation" in F.readable("val_loss")
    assert "_" not in F.readable("some_new_column")


def test_history_by_task_names_single_task_columns_like_mtunet():
    from mtunet.study.runs import history_by_task

    grader = pd.DataFrame({"epoch": [0], "loss": [1.7], "acc": [0.1], "val_loss": [np.nan]})
    out = history_by_task(grader, ("grade",))
    assert list(out["grade_loss"]) == [1.7] and list(out["grade_acc"]) == [0.1]
    assert "val_grade_loss" in out.columns and "grade_loss" not in grader.columns   # a copy
    segmenter = history_by_task(pd.DataFrame({"loss": [2.0]}), ("seg",))
    assert list(segmenter["seg_loss"]) == [2.0]
    mtunet = pd.DataFrame({"loss": [3.0], "seg_loss": [2.0]})
    assert history_by_task(mtunet, ("seg", "grade")) is mtunet


def test_training_curves_draw_the_held_out_curve_a_run_was_chosen_on():
    import pandas as pd

    frame = pd.DataFrame({"epoch": [0, 1, 2], "seg_red_dice": [0.1, 0.2, 0.3],
                          "heldout_red_dice": [0.05, 0.15, 0.1]})
    fig = F.training_curves({("MTUnet", 0): frame}, metrics=("red_dice",))
    labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert "held-out" in labels and "training" in labels
    dotted = [line for line in fig.axes[0].lines if line.get_linestyle() == ":"]
    assert len(dotted) == 1 and list(dotted[0].get_ydata()) == pytest.approx([5, 15, 10])
