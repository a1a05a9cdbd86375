"""Cross-camera fundus normalisation: Ben Graham's local colour normalisation on the model input.

What Graham did (Kaggle "Diabetic Retinopathy Detection" 2015, first place; his competition report
"Kaggle Diabetic Retinopathy Detection competition report", 2015, and the code in it):

1. rescale the photograph so that the fundus disc has a radius of 300 px (the radius measured on the
   middle row: pixels brighter than a tenth of the row's mean);
2. ``4 * image - 4 * GaussianBlur(image, sigma = 300 / 30) + 128`` per channel (``cv2.addWeighted``),
   i.e. subtract the local average colour, amplify the rest four times and re-centre it at grey;
3. keep a circle of 90 % of the radius around the image centre and set everything outside it to 128
   (the blur smears the black surround into the rim: the outer 10 % is a bright ring, not retina).

A global brightness or colour cast (another camera, flash or pigmentation) is mostly a slowly varying
*additive* or *multiplicative* change of each channel; step 2 removes the additive part exactly and
turns the multiplicative part into a contrast change around 128, so images of one retina from two
cameras come out much closer than the photographs are.

Where we chose (each is a named parameter of :func:`normalise_fundus`):

* **Geometry** is the project's own (:mod:`mtunet.data.preprocess`): crop to the fundus disc with
  :func:`~mtunet.data.preprocess.fundus_bbox`, pad to a square, resize to ``side``
  (:func:`~mtunet.data.preprocess.fit_square`). The disc's width then spans the square, so its
  radius is ``side / 2`` for every camera, size and border (Graham's "fixed radius", here tied to
  the output side instead of 300 px), and the lesion masks of
  :func:`~mtunet.data.preprocess.prepare_example`, which go through the same crop, pad and resize,
  stay aligned with the normalised image.
* The filter runs at the output resolution (``sigma = sigma_fraction * side / 2``; Graham's
  ``sigma_fraction`` = 1/30, i.e. 3.7 px at 224 px), not at a 300-px radius followed by a resize.
* The mask is Graham's 90 % circle **intersected with the field of view** (:func:`fundus_mask`)
  shrunk by the same 10 % of the radius, so that where the camera frame cuts the disc (top and bottom
  of most EyePACS and Messidor photographs) the black band and the ring the blur leaves at its edge
  are masked as the round rim is. Outside: ``background`` (Graham's 128).

Use on prepared model inputs (``load_arrays``): :func:`normalise_arrays` applies the filter to
images that are already cropped, padded and resized (the field of view is found again on them).
This module builds on :mod:`mtunet.data.preprocess`, so preprocess must not import it (the library
keeps no import circle): a hook there takes the filter as a parameter from its caller.
"""
from __future__ import annotations

import cv2
import numpy as np

from mtunet.data.preprocess import fit_square, fundus_bbox, fundus_mask, pad_to_square, resize_image
from mtunet.errors import UserError

# Graham's choices (see the module docstring).
GRAHAM_SIGMA_FRACTION = 1.0 / 30.0   # blur sigma as a fraction of the disc radius (10 px at radius 300)
GRAHAM_GAIN = 4.0                    # amplification of image - blur
GRAHAM_MASK_FRACTION = 0.9           # kept circle, fraction of the disc radius
GRAHAM_BACKGROUND = 128              # value of the masked outside (and the re-centring level)
MIN_SIDE = 16


def check_rgb_image(image, what: str = "image") -> np.ndarray:
    """``image`` as a uint8 (H, W, 3) array, else a UserError naming the problem: not an array,
    empty, grayscale (2-D, one channel, or three identical channels), another channel count, or
    another dtype."""
    if not isinstance(image, np.ndarray):
        raise UserError(f"{what}: expected an RGB image as a numpy array (H, W, 3), "
                        f"got {type(image).__name__}")
    if image.size == 0:
        raise UserError(f"{what}: empty image (shape {image.shape})")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        raise UserError(f"{what}: grayscale image (shape {image.shape}), expected RGB (H, W, 3)")
    if image.ndim != 3 or image.shape[2] != 3:
        raise UserError(f"{what}: expected an RGB image of shape (H, W, 3), got shape {image.shape}")
    if image.dtype != np.uint8:
        raise UserError(f"{what}: expected uint8 pixels 0-255, got dtype {image.dtype}")
    if np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 1], image[..., 2]):
        raise UserError(f"{what}: grayscale image (its three channels are identical), expected a "
                        "colour fundus photograph")
    return image


def _check_parameters(side, sigma_fraction, gain, mask_fraction, background) -> int:
    if isinstance(side, bool) or not isinstance(side, (int, np.integer)) or side < MIN_SIDE:
        raise UserError(f"side must be an integer >= {MIN_SIDE} (pixels), got {side!r}")
    if not sigma_fraction > 0:
        raise UserError(f"sigma_fraction must be > 0 (a fraction of the disc radius), "
                        f"got {sigma_fraction!r}")
    if not gain > 0:
        raise UserError(f"gain must be > 0, got {gain!r}")
    if not 0 < mask_fraction <= 1:
        raise UserError(f"mask_fraction must be in (0, 1] (a fraction of the disc radius), "
                        f"got {mask_fraction!r}")
    if not 0 <= background <= 255:
        raise UserError(f"background must be a grey level 0-255, got {background!r}")
    return int(side)


