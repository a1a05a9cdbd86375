"""Lesion-scale training crops: batches of ``patch_size`` windows cut from fundus images prepared at
``work_size``, most of them centred on a lesion.

Why: at 128 px for the whole fundus most microaneurysms are below one pixel, and a segmenter either
floods or collapses. Preparing the fundus at a working size (512 px) and training on lesion-scale
crops (128 px) keeps the lesions visible and the batches cheap. The recipe measured in DESIGN.md
("Pretrained encoder weights offline"): 80 % of the crops centred, with jitter, on a pixel of a
randomly drawn lesion class, the rest uniform inside the fundus; flips; batch 8.

Sampling of one crop (:meth:`LesionCropSequence.crop_specs`):

* with probability ``lesion_share``: a lesion class drawn uniformly among the lesion classes present
  in the records (MA, HE, EX, SE; the optic disc is never a target), so microaneurysms are drawn as
  often as hard exudates although they cover 5x fewer pixels (IDRiD train at 512 px); then an image
  containing that class (uniformly), then one of its pixels of that class (uniformly). The crop is
  centred there plus a jitter of up to ``jitter * patch_size`` pixels per axis (uniform integers);
  ``jitter < 0.5`` guarantees the lesion pixel lies inside the crop.
* otherwise: an image uniformly, then a centre uniformly among its fundus pixels
  (:func:`~mtunet.data.preprocess.fundus_mask` of the prepared image — the disc, dark lesions and
  vessels included — plus every labelled pixel), so no crop lies wholly in the black padding.

The window is then clamped inside the image (the chosen centre pixel always stays in it).
"Class of a pixel" is the prepared label map's, i.e. after the MA > HE > SE > EX > OD priority.

Determinism: the crops and augmentations of batch ``i`` in epoch ``e`` come from
``np.random.default_rng([seed, e, i])`` alone, so worker scheduling does not matter and
:meth:`~LesionCropSequence.set_epoch` resumes a run exactly.
"""
from __future__ import annotations

import dataclasses
import math
import threading
from typing import NamedTuple

import keras
import numpy as np
from tqdm import tqdm

from mtunet.config import CLASS_INDEX, CLASS_NAMES_WITH_OD, LESION_GROUPS, LESIONS, N_GRADES
from mtunet.config import n_seg_classes as n_seg_classes_for
from mtunet.data.preprocess import cached_example, fundus_mask, one_hot_labels

LESION_CLASSES: tuple[int, ...] = tuple(CLASS_INDEX[c] for c in LESIONS)
UNIFORM = 0  # the "drawn class" of a crop that was not centred on a lesion
_PRELOAD_BAR = 16
_MAX_REJECTIONS = 256


class CropSpec(NamedTuple):
    """Where one crop comes from: record index, drawn class (0 = uniform crop), top-left corner."""

    record: int
    drawn: int
    y0: int
    x0: int


@dataclasses.dataclass
class _Indexed:
    """One prepared record and its sampling index (flat pixel indexes, int32)."""

    image: np.ndarray          # uint8 (S, S, 3)
    label: np.ndarray          # uint8 (S, S)
    fundus: np.ndarray         # bool (S, S): where uniform crops may be centred
    lesion_pixels: dict        # class index -> int32 flat indexes of its pixels (present classes only)


