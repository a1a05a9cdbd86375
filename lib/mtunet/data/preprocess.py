"""Decoding, fundus cropping, label maps and the resize rules used for every model input.

Pipeline of :func:`prepare_example`: decode RGB -> crop to the fundus disc (:func:`fundus_bbox`) ->
pad to a square with black (aspect kept) -> resize to ``image_size``. Masks go through the same
crop and pad and are resized one lesion at a time with the *any-overlap* rule before the label map
is built, so that a one-pixel microaneurysm in a 1024-px mask survives at 64 px.

Back to the image's own size (scoring, prediction, pseudo masks): :func:`restore_label_map` and
:func:`restore_probabilities` invert :func:`fit_square`; :func:`fundus_mask` is the field of view
and :func:`truth_masks` / :func:`truth_label_map` the annotations, both at the masks' own
resolution (never resized).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from mtunet.config import CLASS_INDEX, IGNORE_LABEL
from mtunet.errors import DataError

# Overlapping lesions: the later entry wins (smallest / rarest lesion last), i.e. MA > HE > SE > EX > OD.
PAINT_ORDER: tuple[str, ...] = ("OD", "EX", "SE", "HE", "MA")
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


def _open(path: Path, what: str) -> Image.Image:
    try:
        im = Image.open(path)
        im.load()
    except FileNotFoundError:
        raise DataError(path, "missing file") from None
    except Image.UnidentifiedImageError:
        raise DataError(path, f"unreadable {what}: not an image file") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(path, f"corrupt or truncated {what} ({exc})") from None
    return im


def load_rgb(path) -> np.ndarray:
    """Decode an RGB image: uint8 HxWx3. DataError if unreadable, corrupt/truncated or grayscale."""
    path = Path(path)
    im = _open(path, "image")
    if im.mode in _GRAY_MODES or (im.mode == "P" and _palette_is_gray(im)):
        raise DataError(path, f"grayscale image (PIL mode {im.mode}), expected RGB")
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im, dtype=np.uint8)


def _palette_is_gray(im: Image.Image) -> bool:
    pal = np.asarray(im.getpalette() or [], dtype=np.int32).reshape(-1, 3)
    return bool(len(pal)) and bool(np.all(pal[:, 0] == pal[:, 1]) and np.all(pal[:, 1] == pal[:, 2]))


def read_mask(path) -> np.ndarray:
    """A lesion mask as bool HxW.

    Handles the IDRiD formats: 1-bit (or 8-bit) palette TIFF with index 0 black / index 1 red
    (lesion = a palette index whose colour is not black), RGB(A) TIFF (lesion = red channel > 0,
    as IDRiD_81_EX.tif), and plain grayscale/bilevel masks (lesion = value > 0).
    DataError on a truncated or unreadable file.
    """
    path = Path(path)
    im = _open(path, "TIFF mask" if path.suffix.lower() in (".tif", ".tiff") else "mask")
    if im.mode == "P":
        arr = np.asarray(im)
        pal = np.asarray(im.getpalette() or [0, 0, 0, 255, 0, 0], dtype=np.int32).reshape(-1, 3)
        lut = np.zeros(256, dtype=bool)
        lut[: len(pal)] = pal.max(axis=1) > 0
        return lut[arr]
    if im.mode in ("RGB", "RGBA"):
        return np.asarray(im)[..., 0] > 0
    if im.mode == "1":
        return np.asarray(im, dtype=bool)
    if im.mode in ("L", "LA", "I", "I;16", "F"):
        arr = np.asarray(im)
        return (arr[..., 0] if arr.ndim == 3 else arr) > 0
    return np.asarray(im.convert("L")) > 0


def _fundus_foreground(image: np.ndarray, threshold: float | None = None
                       ) -> tuple[np.ndarray, float]:
    """(blurred red channel of a copy shrunk to <= 256 px, threshold): the fundus test of
    :func:`fundus_bbox` and :func:`fundus_mask`, so both see the same disc."""
    h, w = image.shape[:2]
    red = image[..., 0] if image.ndim == 3 else image
    scale = min(1.0, 256.0 / max(h, w))
    small = cv2.resize(red, (max(1, round(w * scale)), max(1, round(h * scale))),
                       interpolation=cv2.INTER_AREA) if scale < 1 else red
    small = cv2.GaussianBlur(small.astype(np.float32), (5, 5), 0)
    t = threshold if threshold is not None else max(15.0, 0.1 * float(np.percentile(small, 99)))
    return small, float(t)


def fundus_bbox(image: np.ndarray, threshold: float | None = None) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of the fundus disc: rows/columns where the blurred red channel is bright.

    Works on a copy shrunk to <= 256 px. The threshold is ``max(15, 0.1 * 99th percentile)`` of the
    blurred red channel unless given; a row/column belongs to the disc when more than 2 % of it is
    above the threshold. An image with no such pixel (all black) gives the full frame.
    """
    h, w = image.shape[:2]
    small, t = _fundus_foreground(image, threshold)
    fg = small > t
    rows = np.flatnonzero(fg.mean(axis=1) > 0.02)
    cols = np.flatnonzero(fg.mean(axis=0) > 0.02)
    if len(rows) == 0 or len(cols) == 0:
        return 0, h, 0, w
    sh, sw = small.shape[:2]
    y0 = int(np.floor(rows[0] * h / sh))
    y1 = int(np.ceil((rows[-1] + 1) * h / sh))
    x0 = int(np.floor(cols[0] * w / sw))
    x1 = int(np.ceil((cols[-1] + 1) * w / sw))
    return max(0, y0), min(h, y1), max(0, x0), min(w, x1)


