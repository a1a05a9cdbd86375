"""The paper's published numbers, once, as data (Foo, Hsu, Lee, Lim and Wong, AAAI 2020).

Every number below is copied from the paper's Tables 1-4, in percent, exactly as printed
(including the uneven number of decimals in the standard deviations: ``7.646`` vs ``0.19``).
Rows are keyed by the model's registry name (``mtunet.models.registry.MODELS``); the frames add
the display label from the registry, so a network's name is spelled in one place.
Tables 2-4 give "mean ± std" over three training runs; Table 1 gives one number per cell.

The paper has no page numbers in our copy, so a claim's ``source`` names the table, figure or
section it comes from. Report code should never retype these numbers: it merges its reproduced
numbers with the long-form frames from :func:`table1_frame` ... :func:`table4_frame`.
"""
from __future__ import annotations

import pandas as pd

from mtunet.config import GRADE_NAMES
from mtunet.models.registry import label

# Table 1: performance of the network variants (Dice % for lesion segmentation, mean ROC % for
# grading). The paper does not say which Dice (red, yellow or both) or which ROC average it is.
TABLE1_VARIANTS: dict[str, dict[str, float]] = {
    "variant_a": {"dice": 55.37, "roc": 86.27},
    "variant_b": {"dice": 73.89, "roc": 82.05},
    "mtunet": {"dice": 76.12, "roc": 89.45},          # Variant C
}

# Table 2: Dice (%) for lesion segmentation on the 27 IDRiD-S test images, (mean, std) of 3 runs.
TABLE2_SEGMENTATION: dict[str, dict[str, tuple[float, float]]] = {
    "unet": {"red": (62.25, 7.646), "yellow": (76.03, 1.415)},
    "linknet": {"red": (73.56, 1.026), "yellow": (83.54, 0.19)},
    "fpn": {"red": (72.66, 0.541), "yellow": (77.28, 0.429)},
    "deeplabv3": {"red": (56.73, 1.217), "yellow": (72.01, 1.661)},
    "mtunet": {"red": (75.15, 0.778), "yellow": (84.27, 0.456)},
}


def _grades(*pairs: tuple[float, float]) -> dict[str, tuple[float, float]]:
    assert len(pairs) == len(GRADE_NAMES)
    return dict(zip(GRADE_NAMES, pairs))


# Table 3: one-vs-rest ROC AUC (%) per DR grade on IDRiD-D, (mean, std) of 3 runs.
TABLE3_GRADING_IDRID: dict[str, dict[str, tuple[float, float]]] = {
    "nasnet_large": _grades((93.00, 0.784), (79.07, 3.881), (71.75, 5.342), (72.63, 4.239),
                      (83.95, 4.729)),
    "densenet201": _grades((62.25, 13.49), (38.64, 5.872), (40.49, 5.590), (36.98, 6.060),
                            (36.83, 12.78)),
    "resnext101": _grades((92.09, 3.223), (79.28, 4.391), (67.22, 2.499), (72.26, 9.102),
                           (66.62, 4.879)),
    "inception_resnet_v2": _grades((94.86, 3.286), (77.92, 10.03), (67.91, 13.00), (75.74, 5.868),
                                 (67.17, 14.09)),
    "mtunet": _grades((99.00, 0.330), (89.94, 2.093), (84.13, 3.011), (82.86, 3.110),
                      (87.20, 2.859)),
}

# Table 4: one-vs-rest ROC AUC (%) per DR grade on SiDRP14-15 (private), (mean, std) of 3 runs.
TABLE4_GRADING_SIDRP: dict[str, dict[str, tuple[float, float]]] = {
    "nasnet_large": _grades((61.37, 0.569), (47.14, 1.547), (59.81, 3.224), (81.88, 8.410),
                      (87.64, 0.538)),
    "densenet201": _grades((51.00, 3.190), (48.11, 2.053), (43.44, 9.126), (57.47, 16.385),
                            (66.33, 14.374)),
    "resnext101": _grades((55.55, 3.921), (52.10, 1.461), (58.69, 4.049), (75.59, 12.481),
                           (42.76, 5.103)),
    "inception_resnet_v2": _grades((66.79, 4.272), (46.84, 5.985), (59.16, 10.337), (83.23, 7.013),
                                 (83.52, 2.653)),
    "mtunet": _grades((78.56, 0.122), (58.44, 0.606), (84.75, 1.875), (97.77, 0.745),
                      (98.11, 0.867)),
}

# Other numbers stated in the text.
KAGGLE_IMAGES_PER_GRADE = 1914          # "This gives us 1914 images per severity level."
SIGNIFICANCE_LEVEL = 0.10                # "paired t-test at 10% significance level"
ALPHA_BEST = 1.0                         # Eq. 3: "alpha = 1 gives the best result for both tasks"

