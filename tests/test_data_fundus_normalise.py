"""Graham's cross-camera normalisation (mtunet.data.fundus_normalise) on synthetic fundus images."""
from __future__ import annotations

import numpy as np
import pytest

from mtunet.data.fundus_normalise import (GRAHAM_BACKGROUND, GRAHAM_MASK_FRACTION, normalise_arrays,
                                          normalise_fundus, normalise_square)
from mtunet.data.preprocess import fit_square
from mtunet.data.synthetic import synth_fundus
from mtunet.errors import UserError


def _fundus(width=400, seed=3, radius_frac=0.3, grade=3):
    """A synthetic photograph whose whole disc is in the frame (diameter 0.6 of the width)."""
    image, _, _ = synth_fundus(np.random.default_rng(seed), grade, width=width, radius_frac=radius_frac)
    return image


def _cast(image, gain=(1.0, 1.0, 1.0), offset=(0.0, 0.0, 0.0)):
    """Another camera's colour: each channel scaled and shifted inside the disc (the black surround
    stays black, as it does in a real photograph)."""
    out = image.astype(np.float32)
    disc = image.max(axis=2) > 20
    out[disc] = out[disc] * np.asarray(gain, np.float32) + np.asarray(offset, np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _centre_and_radius(mask):
    yy, xx = np.nonzero(mask)
    return yy.mean(), xx.mean(), np.sqrt(mask.sum() / np.pi)


@pytest.mark.parametrize("width,side", [(200, 64), (400, 224), (900, 224), (300, 512)])
def test_output_is_a_uint8_square_of_the_requested_side(width, side):
    out, keep = normalise_fundus(_fundus(width), side, return_mask=True)
    assert out.shape == (side, side, 3) and out.dtype == np.uint8
    assert keep.shape == (side, side) and keep.dtype == bool


def test_disc_is_recentred_at_128_and_the_outside_is_masked():
    image = _fundus()
    out, keep = normalise_fundus(image, 224, return_mask=True)
    inside = out[keep].reshape(-1, 3).astype(float)
    assert np.all(np.abs(inside.mean(axis=0) - GRAHAM_BACKGROUND) < 3), inside.mean(axis=0)
    # not a flat grey: vessels and lesions survive as contrast around 128
    assert inside.std(axis=0).min() > 3
    assert np.all(out[~keep] == GRAHAM_BACKGROUND)
    # the kept region is the 90 % circle of a disc that spans the square (radius side / 2)
    cy, cx, r = _centre_and_radius(keep)
    assert abs(cy - 111.5) < 2 and abs(cx - 111.5) < 2
    assert abs(r - GRAHAM_MASK_FRACTION * 112) < 0.03 * 112
    # the input was nothing like that: its disc mean is orange, far from 128 on every channel
    fitted = fit_square(image, 224)[keep].reshape(-1, 3).astype(float).mean(axis=0)
    assert np.abs(fitted - GRAHAM_BACKGROUND).max() > 40


def test_background_and_mask_fraction_are_honoured():
    out, keep = normalise_fundus(_fundus(), 224, mask_fraction=0.6, background=0, return_mask=True)
    assert np.all(out[~keep] == 0)
    assert abs(_centre_and_radius(keep)[2] - 0.6 * 112) < 0.03 * 112


def test_an_additive_colour_cast_is_removed():
    image = _fundus()
    other = _cast(image, offset=(25, -12, 15))
    a, keep_a = normalise_fundus(image, 224, return_mask=True)
    b, keep_b = normalise_fundus(other, 224, return_mask=True)
    both = keep_a & keep_b
    assert (keep_a ^ keep_b).sum() < 0.01 * both.sum()
    raw = np.abs(fit_square(image, 224).astype(float) - fit_square(other, 224))[both].mean()
    normalised = np.abs(a.astype(float) - b)[both].mean()
    assert raw > 10 and normalised < 0.5, (raw, normalised)


@pytest.mark.parametrize("gain,offset", [((0.8, 1.15, 0.9), (0, 0, 0)),
                                         ((0.85, 1.1, 0.7), (20, -8, 30))])
def test_a_camera_colour_cast_nearly_vanishes(gain, offset):
    """A multiplicative cast becomes a contrast change around 128: the mean colour is gone and the
    pixels differ far less than the photographs do."""
    image = _fundus()
    other = _cast(image, gain, offset)
    a, keep_a = normalise_fundus(image, 224, return_mask=True)
    b, keep_b = normalise_fundus(other, 224, return_mask=True)
    both = keep_a & keep_b
    fa, fb = fit_square(image, 224).astype(float), fit_square(other, 224).astype(float)
    colour_raw = np.abs(fa[both].mean(axis=0) - fb[both].mean(axis=0)).max()
    colour_normalised = np.abs(a[both].astype(float).mean(axis=0) - b[both].astype(float).mean(axis=0)).max()
    assert colour_raw > 8 and colour_normalised < 1.5, (colour_raw, colour_normalised)
    raw = np.abs(fa - fb)[both].mean()
    normalised = np.abs(a.astype(float) - b)[both].mean()
    assert normalised < 0.3 * raw, (raw, normalised)


def test_same_disc_radius_whatever_the_input_size_and_border():
    small = _fundus(width=300)
    large = _fundus(width=900)                                  # the same retina, 3x the pixels
    bordered = np.zeros((small.shape[0] + 70, small.shape[1] + 150, 3), np.uint8)
    bordered[50:50 + small.shape[0], 120:120 + small.shape[1]] = small   # off-centre black border
    outs = {name: normalise_fundus(im, 224, return_mask=True)
            for name, im in (("small", small), ("large", large), ("bordered", bordered))}
    ref_out, ref_keep = outs["small"]
    cy, cx, r = _centre_and_radius(ref_keep)
    for name, (out, keep) in outs.items():
        ky, kx, kr = _centre_and_radius(keep)
        assert abs(ky - cy) < 2 and abs(kx - cx) < 2 and abs(kr - r) < 0.02 * r, name
        assert (keep ^ ref_keep).sum() < 0.03 * ref_keep.sum(), name
    # a black border changes nothing but the crop's last pixel (fundus_bbox works on a copy shrunk
    # to <= 256 px): the same picture, where another retina correlates near 0
    def corr(a, b):
        return np.corrcoef(a[ref_keep].ravel().astype(float), b[ref_keep].ravel().astype(float))[0, 1]
    assert corr(outs["bordered"][0], ref_out) > 0.8
    assert abs(corr(normalise_fundus(_fundus(width=300, seed=9), 224), ref_out)) < 0.3


def test_a_disc_cut_by_the_frame_keeps_the_width_as_diameter_and_masks_the_band():
    image = _fundus(width=400)
    rows = np.flatnonzero(image.max(axis=(1, 2)) > 20)
    cut = image[rows[0] + 40: rows[-1] - 40]                   # camera frame cuts top and bottom
    out, keep = normalise_fundus(cut, 224, return_mask=True)
    full = normalise_fundus(image, 224, return_mask=True)[1]
    assert keep.sum() < full.sum()
    assert abs(np.flatnonzero(keep.any(axis=0)).size - np.flatnonzero(full.any(axis=0)).size) <= 3
    band = ~fit_square(cut, 224).any(axis=2)                    # the black band of the padding
    assert not (keep & band).any() and np.all(out[band] == GRAHAM_BACKGROUND)


def test_sigma_and_gain_change_the_output():
    image = _fundus()
    base, keep = normalise_fundus(image, 224, return_mask=True)
    wide = normalise_fundus(image, 224, sigma_fraction=0.1)
    assert np.abs(base.astype(float) - wide)[keep].mean() > 1
    half = normalise_fundus(image, 224, gain=2.0)
    dev_base = np.abs(base[keep].astype(float) - 128).mean()
    dev_half = np.abs(half[keep].astype(float) - 128).mean()
    assert 0.4 < dev_half / dev_base < 0.6


def test_prepared_model_inputs_normalise_like_the_photograph():
    """normalise_arrays on load_arrays-style squares = normalise_fundus on the photographs."""
    images = [_fundus(width=w, seed=s) for w, s in ((300, 1), (500, 2))]
    squares = np.stack([fit_square(im, 128) for im in images])
    before = squares.copy()
    batch = normalise_arrays(squares)
    assert batch.shape == squares.shape and batch.dtype == np.uint8
    assert np.array_equal(squares, before)                      # the input is left unchanged
    for im, sq, out in zip(images, squares, batch):
        assert np.array_equal(out, normalise_square(sq))
        direct, keep = normalise_fundus(im, 128, return_mask=True)
        assert np.abs(direct.astype(float) - out)[keep].mean() < 1.5


@pytest.mark.parametrize("bad,problem", [
    ([[1, 2, 3]], "numpy array"),
    (np.zeros((0, 0, 3), np.uint8), "empty"),
    (np.full((50, 60), 90, np.uint8), "grayscale"),
    (np.full((50, 60, 1), 90, np.uint8), "grayscale"),
    (np.repeat(np.arange(3000, dtype=np.uint8).reshape(50, 60, 1) % 200, 3, axis=2), "grayscale"),
    (np.zeros((50, 60, 4), np.uint8), "shape"),
    (np.zeros((50, 60, 3), np.float32), "uint8"),
])
def test_bad_input_is_a_user_error_naming_the_problem(bad, problem):
    with pytest.raises(UserError, match=problem):
        normalise_fundus(bad, 64)


@pytest.mark.parametrize("kwargs,problem", [
    ({"side": 0}, "side"), ({"side": 64.0}, "side"), ({"sigma_fraction": 0}, "sigma_fraction"),
    ({"mask_fraction": 1.5}, "mask_fraction"), ({"gain": -1}, "gain"), ({"background": 300}, "background"),
])
def test_bad_parameters_are_user_errors(kwargs, problem):
    with pytest.raises(UserError, match=problem):
        normalise_fundus(_fundus(width=200), **{"side": 64, **kwargs})


def test_normalise_square_wants_a_square():
    with pytest.raises(UserError, match="square"):
        normalise_square(_fundus(width=200))