def fundus_mask(image: np.ndarray, threshold: float | None = None, bbox=None) -> np.ndarray:
    """The field of view: bool (H, W) at the image's own resolution, True inside the fundus disc.

    Same test as :func:`fundus_bbox` (red channel brighter than ``max(15, 0.1 * 99th percentile)``
    of the blurred shrunk copy, or ``threshold``), applied to the red channel at full resolution
    (a 5x5 Gaussian blur against JPEG noise). The field of view is the convex hull of the largest
    bright region — a disc, cut where the camera frame cuts it, not the bbox rectangle; the hull
    fills dark lesions, vessels and a dim macula inside the disc — clipped to ``bbox`` (default
    :func:`fundus_bbox`), so the mask never leaves the box the model input is cut from. An image
    without a bright pixel (all black) gives the whole frame, as :func:`fundus_bbox` does.
    """
    h, w = image.shape[:2]
    _, t = _fundus_foreground(image, threshold)
    y0, y1, x0, x1 = bbox if bbox is not None else fundus_bbox(image, threshold)
    red = image[..., 0] if image.ndim == 3 else image
    fg = (cv2.GaussianBlur(red.astype(np.float32), (5, 5), 0) > t).astype(np.uint8)
    contours, _ = cv2.findContours(fg, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return np.ones((h, w), bool)
    hull = cv2.convexHull(max(contours, key=cv2.contourArea))
    out = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(out, hull, 1)
    box = np.zeros((h, w), bool)
    box[y0:y1, x0:x1] = True
    return out.astype(bool) & box


def pad_to_square(array: np.ndarray) -> np.ndarray:
    """Centre ``array`` (HxW or HxWxC) on a black square canvas of side max(H, W)."""
    h, w = array.shape[:2]
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    out = np.zeros((side, side) + array.shape[2:], dtype=array.dtype)
    out[top:top + h, left:left + w] = array
    return out


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Square image -> size x size: INTER_AREA when shrinking, INTER_LINEAR when enlarging.

    Any number of channels (OpenCV resizes at most 4 at once: wider maps go 4 channels at a time).
    """
    if image.shape[0] == size and image.shape[1] == size:
        return image
    interp = cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_LINEAR
    if image.ndim == 3 and image.shape[2] > 4:
        return np.concatenate([cv2.resize(image[..., c:c + 4], (size, size), interpolation=interp)
                               .reshape(size, size, -1) for c in range(0, image.shape[2], 4)],
                              axis=-1)
    return cv2.resize(image, (size, size), interpolation=interp)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Square bool mask -> size x size bool with the any-overlap rule.

    Shrinking: area-average the 0/1 mask (INTER_AREA) and call every output pixel > 0 a lesion, so a
    single lesion pixel survives any downscale (lesions get at most one output pixel fatter).
    Enlarging: nearest neighbour.
    """
    if mask.shape[0] == size and mask.shape[1] == size:
        return mask.astype(bool)
    if mask.shape[0] > size:
        return cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA) > 0
    return cv2.resize(mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST) > 0


def label_map(masks: dict, include_od: bool = False, ignored=()) -> np.ndarray:
    """Class-index map uint8 HxW: 0 background, 1 MA, 2 HE, 3 EX, 4 SE, (5 OD when include_od).

    Overlapping lesions: the smallest/rarest lesion wins, MA > HE > SE > EX > OD (masks are painted
    in the order OD, EX, SE, HE, MA). OD is ignored unless ``include_od``. The pixels of the
    lesion codes in ``ignored`` become IGNORE_LABEL, painted last: the loss learns nothing there.
    """
    shape = next(iter(masks.values())).shape if masks else None
    if shape is None:
        raise ValueError("label_map needs at least one mask (or use np.zeros for an unannotated image)")
    out = np.zeros(shape[:2], dtype=np.uint8)
    for code in PAINT_ORDER:
        if code == "OD" and not include_od:
            continue
        if code in masks and masks[code] is not None:
            out[np.asarray(masks[code], dtype=bool)] = CLASS_INDEX[code]
    for code in ignored:
        if masks.get(code) is not None:
            out[np.asarray(masks[code], dtype=bool)] = IGNORE_LABEL
    return out