class LesionCropSequence(keras.utils.PyDataset):
    """``(x, y, sample_weight)`` batches of lesion-centred crops, for ``model.fit``.

    The batch format of :class:`mtunet.data.pipeline.FundusSequence`, at ``patch_size``:
    x float32 (B, P, P, 3) raw RGB 0..255; y["seg"] one-hot float32 (B, P, P, n_seg_classes),
    sample_weight["seg"] ones (every record must be lesion-annotated); with "grade" in ``outputs``
    y["grade"] zeros (B, 5) and sample_weight["grade"] zeros, so a multi-task model trains on crops
    with its grade loss switched off. Only the keys in ``outputs`` appear.

    records:          lesion-annotated Records (``has_masks``), e.g. IDRiD-S train.
    work_size:        side the fundus is prepared at (:func:`prepare_example`: fundus crop, square pad,
                      resize, masks with the any-overlap rule). Prepared examples are cached in memory.
    patch_size:       side of a crop (<= work_size).
    batch_size:       crops per batch.
    steps_per_epoch:  batches per epoch (``len(self)``): the training budget is counted in optimiser
                      steps, not in passes over a few dozen images.
    lesion_share:     probability that a crop is centred on a lesion (0..1); the rest are uniform.
    seed:             with the epoch and the batch index, fixes every crop and augmentation.
    augmentation:     None or an :class:`~mtunet.data.augment.Augmentation`, applied jointly to image
                      and label. A window larger than the patch (:meth:`window_size`: large enough
                      that the largest rotation, zoom-out and shear never reach its edge) is cut around
                      the patch, augmented about its centre, and the patch cut from the middle, so
                      rotations do not paint black corners into the fundus. The Augmentation's width /
                      height shifts are not used: the crop position is already random, and shifting
                      again would only move the lesion out of the patch. Flips alone give exactly the
                      flipped patch. A nearest-neighbour warp can drop a one-pixel lesion when it
                      zooms out; the sampling guarantee above holds before augmentation.
    include_od, n_seg_classes: as in FundusSequence (OD is a sixth class, never a crop target).
    jitter:           maximum offset of a lesion crop's centre from its lesion pixel, as a fraction of
                      ``patch_size`` per axis, 0 <= jitter < 0.5.
    pydataset_kwargs: workers, use_multiprocessing, max_queue_size for ``keras.utils.PyDataset``.

    Every record is prepared (decoded and resized) before the first batch; :meth:`preload` does it
    up front with a progress bar.
    """

    def __init__(self, records, work_size: int = 512, patch_size: int = 128, batch_size: int = 8,
                 steps_per_epoch: int = 100, lesion_share: float = 0.8, seed: int = 0,
                 augmentation=None, include_od: bool = False, n_seg_classes: int = 5,
                 outputs=("seg",), jitter: float = 0.25, **pydataset_kwargs):
        super().__init__(**pydataset_kwargs)
        self.records = list(records)
        if not self.records:
            raise ValueError("LesionCropSequence needs at least one record")
        unannotated = [r.image_id for r in self.records if not r.has_masks]
        if unannotated:
            raise ValueError(f"LesionCropSequence needs lesion-annotated records (has_masks); "
                             f"{len(unannotated)} have no masks, e.g. {unannotated[:3]}")
        unknown = set(outputs) - {"seg", "grade"}
        if unknown or not outputs:
            raise ValueError(f"outputs must be 'seg' and/or 'grade', got {tuple(outputs)}")
        n_needed = n_seg_classes_for(include_od)
        if n_seg_classes < n_needed:
            raise ValueError(f"n_seg_classes={n_seg_classes} but labels use {n_needed} classes "
                             f"(include_od={include_od})")
        self.work_size, self.patch_size = int(work_size), int(patch_size)
        if not 1 <= self.patch_size <= self.work_size:
            raise ValueError(f"patch_size={patch_size} must be between 1 and work_size={work_size}")
        self.batch_size, self.steps_per_epoch = int(batch_size), int(steps_per_epoch)
        if self.batch_size < 1 or self.steps_per_epoch < 1:
            raise ValueError(f"batch_size ({batch_size}) and steps_per_epoch ({steps_per_epoch}) "
                             f"must be >= 1")
        if not 0.0 <= float(lesion_share) <= 1.0:
            raise ValueError(f"lesion_share must be in [0, 1], got {lesion_share}")
        if not 0.0 <= float(jitter) < 0.5:
            raise ValueError(f"jitter must be in [0, 0.5) (a fraction of patch_size), got {jitter}")
        self.lesion_share, self.jitter = float(lesion_share), float(jitter)
        if self.lesion_share > 0 and not any(set(r.masks or {}) & set(LESIONS) for r in self.records):
            raise ValueError(f"lesion_share={lesion_share} but none of the {len(self.records)} records "
                             f"has a lesion mask ({', '.join(LESIONS)}); use lesion_share=0")
        self.seed = seed
        self.include_od = include_od
        self.n_seg_classes = int(n_seg_classes)
        self.outputs = tuple(outputs)
        self.augmentation = _without_shifts(augmentation)
        self.window = window_size(self.patch_size, self.augmentation)
        self.epoch = 0
        self.cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._indexed: list[_Indexed] | None = None
        self._by_class: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    def __getstate__(self):  # picklable for multiprocessing workers (a lock is not)
        state = self.__dict__.copy()
        state.pop("_lock", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # --- data -----------------------------------------------------------------------------------
    def example(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Prepared, un-augmented (image uint8 (S,S,3), label uint8 (S,S)) of record k at work_size."""
        return cached_example(self.cache, self.records[k], self.work_size, self.include_od)

    def preload(self, progress: bool = True) -> None:
        """Prepare every record and build the sampling index (tqdm bar when there are many).

        ValueError when ``lesion_share > 0`` and no record has a lesion pixel at work_size.
        """
        with self._lock:
            if self._indexed is not None:
                return
            bar = progress and len(self.records) >= _PRELOAD_BAR
            indexed = []
            for k in tqdm(range(len(self.records)), desc="preparing images", unit="img", disable=not bar):
                image, label = self.example(k)
                flat = label.ravel()
                pixels = {}
                for c in LESION_CLASSES:
                    idx = np.flatnonzero(flat == c).astype(np.int32)
                    if len(idx):
                        pixels[c] = idx
                indexed.append(_Indexed(image, label, fundus_mask(image) | (label > 0), pixels))
            by_class = {c: np.array([k for k, ix in enumerate(indexed) if c in ix.lesion_pixels], np.int64)
                        for c in LESION_CLASSES}
            by_class = {c: ks for c, ks in by_class.items() if len(ks)}
            if self.lesion_share > 0 and not by_class:
                raise ValueError(f"lesion_share={self.lesion_share} but the {len(self.records)} records "
                                 f"have no lesion pixel ({', '.join(LESIONS)}) at work_size "
                                 f"{self.work_size}; use lesion_share=0")
            self._by_class, self._indexed = by_class, indexed

    @property
    def lesion_classes(self) -> tuple[int, ...]:
        """The class indexes lesion crops are drawn from (those present in the records)."""
        self.preload(progress=False)
        return tuple(sorted(self._by_class))

    # --- sampling -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.steps_per_epoch

    def _rng(self, i: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, int(i)])

    def _draw(self, rng: np.random.Generator) -> list[CropSpec]:
        s, p = self.work_size, self.patch_size
        reach = int(math.floor(self.jitter * p))
        classes = sorted(self._by_class)
        specs = []
        for _ in range(self.batch_size):
            if classes and rng.random() < self.lesion_share:
                c = classes[rng.integers(len(classes))]
                holders = self._by_class[c]
                k = int(holders[rng.integers(len(holders))])
                pixels = self._indexed[k].lesion_pixels[c]
                cy, cx = divmod(int(pixels[rng.integers(len(pixels))]), s)
                dy, dx = rng.integers(-reach, reach + 1, size=2)
                cy, cx = cy + int(dy), cx + int(dx)
            else:
                c, k = UNIFORM, int(rng.integers(len(self._indexed)))
                cy, cx = self._fundus_pixel(self._indexed[k].fundus, rng)
            y0 = int(np.clip(cy - p // 2, 0, s - p))
            x0 = int(np.clip(cx - p // 2, 0, s - p))
            specs.append(CropSpec(k, int(c), y0, x0))
        return specs

    @staticmethod
    def _fundus_pixel(mask: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
        """A uniform pixel of ``mask`` by rejection (the fundus fills ~60 % of the square)."""
        h, w = mask.shape
        for _ in range(_MAX_REJECTIONS):
            y, x = int(rng.integers(h)), int(rng.integers(w))
            if mask[y, x]:
                return y, x
        flat = np.flatnonzero(mask)
        return divmod(int(flat[rng.integers(len(flat))]), w)

    def crop_specs(self, i: int) -> list[CropSpec]:
        """The crops of batch ``i`` of the current epoch (what :meth:`__getitem__` cuts)."""
        self._check_index(i)
        self.preload(progress=False)
        return self._draw(self._rng(i))

    def _check_index(self, i: int) -> None:
        if not 0 <= i < len(self):
            raise IndexError(f"batch {i} out of range (0..{len(self) - 1})")

    # --- batches --------------------------------------------------------------------------------
    def _cut(self, spec: CropSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        item, p = self._indexed[spec.record], self.patch_size
        if self.augmentation is None:
            return (item.image[spec.y0:spec.y0 + p, spec.x0:spec.x0 + p],
                    item.label[spec.y0:spec.y0 + p, spec.x0:spec.x0 + p])
        margin = (self.window - p) // 2
        y0, x0 = spec.y0 - margin, spec.x0 - margin
        image = _window(item.image, y0, x0, self.window)
        label = _window(item.label, y0, x0, self.window)
        image, label = self.augmentation.apply(image, label, rng)
        return image[margin:margin + p, margin:margin + p], label[margin:margin + p, margin:margin + p]

    def _batch(self, i: int):
        """(x float32 (B,P,P,3), labels uint8 (B,P,P), specs) of batch i of the current epoch."""
        self._check_index(i)
        self.preload(progress=False)
        rng = self._rng(i)
        specs = self._draw(rng)
        p = self.patch_size
        x = np.zeros((len(specs), p, p, 3), np.float32)
        labels = np.zeros((len(specs), p, p), np.uint8)
        for j, spec in enumerate(specs):
            x[j], labels[j] = self._cut(spec, rng)
        return x, labels, specs

    def __getitem__(self, i: int):
        x, labels, _ = self._batch(i)
        b = len(x)
        y, sw = {}, {}
        if "seg" in self.outputs:
            y["seg"] = one_hot_labels(labels, self.n_seg_classes)
            sw["seg"] = np.ones((b,), np.float32)
        if "grade" in self.outputs:
            y["grade"] = np.zeros((b, N_GRADES), np.float32)
            sw["grade"] = np.zeros((b,), np.float32)
        return x, y, sw

    def set_epoch(self, epoch: int) -> None:
        """Continue as epoch ``epoch`` (a resumed run sees the crops of an uninterrupted one)."""
        self.epoch = int(epoch)

    def on_epoch_end(self) -> None:
        self.epoch += 1

    # --- what the sampler feeds -----------------------------------------------------------------
    def stats(self, n_batches: int = 32) -> dict:
        """What the sampler feeds, over the first ``n_batches`` batches of the current epoch.

        Returns ``{"crops": N, "drawn": {"uniform" | class name: share of crops},
        "crop_pixels": {name: share of crop pixels}, "image_pixels": {name: share of pixels of the
        whole prepared images}}``; the pixel shares cover every class ("background", "MA", ...) and
        the lesion groups "red" and "yellow", crops as fed (after augmentation).
        """
        self.preload(progress=False)
        n_batches = max(1, min(int(n_batches), len(self)))
        drawn, crop_counts = [], np.zeros(self.n_seg_classes, np.int64)
        for i in range(n_batches):
            _, labels, specs = self._batch(i)
            drawn += [s.drawn for s in specs]
            crop_counts += np.bincount(labels.ravel(), minlength=self.n_seg_classes)[:self.n_seg_classes]
        image_counts = np.zeros(self.n_seg_classes, np.int64)
        for item in self._indexed:
            image_counts += np.bincount(item.label.ravel(), minlength=self.n_seg_classes)[:self.n_seg_classes]
        drawn = np.asarray(drawn)
        names = ["uniform"] + [CLASS_NAMES_WITH_OD[c] for c in sorted(self._by_class)]
        codes = [UNIFORM] + sorted(self._by_class)
        return {"crops": int(len(drawn)),
                "drawn": {n: float(np.mean(drawn == c)) for n, c in zip(names, codes)},
                "crop_pixels": _shares(crop_counts),
                "image_pixels": _shares(image_counts)}


def _shares(counts: np.ndarray) -> dict:
    total = max(int(counts.sum()), 1)
    out = {CLASS_NAMES_WITH_OD[c]: float(counts[c]) / total for c in range(len(counts))}
    for group, classes in LESION_GROUPS.items():
        out[group] = float(sum(counts[c] for c in classes)) / total
    return out


def _without_shifts(augmentation):
    """The Augmentation with width/height shifts switched off (crops are already placed at random)."""
    if augmentation is None:
        return None
    if not hasattr(augmentation, "apply"):
        raise ValueError(f"augmentation must be None or have .apply(image, label, rng), got {augmentation!r}")
    if dataclasses.is_dataclass(augmentation) and {"width_shift", "height_shift"} <= {
            f.name for f in dataclasses.fields(augmentation)}:
        return dataclasses.replace(augmentation, width_shift=0.0, height_shift=0.0)
    return augmentation


def window_size(patch_size: int, augmentation) -> int:
    """Side of the window cut around a patch before ``augmentation``, so its edge never reaches the patch.

    The patch's half-side, mapped back through the largest rotation (x(cos r + sin r), at most
    sqrt 2), shear (x(1 + tan s) / cos s) and zoom-out (/(1 - z)), plus one pixel for bilinear
    sampling; (window - patch) is even so the patch sits exactly in the middle. ``patch_size``
    when there is no augmentation or it has no rotation / shear / zoom fields (augment the patch).
    """
    p = int(patch_size)
    if augmentation is None:
        return p
    rotation = abs(float(getattr(augmentation, "rotation_range", 0.0) or 0.0))
    shear = math.radians(abs(float(getattr(augmentation, "shear_range", 0.0) or 0.0)))
    zoom = abs(float(getattr(augmentation, "zoom_range", 0.0) or 0.0))
    if zoom >= 1.0 or shear >= math.pi / 2:
        raise ValueError(f"zoom_range must be < 1 and shear_range < 90 degrees for crops, got "
                         f"{zoom}, {math.degrees(shear)}")
    r = math.radians(min(rotation, 45.0))
    factor = (math.cos(r) + math.sin(r)) * (1.0 + math.tan(shear)) / math.cos(shear) / (1.0 - zoom)
    if factor == 1.0:
        return p
    margin = math.ceil((p * factor - p) / 2.0) + 1
    return p + 2 * margin


def _window(array: np.ndarray, y0: int, x0: int, side: int) -> np.ndarray:
    """array[y0:y0+side, x0:x0+side], zero (black / background) where the window leaves the array."""
    h, w = array.shape[:2]
    out = np.zeros((side, side) + array.shape[2:], array.dtype)
    ys, ye = max(y0, 0), min(y0 + side, h)
    xs, xe = max(x0, 0), min(x0 + side, w)
    if ys < ye and xs < xe:
        out[ys - y0:ye - y0, xs - x0:xe - x0] = array[ys:ye, xs:xe]
    return out