def _graham(square: np.ndarray, field: np.ndarray, sigma_fraction: float, gain: float,
            mask_fraction: float, background: float) -> tuple[np.ndarray, np.ndarray]:
    """The filter on a square model input whose disc has radius side / 2 at the centre; ``field``
    is its field of view (bool). Returns (uint8 image, bool kept region)."""
    side = square.shape[0]
    radius = side / 2.0
    img = square.astype(np.float32)
    blur = cv2.GaussianBlur(img, (0, 0), sigmaX=sigma_fraction * radius)
    out = gain * (img - blur) + float(background)
    c = (side - 1) / 2.0
    yy, xx = np.ogrid[:side, :side]
    keep = (yy - c) ** 2 + (xx - c) ** 2 <= (mask_fraction * radius) ** 2
    margin = int(round((1.0 - mask_fraction) * radius))
    if margin > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
        field = cv2.erode(field.astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT,
                          borderValue=0).astype(bool)
    keep &= field
    out[~keep] = background
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), keep


def normalise_fundus(image: np.ndarray, side: int = 224, *,
                     sigma_fraction: float = GRAHAM_SIGMA_FRACTION, gain: float = GRAHAM_GAIN,
                     mask_fraction: float = GRAHAM_MASK_FRACTION, background: float = GRAHAM_BACKGROUND,
                     bbox=None, return_mask: bool = False):
    """Graham's local colour normalisation of one fundus photograph, at ``side`` x ``side``.

    ``image``: RGB uint8 (H, W, 3), any size and camera, with or without a black border. Steps:
    crop to the fundus disc (:func:`~mtunet.data.preprocess.fundus_bbox`, or ``bbox``), pad to a
    square and resize to ``side`` (:func:`~mtunet.data.preprocess.fit_square`: the geometry of
    every model input, so the disc radius is ``side / 2``); then per channel
    ``gain * (img - GaussianBlur(img, sigma_fraction * side / 2)) + background``, rounded and
    clipped to uint8; outside ``mask_fraction`` of the radius, and outside the field of view
    (:func:`~mtunet.data.preprocess.fundus_mask`) shrunk by ``(1 - mask_fraction)`` of the radius,
    the pixels are set to ``background``. Defaults are Graham's (sigma = radius / 30, gain 4,
    90 % circle, 128); see the module docstring for what he did and where we differ.

    Returns the uint8 (side, side, 3) image, or (image, kept bool (side, side)) with
    ``return_mask``. UserError for an input that is not an RGB uint8 image (naming the problem) or
    a bad parameter.
    """
    image = check_rgb_image(image)
    side = _check_parameters(side, sigma_fraction, gain, mask_fraction, background)
    bbox = tuple(bbox) if bbox is not None else fundus_bbox(image)
    y0, y1, x0, x1 = bbox
    square = fit_square(image, side, bbox)
    field = fundus_mask(image, bbox=bbox)[y0:y1, x0:x1].astype(np.uint8) * 255
    field = resize_image(pad_to_square(field), side) > 127
    out, keep = _graham(square, field, sigma_fraction, gain, mask_fraction, background)
    return (out, keep) if return_mask else out


def normalise_square(square: np.ndarray, *, sigma_fraction: float = GRAHAM_SIGMA_FRACTION,
                     gain: float = GRAHAM_GAIN, mask_fraction: float = GRAHAM_MASK_FRACTION,
                     background: float = GRAHAM_BACKGROUND, return_mask: bool = False):
    """:func:`normalise_fundus` for a model input that is already cropped, padded and resized
    (an image of ``load_arrays`` / ``prepare_example``): the same filter and mask, the field of
    view found again on the square itself; the geometry is left as it is."""
    square = check_rgb_image(square, "model input")
    if square.shape[0] != square.shape[1]:
        raise UserError(f"model input: expected a square image, got shape {square.shape}")
    _check_parameters(square.shape[0], sigma_fraction, gain, mask_fraction, background)
    out, keep = _graham(square, fundus_mask(square), sigma_fraction, gain, mask_fraction, background)
    return (out, keep) if return_mask else out


def normalise_arrays(images: np.ndarray, **parameters) -> np.ndarray:
    """:func:`normalise_square` on every image of a uint8 (N, S, S, 3) batch (``load_arrays``'s
    first array); a new array, the input is left unchanged."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise UserError(f"expected a batch of images (N, S, S, 3), got shape {images.shape}")
    out = np.empty_like(images)
    for i, im in enumerate(images):
        out[i] = normalise_square(im, **parameters)
    return out
