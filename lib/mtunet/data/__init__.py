"""Datasets of the study: readers (IDRiD, Kaggle/EyePACS), synthetic data, preprocessing,
augmentation, the Keras pipeline (``mtunet.data.pipeline``, imports Keras) and dataset checks.

Importing this package does not import Keras or TensorFlow.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mtunet.data.eyepacs import EyepacsSet, balanced_downsample, read_eyepacs, split_by_patient
from mtunet.data.idrid import GradingSet, read_grading, read_segmentation
from mtunet.data.records import Record
from mtunet.data.validate import EYEPACS_DIR, IDRID_DIR, check_dataset, detect_layout

__all__ = ["Record", "GradingSet", "EyepacsSet", "DataRoot", "read_segmentation", "read_grading",
           "read_eyepacs", "split_by_patient", "balanced_downsample", "detect_layout", "check_dataset",
           "load_data_root"]


@dataclass
class DataRoot:
    """Everything found under a data root (``data_dir/IDRiD``, ``data_dir/kaggle-eyepacs-subset``)."""

    path: Path
    idrid_seg: list[Record] = field(default_factory=list)
    idrid_grading: GradingSet | None = None
    eyepacs: EyepacsSet | None = None


def load_data_root(data_dir) -> DataRoot:
    """Read the parts of a data root that are present (absent parts stay empty / None)."""
    data_dir = Path(data_dir)
    root = DataRoot(path=data_dir)
    idrid_dir = data_dir / IDRID_DIR
    if (idrid_dir / "A. Segmentation").is_dir():
        root.idrid_seg = read_segmentation(idrid_dir)
    if (idrid_dir / "B. Disease Grading").is_dir():
        root.idrid_grading = read_grading(idrid_dir)
    if (data_dir / EYEPACS_DIR).is_dir():
        root.eyepacs = read_eyepacs(data_dir / EYEPACS_DIR)
    return root
