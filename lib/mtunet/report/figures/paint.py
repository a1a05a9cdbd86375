"""Lesion overlays and error maps as arrays (pure numpy/OpenCV, no matplotlib): each returns a
uint8 RGB image, so the prediction CLI can paint masks without plotting. Predictions outside the
fundus can be left unpainted (:func:`fundus_fov`), as the scoring ignores them."""
from __future__ import annotations

from typing import Iterable

import cv2
import numpy as np

from mtunet.config import CLASS_COLOURS, CLASS_NAMES_WITH_OD, LESION_GROUPS, group_classes
from mtunet.report.figures.style import _OD_INDEX, ERROR_COLOURS


def _as_rgb_uint8(image) -> np.ndarray:
    """uint8 (H, W, 3) copy of an RGB image; accepts grey (H, W), RGBA, or floats in [0, 1]."""
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ValueError(f"image must be (H, W), (H, W, 3) or (H, W, 4), got {img.shape}")
    img = img[..., :3]
    if img.dtype != np.uint8:
        img = img.astype(float)
        if img.size and np.nanmax(img) <= 1.0:
            img = img * 255.0
        img = np.clip(np.nan_to_num(img), 0, 255).round().astype(np.uint8)
    return np.ascontiguousarray(img)


def _fit_map(class_map, shape: tuple[int, int]) -> np.ndarray:
    """Class map resized (nearest neighbour) to ``shape`` = (H, W) when it differs."""
    cm = np.asarray(class_map)
    if cm.ndim == 3 and cm.shape[-1] == 1:
        cm = cm[..., 0]
    if cm.ndim != 2:
        raise ValueError(f"class map must be (H, W) of class indexes, got {cm.shape}")
    cm = cm.astype(np.uint8)
    if cm.shape != tuple(shape):
        cm = cv2.resize(cm, (int(shape[1]), int(shape[0])), interpolation=cv2.INTER_NEAREST)
    return cm


def fundus_fov(image) -> np.ndarray:
    """Field of view of a fundus image, bool (H, W): the data layer's
    :func:`~mtunet.data.preprocess.fundus_mask`, so an overlay hides exactly the pixels the
    scoring ignores (a prediction on the black border is not a lesion anyone counts)."""
    from mtunet.data.preprocess import fundus_mask

    return fundus_mask(_as_rgb_uint8(image))


def _inside(class_map, fov) -> np.ndarray:
    """``class_map`` with every pixel outside ``fov`` (bool, same shape) set to background."""
    cm = np.asarray(class_map)
    return cm if fov is None else np.where(np.asarray(fov, bool), cm, 0).astype(cm.dtype)


def present_classes(class_maps: Iterable, include_od: bool = True) -> set[int]:
    """Lesion classes (indexes > 0, OD only with ``include_od``) found in any of the maps
    (``None`` maps skipped): what an overlay legend may list, and nothing else."""
    found: set[int] = set()
    for cm in class_maps:
        if cm is not None:
            found.update(int(v) for v in np.unique(np.asarray(cm)))
    found.discard(0)
    if not include_od:
        found.discard(_OD_INDEX)
    return {i for i in found if 0 < i < len(CLASS_NAMES_WITH_OD)}


def _group_label(group) -> str:
    if isinstance(group, str) and group in LESION_GROUPS:
        names = "+".join(CLASS_NAMES_WITH_OD[i] for i in LESION_GROUPS[group])
        return f"{group} lesions ({names})"
    return "lesions " + "+".join(CLASS_NAMES_WITH_OD[i] for i in group_classes(group))


def overlay(image, class_map, alpha: float = 0.55, include_od: bool = True,
            dilate: int = 0, fov=None) -> np.ndarray:
    """Image with lesion pixels painted in their ``CLASS_COLOURS`` (as in the paper's Fig. 6).

    Red family for MA/HE, yellow family for EX/SE, purple for the optic disc (class 5, skipped
    when ``include_od`` is False). Pixel = (1 - alpha) * image + alpha * colour; background
    (class 0) and unknown indexes are left unchanged. A class map of another size than the
    image is resized to it with nearest-neighbour interpolation. ``dilate`` > 0 grows each
    lesion by that many pixels (display only: microaneurysms of a few pixels vanish when a
    full-resolution fundus is shown a few inches wide). ``fov`` (bool (H, W), e.g.
    :func:`fundus_fov`) leaves every pixel outside it unpainted, dilated ones included.
    Returns uint8 RGB (H, W, 3).
    """
    img = _as_rgb_uint8(image)
    cm = _inside(_fit_map(class_map, img.shape[:2]), fov)
    out = img.astype(np.float32)
    a = float(np.clip(alpha, 0.0, 1.0))
    order = [_OD_INDEX] + [i for i in range(1, len(CLASS_NAMES_WITH_OD)) if i != _OD_INDEX]
    for idx in order:  # optic disc first, so (dilated) lesions are painted on top of it
        name = CLASS_NAMES_WITH_OD[idx]
        if name not in CLASS_COLOURS or (idx == _OD_INDEX and not include_od):
            continue
        mask = cm == idx
        if dilate and dilate > 0 and mask.any():
            kernel = np.ones((2 * int(dilate) + 1,) * 2, np.uint8)
            mask = cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)
            if fov is not None:
                mask &= np.asarray(fov, bool)
        if mask.any():
            colour = np.asarray(CLASS_COLOURS[name], np.float32)
            out[mask] = (1.0 - a) * out[mask] + a * colour
    return np.clip(out.round(), 0, 255).astype(np.uint8)


def _error_masks(pred_map, truth_map, shape, group, fov=None):
    classes = list(group_classes(group))
    pred = np.isin(_fit_map(pred_map, shape), classes)
    true = np.isin(_fit_map(truth_map, shape), classes)
    if fov is not None:
        pred &= np.asarray(fov, bool)
        true &= np.asarray(fov, bool)
    return {"TP": pred & true, "FP": pred & ~true, "FN": ~pred & true}


def error_map_rgb(image, pred_map, truth_map, group="red", alpha: float = 1.0,
                  grey_background: bool = True, fov=None) -> np.ndarray:
    """Per-pixel segmentation errors of one lesion group, painted on the image (uint8 RGB).

    TP green, FP blue, FN magenta (``ERROR_COLOURS``), colours chosen to differ from the lesion
    colours. The image is shown in grey (``grey_background``) so the error colours stand out;
    true-negative pixels are left as that grey image. Maps are resized (nearest) to the image;
    pixels outside ``fov`` (bool (H, W)) count as neither error, as in the scoring.
    """
    img = _as_rgb_uint8(image)
    if grey_background:
        grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        img = np.stack([grey] * 3, axis=-1)
    out = img.astype(np.float32)
    a = float(np.clip(alpha, 0.0, 1.0))
    for key, mask in _error_masks(pred_map, truth_map, img.shape[:2], group, fov).items():
        if mask.any():
            out[mask] = (1.0 - a) * out[mask] + a * np.asarray(ERROR_COLOURS[key], np.float32)
    return np.clip(out.round(), 0, 255).astype(np.uint8)


def _error_counts(pred_map, truth_map, shape, group, fov=None) -> dict[str, int]:
    return {k: int(m.sum()) for k, m in _error_masks(pred_map, truth_map, shape, group, fov).items()}