# The paper's claims that the study checks, each with where it is made.
CLAIMS: list[dict[str, str]] = [
    {"id": "variant_c_best",
     "text": "Variant C outperforms variants A and B for both lesion segmentation (Dice) and "
             "DR grading (ROC).",
     "source": "Table 1; Experiments on Network Variants"},
    {"id": "mtunet_best_segmentation",
     "text": "MTUnet outperforms UNet, LinkNet, Feature Pyramid and DeepLabv3 on both red-lesion "
             "and yellow-lesion Dice.",
     "source": "Table 2; Experiments on Lesion Segmentation"},
    {"id": "mtunet_vs_linknet_significant",
     "text": "The improvement of MTUnet over LinkNet is statistically significant under the "
             "paired t-test at the 10% significance level.",
     "source": "Experiments on Lesion Segmentation (text under Table 2)"},
    {"id": "mtunet_best_grading_idrid",
     "text": "MTUnet achieves a higher ROC AUC than NASNet, DenseNet-201, ResNeXt-101 and "
             "InceptionResNetV2 for every DR severity level on IDRiD-D (82.86% to 99%).",
     "source": "Table 3; Experiments on DR Grading Classification"},
    {"id": "mtunet_best_grading_sidrp",
     "text": "MTUnet outperforms all alternative networks for every severity level on "
             "SiDRP14-15, with 84.75% ROC for moderate DR (at least 24 points above the rest).",
     "source": "Table 4; Experiments on DR Grading Classification"},
    {"id": "batchnorm_encoders_miss_red",
     "text": "With ResNet or InceptionV3 encoders the segmentation does not pick up red lesions; "
             "DenseNet detects only partial regions of them (attributed to batch norm).",
     "source": "Figure 6; Encoder Section"},
    {"id": "alpha_one_best",
     "text": "Of the values of alpha tried in L_M = L_B + alpha L_C, alpha = 1 gives the best "
             "result for both tasks.",
     "source": "Eq. 3; Loss Functions"},
    {"id": "dice_losses_worse",
     "text": "Combinations of Dice loss, generalized Dice loss or Jaccard loss did not yield good "
             "performance compared with binary cross-entropy for the segmentation task.",
     "source": "Eq. 1; Loss Functions"},
    {"id": "kaggle_1914_per_grade",
     "text": "Pooling Kaggle train and test images and downsampling to the number of grade-4 "
             "images gives 1,914 images per severity level.",
     "source": "Performance Study, dataset 3 (Kaggle)"},
]


def claim(claim_id: str) -> dict[str, str]:
    """The claim with this id (KeyError naming the known ids otherwise)."""
    for c in CLAIMS:
        if c["id"] == claim_id:
            return c
    raise KeyError(f"unknown claim {claim_id!r}; known: {[c['id'] for c in CLAIMS]}")


def _long_frame(table: dict, key: str, label_table: str = "") -> pd.DataFrame:
    """model, network (display label), <key>, paper_mean, paper_std: one row per published cell."""
    rows = []
    for model, cells in table.items():
        for item, value in cells.items():
            mean, std = value if isinstance(value, tuple) else (value, float("nan"))
            rows.append((model, label(model, label_table), item, mean, std))
    return pd.DataFrame(rows, columns=["model", "network", key, "paper_mean", "paper_std"])


def table1_frame() -> pd.DataFrame:
    """Table 1 in long form: metric "dice"/"roc", paper_mean, paper_std (NaN: one number a cell)."""
    return _long_frame(TABLE1_VARIANTS, "metric", "table1")


def table2_frame() -> pd.DataFrame:
    """Table 2 in long form: metric "red"/"yellow", paper_mean, paper_std."""
    return _long_frame(TABLE2_SEGMENTATION, "metric")


def _grading_frame(table: dict[str, dict[str, tuple[float, float]]]) -> pd.DataFrame:
    return _long_frame(table, "grade")


def table3_frame() -> pd.DataFrame:
    """Table 3 (IDRiD-D) in long form: network, grade, paper_mean, paper_std."""
    return _grading_frame(TABLE3_GRADING_IDRID)


def table4_frame() -> pd.DataFrame:
    """Table 4 (SiDRP14-15) in long form: network, grade, paper_mean, paper_std."""
    return _grading_frame(TABLE4_GRADING_SIDRP)


def claims_frame() -> pd.DataFrame:
    """CLAIMS as a DataFrame with columns id, text, source."""
    return pd.DataFrame(CLAIMS, columns=["id", "text", "source"])
