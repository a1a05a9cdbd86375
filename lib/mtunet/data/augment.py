"""On-the-fly augmentation of the paper: rotations, width/height shifts, shear, zoom, flips, channel shifts.

The paper lists the transforms by the names of Keras's ``ImageDataGenerator``; the defaults below use
that class's conventions (angles in degrees, shifts and zoom as fractions, one channel-shift intensity
added to all channels). Image and label go through ONE affine matrix (``cv2.warpAffine``): the image with
bilinear interpolation, the label with nearest neighbour, both with a constant 0 (black / background)
border, so lesions stay exactly aligned with the pixels they label.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class Augmentation:
    """Random affine + flip + channel-shift augmentation, sampled from a numpy Generator.

    rotation_range:      degrees; angle ~ U(-r, r).
    width_shift/height_shift: fraction of width/height; shift ~ U(-f, f) * side.
    shear_range:         degrees (Keras ImageDataGenerator convention); angle ~ U(-s, s). The default
                         0.1 deg is tiny: it is the value the Keras-style list suggests, kept as is.
    zoom_range:          scale factors zx, zy ~ U(1 - z, 1 + z) independently (as Keras).
    horizontal_flip/vertical_flip: each applied with probability 1/2.
    channel_shift_range: one intensity ~ U(-c, c) added to all channels of the image (not the label),
                         clipped to 0..255 (as Keras's ``apply_channel_shift``).
    """

    rotation_range: float = 90.0
    width_shift: float = 0.1
    height_shift: float = 0.1
    shear_range: float = 0.1
    zoom_range: float = 0.1
    horizontal_flip: bool = True
    vertical_flip: bool = True
    channel_shift_range: float = 20.0

    def sample_matrix(self, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
        """A 2x3 forward affine matrix (source -> output pixel coordinates) about the image centre."""
        theta = math.radians(rng.uniform(-self.rotation_range, self.rotation_range)) if self.rotation_range else 0.0
        shear = math.radians(rng.uniform(-self.shear_range, self.shear_range)) if self.shear_range else 0.0
        if self.zoom_range:
            zx, zy = rng.uniform(1 - self.zoom_range, 1 + self.zoom_range, size=2)
        else:
            zx = zy = 1.0
        tx = rng.uniform(-self.width_shift, self.width_shift) * width if self.width_shift else 0.0
        ty = rng.uniform(-self.height_shift, self.height_shift) * height if self.height_shift else 0.0
        fx = -1.0 if self.horizontal_flip and rng.random() < 0.5 else 1.0
        fy = -1.0 if self.vertical_flip and rng.random() < 0.5 else 1.0
        cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
        to_centre = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]], dtype=np.float64)
        flip = np.diag([fx, fy, 1.0])
        zoom = np.diag([zx, zy, 1.0])
        shear_m = np.array([[1, -math.sin(shear), 0], [0, math.cos(shear), 0], [0, 0, 1]])
        rot = np.array([[math.cos(theta), -math.sin(theta), 0], [math.sin(theta), math.cos(theta), 0], [0, 0, 1]])
        back = np.array([[1, 0, cx + tx], [0, 1, cy + ty], [0, 0, 1]], dtype=np.float64)
        return (back @ rot @ shear_m @ zoom @ flip @ to_centre)[:2]

    def apply(self, image: np.ndarray, label: np.ndarray | None, rng: np.random.Generator):
        """(image, label) transformed by one shared affine matrix; same rng state -> same output.

        ``image``: HxWx3 (uint8 or float); ``label``: HxW class indices (or None). Shapes and dtypes kept.
        """
        h, w = image.shape[:2]
        m = self.sample_matrix(h, w, rng)
        out = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        if out.ndim == 2 and image.ndim == 3:
            out = out[..., None]
        if self.channel_shift_range:
            shift = rng.uniform(-self.channel_shift_range, self.channel_shift_range)
            shifted = np.clip(out.astype(np.float32) + shift, 0, 255)
            out = (np.rint(shifted) if np.issubdtype(image.dtype, np.integer) else shifted).astype(image.dtype)
        if label is None:
            return out, None
        out_label = _warp_nearest(label, m, w, h)
        return out, out_label


def _warp_nearest(label: np.ndarray, m: np.ndarray, w: int, h: int) -> np.ndarray:
    """Nearest-neighbour warp of a label map (HxW, or HxWxC in chunks of <= 4 channels)."""
    dtype = label.dtype
    src = label.astype(np.uint8) if dtype == bool else label
    if src.ndim == 3 and src.shape[2] > 4:
        parts = [_warp_nearest(src[..., i:i + 4], m, w, h) for i in range(0, src.shape[2], 4)]
        return np.concatenate([p if p.ndim == 3 else p[..., None] for p in parts], axis=2).astype(dtype)
    out = cv2.warpAffine(src, m, (w, h), flags=cv2.INTER_NEAREST,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if out.ndim == 2 and src.ndim == 3:
        out = out[..., None]
    return out.astype(dtype)