def one_hot_labels(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """One-hot float32 (..., n_classes) of a label map; IGNORE_LABEL pixels get an all-zero row.

    A label outside 0..n_classes-1 (other than IGNORE_LABEL) is a ValueError, as an index error
    would be: an OD label with a five-class model, say.
    """
    labels = np.asarray(labels)
    ignore = labels == IGNORE_LABEL
    classes = np.where(ignore, 0, labels)
    if classes.size and int(classes.max()) >= n_classes:
        raise ValueError(f"label {int(classes.max())} outside the {n_classes} classes of the model")
    out = np.eye(n_classes, dtype=np.float32)[classes]
    out[ignore] = 0.0
    return out


def fit_square(image: np.ndarray, image_size: int, bbox=None) -> np.ndarray:
    """Crop to the fundus (``bbox`` or :func:`fundus_bbox`), pad to square, resize: the model input."""
    y0, y1, x0, x1 = bbox if bbox is not None else fundus_bbox(image)
    return resize_image(pad_to_square(image[y0:y1, x0:x1]), image_size)


def prepare_example(record, image_size: int, include_od: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8 (S,S,3), label uint8 (S,S)) for one Record.

    The image is cropped to the fundus disc, padded to a square (aspect kept, black border) and
    resized with INTER_AREA (INTER_LINEAR if enlarging). Each lesion mask gets the same crop and pad
    and is resized on its own with the any-overlap rule (area-resize the 0/1 mask, > 0 = lesion;
    see :func:`resize_mask`) *before* the label map is built with the MA > HE > SE > EX > OD
    priority, so microaneurysms survive at 64-512 px. Records without masks get an all-zero label.
    A mask whose size differs from the image's is a DataError.
    """
    image = load_rgb(record.image_path)
    bbox = fundus_bbox(image)
    y0, y1, x0, x1 = bbox
    out_image = fit_square(image, image_size, bbox)
    resized: dict[str, np.ndarray] = {}
    for code, path in (record.masks or {}).items():
        if code == "OD" and not include_od:
            continue
        mask = read_mask(path)
        if mask.shape != image.shape[:2]:
            raise DataError(path, f"mask is {mask.shape[1]}x{mask.shape[0]} but image "
                                  f"{Path(record.image_path).name} is {image.shape[1]}x{image.shape[0]}")
        resized[code] = resize_mask(pad_to_square(mask[y0:y1, x0:x1]), image_size)
    label = (label_map(resized, include_od, ignored=record.ignored)
             if resized else np.zeros((image_size, image_size), np.uint8))
    return out_image, label


def example_key(record) -> str:
    """The cache key of a record's prepared example: the record, its file and its ignored lesions."""
    ignored = record.ignored
    return f"{record.key}|{record.image_path}" + (f"|ignored={','.join(ignored)}" if ignored else "")


def cached_example(cache: dict | None, record, image_size: int, include_od: bool = False
                   ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`prepare_example`, looked up in / stored into `cache` (None: no cache) under
    :func:`example_key`, so a training sequence decodes each image once."""
    key = example_key(record)
    hit = cache.get(key) if cache is not None else None
    if hit is None:
        hit = prepare_example(record, image_size, include_od=include_od)
        if cache is not None:
            cache[key] = hit
    return hit


def load_arrays(records, image_size: int, include_od: bool = False, progress: bool = True):
    """Prepared arrays for evaluation: images uint8 (N,S,S,3), labels uint8 (N,S,S), grades int64 (N,).

    grades is -1 where a record has no grade; labels are all 0 for records without masks.
    """
    records = list(records)
    n, s = len(records), int(image_size)
    images = np.zeros((n, s, s, 3), np.uint8)
    labels = np.zeros((n, s, s), np.uint8)
    grades = np.full((n,), -1, np.int64)
    for i, r in enumerate(tqdm(records, desc="loading images", unit="img",
                               disable=not progress or n < 16)):
        images[i], labels[i] = prepare_example(r, s, include_od=include_od)
        if r.grade is not None:
            grades[i] = int(r.grade)
    return images, labels, grades


def _from_square(square_map: np.ndarray, original_hw: tuple[int, int], bbox, fill,
                 interpolation: int | None = None) -> np.ndarray:
    """The inverse geometry of :func:`fit_square`, shared by class and probability maps.

    ``square_map`` (S, S) or (S, S, C) is resized to the padded square of the fundus crop
    (``interpolation``, default :func:`resize_image`'s rule), the centring pad is removed and the
    crop is placed at ``bbox`` on a canvas of the original height and width filled with ``fill``
    (a scalar, or one value per channel).
    """
    y0, y1, x0, x1 = bbox
    h, w = y1 - y0, x1 - x0
    side = max(h, w)
    if interpolation is None:
        square = resize_image(square_map, side)
    elif square_map.shape[:2] == (side, side):
        square = square_map
    else:
        square = cv2.resize(square_map, (side, side), interpolation=interpolation)
    square = square.reshape((side, side) + square_map.shape[2:])  # cv2 drops a lone channel axis
    top, left = (side - h) // 2, (side - w) // 2
    out = np.empty(tuple(original_hw) + square_map.shape[2:], dtype=square_map.dtype)
    out[...] = fill
    out[y0:y1, x0:x1] = square[top:top + h, left:left + w]
    return out


def restore_label_map(label: np.ndarray, original_hw: tuple[int, int], bbox) -> np.ndarray:
    """Inverse of :func:`fit_square` for a class map: the model's square frame -> the original image.

    The map is resized (nearest neighbour) to the padded square of the fundus crop, the centring
    pad is removed and the crop is placed back at ``bbox`` on an all-background canvas of the
    original height and width. Used for pseudo masks and predictions at the input's own size.
    """
    return _from_square(label.astype(np.uint8), original_hw, bbox, 0, cv2.INTER_NEAREST)


def restore_probabilities(prob: np.ndarray, original_hw: tuple[int, int], bbox) -> np.ndarray:
    """Inverse of :func:`fit_square` for a softmax map: (S, S, C) -> float32 (H, W, C).

    Each channel is resized bilinearly (INTER_AREA if the crop is smaller than S) to the padded
    square of the fundus crop, the centring pad is removed and the crop is placed at ``bbox``.
    Outside the bbox the map says "certainly background": channel 0 is 1, every other channel 0.
    Rows still sum to 1 where the input's did (both interpolations are convex combinations).
    """
    prob = np.asarray(prob, dtype=np.float32)
    if prob.ndim != 3:
        raise ValueError(f"restore_probabilities expects (S, S, C) probabilities, got {prob.shape}")
    fill = np.zeros(prob.shape[-1], np.float32)
    fill[0] = 1.0
    return _from_square(prob, original_hw, bbox, fill)


def truth_masks(record, include_od: bool = False, image_hw: tuple[int, int] | None = None
                ) -> dict[str, np.ndarray]:
    """The annotators' masks of a record at their own resolution: lesion code -> bool (H, W).

    Never resized. Every lesion of ``config.LESIONS`` is present: a mask file the record lacks
    means "none of that lesion" (IDRiD omits empty masks) and gives an all-False mask. "OD" is
    added when ``include_od``. The masks keep their overlaps (IDRiD marks some pixels as two
    lesions): per-lesion scores use each lesion's own mask, as the IDRiD challenge does; the class
    map (:func:`truth_label_map`) resolves overlaps by the MA > HE > SE > EX > OD priority.

    ``image_hw`` is the image's (height, width) (read from the image file's header when not
    given); a mask of another size is a DataError. A record without annotations is a DataError.
    """
    from mtunet.config import LESIONS

    if not record.has_masks and not record.masks:
        raise DataError(record.image_path, "the image has no lesion annotation to score against")
    if image_hw is None:
        try:
            with Image.open(record.image_path) as im:  # the header only: no decoding
                image_hw = (im.height, im.width)
        except (OSError, SyntaxError, ValueError) as exc:
            raise DataError(record.image_path, f"unreadable image ({exc})") from None
    codes = LESIONS + (("OD",) if include_od else ())
    out: dict[str, np.ndarray] = {}
    for code in codes:
        path = (record.masks or {}).get(code)
        if path is None:
            out[code] = np.zeros(tuple(image_hw), bool)
            continue
        mask = read_mask(path)
        if mask.shape != tuple(image_hw):
            raise DataError(path, f"mask is {mask.shape[1]}x{mask.shape[0]} but image "
                                  f"{Path(record.image_path).name} is {image_hw[1]}x{image_hw[0]}")
        out[code] = mask
    return out


def truth_label_map(record, include_od: bool = False, image_hw: tuple[int, int] | None = None
                    ) -> np.ndarray:
    """The ground-truth class map uint8 (H, W) at the masks' own size (:func:`label_map`'s
    MA > HE > SE > EX > OD priority), never resized."""
    return label_map(truth_masks(record, include_od, image_hw), include_od)
