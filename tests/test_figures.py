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
    assert any("not in y_true" in t for t in texts)
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


def test_paper_vs_ours_bars(tmp_path):
    frame = pd.DataFrame({"network": ["UNet", "LinkNet", "MTUnet"],
                          "paper": [0.52, 0.55, np.nan], "ours": [0.48, 0.50, 0.53],
                          "ours_std": [0.02, 0.03, 0.01]})
    fig = F.paper_vs_ours_bars(frame, "network", "paper", "ours", "ours_std",
                               title="Table 2: red lesion Dice")
    _saved(fig, tmp_path, "paper_vs_ours")


def test_metric_vs_parameter(tmp_path):
    frame = pd.DataFrame({"alpha": [0.01, 0.1, 1.0, 10.0], "dice": [0.4, 0.5, 0.52, 0.45],
                          "dice_std": [0.01, 0.02, 0.01, 0.03], "kappa": [0.6, 0.7, 0.72, 0.7]})
    fig = F.metric_vs_parameter(frame, "alpha", ["dice", "kappa", "missing"], title="α sweep")
    assert fig.axes[0].get_xscale() == "log"
    _saved(fig, tmp_path, "alpha")
    frame0 = frame.assign(alpha=[0.0, 0.1, 1.0, 10.0])
    assert F.metric_vs_parameter(frame0, "alpha", ["dice"]).axes[0].get_xscale() == "linear"


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
