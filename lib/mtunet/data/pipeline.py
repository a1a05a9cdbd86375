"""The Keras input pipeline: Records -> batches of (images, {"seg", "grade"}, sample weights).

Images are fed as raw RGB pixels 0..255 (float32). Model-specific input scaling (e.g. VGG16's Caffe
BGR mean subtraction) is NOT done here: the models do it in their first layer, so that training,
``predict`` and ``bench`` all feed the same raw pixels.

Multi-task batches mix lesion-annotated and grade-only images: a sample weight of 0 switches off the
loss of a task for a sample that has no label for it (``seg`` when not ``has_masks``, ``grade`` when
the grade is None).
"""
from __future__ import annotations

import math

import keras
import numpy as np
from tqdm import tqdm

from mtunet.config import N_GRADES
from mtunet.config import n_seg_classes as n_seg_classes_for
from mtunet.data.preprocess import cached_example, example_key, load_arrays, one_hot_labels, prepare_example  # noqa: F401 (load_arrays, prepare_example re-exported)

_PRELOAD_BAR = 16  # show a progress bar when pre-loading at least this many images

# What a whole-image grade input goes through after the crop, pad and resize of every model
# input (RunSpec.grade_preprocessing): "none", or "graham": Ben Graham's local colour
# normalisation (mtunet.data.fundus_normalise), which takes away most of what a camera, its flash
# and the pigmentation add to a photograph. Segmentation inputs are never normalised.
GRADE_PREPROCESSING = ("none", "graham")


def check_grade_preprocessing(name: str) -> str:
    if name not in GRADE_PREPROCESSING:
        from mtunet.errors import UserError

        raise UserError(f"grade_preprocessing must be one of {GRADE_PREPROCESSING}, not {name!r}")
    return name


def preprocess_grade_inputs(images: np.ndarray, preprocessing: str) -> np.ndarray:
    """A uint8 (N, S, S, 3) batch of model inputs as a grader sees them (a new array for
    "graham"; the batch itself for "none")."""
    if check_grade_preprocessing(preprocessing) == "none":
        return images
    from mtunet.data.fundus_normalise import normalise_arrays

    return normalise_arrays(np.asarray(images, dtype=np.uint8))


