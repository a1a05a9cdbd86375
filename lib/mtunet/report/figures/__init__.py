"""Figures of the study, one module per subject; every name is re-exported here, so callers write
``from mtunet.report import figures; figures.training_curves(...)``.

- ``style``: colours, readable names (:func:`readable`), fonts (``_styled``), :func:`save` /
  :func:`save_and_show` (PNG, dpi 120, closes the figure), DR-grade ticks, legends, area labels.
- ``paint``: :func:`overlay`, :func:`error_map_rgb`, :func:`fundus_fov`, :func:`present_classes`
  (pure numpy/OpenCV, uint8 RGB arrays; the prediction CLI uses them without matplotlib).
- ``overlays``: :func:`overlay_comparison` and :func:`segmentation_overlays` (the paper's Fig. 6,
  the seed segmenter's overlay, the encoders), :func:`lesion_error_map`.
- ``training``: :func:`training_curves`.
- ``grading``: :func:`roc_curves`, :func:`roc_by_network`, :func:`confusion_matrix_plot`,
  :func:`reliability_diagram`, :func:`grading_heatmap` (Tables 3-4).
- ``data``: :func:`class_balance`, :func:`sample_grid`, :func:`lesion_area_by_grade`,
  :func:`lesion_size_plot`.
- ``paper_comparison``: :func:`paper_vs_ours` (Tables 1-2); ``ablations``: :func:`ablation_plot`.

Every plotting function builds and returns a matplotlib ``Figure``; none calls ``plt.show``, so
the figures work headless (Agg) and in notebooks alike. Each submodule imports ``style`` (and
``paint``), never this package nor each other in a circle.
"""
from __future__ import annotations

from mtunet.report.figures.ablations import ablation_plot
from mtunet.report.figures.data import (class_balance, lesion_area_by_grade, lesion_size_plot,
                                        preprocessing_by_camera, sample_grid)
from mtunet.report.figures.grading import (confusion_matrix_plot, grading_heatmap, reliability_diagram,
                                           roc_by_network, roc_curves)
from mtunet.report.figures.overlays import lesion_error_map, overlay_comparison, segmentation_overlays
from mtunet.report.figures.paint import error_map_rgb, fundus_fov, overlay, present_classes
from mtunet.report.figures.paint import _error_counts  # noqa: F401 (tests reach it as figures._error_counts)
from mtunet.report.figures.paper_comparison import paper_vs_ours
from mtunet.report.figures.style import (ERROR_COLOURS, ERROR_LABELS, LOSS_LABELS, METRIC_LABELS,
                                         OURS_COLOUR, PAPER_COLOUR, grade_ticks, readable, save,
                                         save_and_show)
from mtunet.report.figures.training import training_curves

__all__ = ["ERROR_COLOURS", "ERROR_LABELS", "LOSS_LABELS", "METRIC_LABELS", "OURS_COLOUR", "PAPER_COLOUR",
           "ablation_plot", "class_balance", "confusion_matrix_plot", "error_map_rgb",
           "fundus_fov", "grade_ticks", "grading_heatmap", "lesion_area_by_grade", "lesion_error_map",
           "lesion_size_plot", "overlay", "overlay_comparison", "paper_vs_ours", "present_classes",
           "readable", "reliability_diagram", "roc_by_network", "roc_curves", "sample_grid", "save",
           "save_and_show", "segmentation_overlays", "training_curves"]
