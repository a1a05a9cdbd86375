"""Datasets of the study: readers (IDRiD, Kaggle/EyePACS, Messidor-2, APTOS 2019), synthetic data,
preprocessing, augmentation, the Keras pipeline (``mtunet.data.pipeline``, imports Keras) and dataset
checks.

Importing this package does not import Keras or TensorFlow.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mtunet.data.aptos import read_aptos
from mtunet.data.eyepacs import EyepacsSet, balanced_downsample, read_eyepacs, split_by_patient
from mtunet.data.idrid import GradingSet, read_grading, read_segmentation
from mtunet.data.messidor import exam_ids, read_messidor
from mtunet.data.records import GradedSet, Record
from mtunet.data.validate import APTOS_DIR, EYEPACS_DIR, IDRID_DIR, MESSIDOR_DIR, check_dataset, detect_layout

__all__ = ["Record", "GradingSet", "EyepacsSet", "GradedSet", "DataRoot", "read_segmentation", "read_grading",
           "read_eyepacs", "read_messidor", "read_aptos", "exam_ids", "split_by_patient", "balanced_downsample",
           "detect_layout", "check_dataset", "load_data_root"]


@dataclass
class DataRoot:
    """Everything found under a data root (``data_dir/IDRiD``, ``data_dir/kaggle-eyepacs-subset``,
    ``data_dir/messidor-2``, ``data_dir/aptos2019``); an absent part stays empty / None."""

    path: Path
    idrid_seg: list[Record] = field(default_factory=list)
    idrid_grading: GradingSet | None = None
    eyepacs: EyepacsSet | None = None
    messidor: GradedSet | None = None
    aptos: GradedSet | None = None


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
    if (data_dir / MESSIDOR_DIR).is_dir():
        root.messidor = read_messidor(data_dir / MESSIDOR_DIR)
    if (data_dir / APTOS_DIR).is_dir():
        root.aptos = read_aptos(data_dir / APTOS_DIR)
    return root