def grade_arrays(records, image_size: int, preprocessing: str = "none", cache_dir=None,
                 progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, S, S, 3) as graders see them, grades int64 (N,), -1 where ungraded).

    ``cache_dir``: the arrays are written there once (``grade-inputs-<key>.npz``, uint8) and read
    back by every later call with the same images, size, preprocessing and scoring code, so a test
    set of large photographs is decoded once for all the models scored on it."""
    from pathlib import Path

    records = list(records)
    check_grade_preprocessing(preprocessing)
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"grade-inputs-{_arrays_key(records, image_size, preprocessing)}.npz"
        if path.exists():
            try:
                with np.load(path, allow_pickle=False) as data:
                    return data["images"], data["grades"]
            except Exception:  # noqa: BLE001 - torn by a kill: prepare again
                path.unlink(missing_ok=True)
    images, _, grades = load_arrays(records, image_size, progress=progress)
    images = preprocess_grade_inputs(images, preprocessing)
    if path is not None:
        from mtunet.checkpoints import _savez_atomic

        path.parent.mkdir(parents=True, exist_ok=True)
        _savez_atomic(path, {"images": images, "grades": grades})
    return images, grades


def _arrays_key(records, image_size: int, preprocessing: str) -> str:
    import hashlib
    import json
    import os

    from mtunet.code_fingerprint import scoring_code

    files = [(r.key, str(r.image_path), os.path.getsize(r.image_path), r.grade) for r in records]
    payload = json.dumps([files, int(image_size), preprocessing, scoring_code()], default=str)
    return hashlib.sha1(payload.encode()).hexdigest()[:16]


class FundusSequence(keras.utils.PyDataset):
    """Batches for ``model.fit``: ``(x, y, sample_weight)``.

    x: float32 (B, S, S, 3), raw RGB 0..255.
    y["seg"]: one-hot float32 (B, S, S, n_seg_classes); y["grade"]: one-hot float32 (B, 5), zeros when
    the grade is None. sample_weight["grade"]: float32 (B,), 1.0 where the grade exists, else 0.
    sample_weight["seg"]: float32 (B,): 1.0 for lesion-annotated images (``has_masks``), else 0. The
    segmentation losses of ``mtunet.losses`` reduce the pixels themselves (one value per image).
    Only the keys in ``outputs`` appear.

    Prepared (decoded, cropped, resized, un-augmented) examples are cached in memory keyed by the
    image (so epoch 2 reads no file); :meth:`preload` fills the cache up front with a progress bar.
    With ``shuffle`` the order is a seeded permutation per epoch; the augmentation of record k in
    epoch e uses ``np.random.default_rng([seed, e, k])``, so a run is repeatable whatever the
    worker scheduling. ``pydataset_kwargs`` (workers, use_multiprocessing, max_queue_size) go to
    ``keras.utils.PyDataset``.
    """

    def __init__(self, records, image_size: int, batch_size: int = 2, n_seg_classes: int = 5,
                 outputs=("seg", "grade"), augmentation=None, shuffle: bool = False, seed: int = 0,
                 include_od: bool = False, cache: bool = True, preprocessing: str = "none",
                 **pydataset_kwargs):
        super().__init__(**pydataset_kwargs)
        self.records = list(records)
        if not self.records:
            raise ValueError("FundusSequence needs at least one record")
        unknown = set(outputs) - {"seg", "grade"}
        if unknown:
            raise ValueError(f"unknown outputs {sorted(unknown)}; use 'seg' and/or 'grade'")
        n_needed = n_seg_classes_for(include_od)
        if "seg" in outputs and n_seg_classes < n_needed:
            raise ValueError(f"n_seg_classes={n_seg_classes} but labels use {n_needed} classes "
                             f"(include_od={include_od})")
        self.image_size = int(image_size)
        self.batch_size = int(batch_size)
        self.n_seg_classes = int(n_seg_classes)
        self.outputs = tuple(outputs)
        self.augmentation = augmentation
        self.shuffle = shuffle
        self.seed = seed
        self.include_od = include_od
        self.cache_enabled = cache
        self.preprocessing = check_grade_preprocessing(preprocessing)
        self.cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.epoch = 0
        self.order = self._order()

    def _order(self) -> np.ndarray:
        n = len(self.records)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.seed, self.epoch]).permutation(n)

    def __len__(self) -> int:
        return math.ceil(len(self.records) / self.batch_size)

    def example(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Prepared, un-augmented (image uint8 (S,S,3), label uint8 (S,S)) of record k (cached),
        the image through the sequence's grade ``preprocessing``."""
        cache = self.cache if self.cache_enabled else None
        key = f"{example_key(self.records[k])}|{self.preprocessing}"
        hit = cache.get(key) if cache is not None else None
        if hit is None:
            image, label = cached_example(None, self.records[k], self.image_size, self.include_od)
            hit = (preprocess_grade_inputs(image[None], self.preprocessing)[0], label)
            if cache is not None:
                cache[key] = hit
        return hit

    def preload(self, progress: bool = True) -> None:
        """Decode and prepare every record now (tqdm bar when there are many)."""
        todo = [k for k in range(len(self.records))
                if f"{example_key(self.records[k])}|{self.preprocessing}" not in self.cache]
        bar = progress and len(todo) >= _PRELOAD_BAR
        for k in tqdm(todo, desc="preparing images", unit="img", disable=not bar):
            self.example(k)

    def __getitem__(self, i: int):
        if not 0 <= i < len(self):
            raise IndexError(f"batch {i} out of range (0..{len(self) - 1})")
        idx = self.order[i * self.batch_size:(i + 1) * self.batch_size]
        b, s = len(idx), self.image_size
        x = np.zeros((b, s, s, 3), np.float32)
        labels = np.zeros((b, s, s), np.uint8)
        for j, k in enumerate(idx):
            image, label = self.example(int(k))
            if self.augmentation is not None:
                rng = np.random.default_rng([self.seed, self.epoch, int(k)])
                image, label = self.augmentation.apply(image, label, rng)
            x[j] = image
            labels[j] = label
        y, sw = {}, {}
        if "seg" in self.outputs:
            y["seg"] = one_hot_labels(labels, self.n_seg_classes)
            per_sample = np.array([1.0 if self.records[k].has_masks else 0.0 for k in idx], np.float32)
            sw["seg"] = per_sample
        if "grade" in self.outputs:
            grade = np.zeros((b, N_GRADES), np.float32)
            w = np.zeros((b,), np.float32)
            for j, k in enumerate(idx):
                g = self.records[k].grade
                if g is not None:
                    grade[j, int(g)] = 1.0
                    w[j] = 1.0
            y["grade"], sw["grade"] = grade, w
        return x, y, sw

    def set_epoch(self, epoch: int) -> None:
        """Continue as epoch `epoch` (a resumed run sees the shuffles of an uninterrupted one)."""
        self.epoch = epoch
        self.order = self._order()

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self._order()
