"""Augmentation: the vectorised warp agrees with the per-pixel reference and with exact shifts/rotations."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.data.augment import (augment_batch, random_displacements, random_transforms, smooth_fields,
                                   smooth_fields_reference, warp, warp_reference)


def _images(n=3, c=1, h=28, w=28, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, c, h, w), dtype=np.float32)


def test_warp_matches_per_pixel_reference():
    x = _images(n=4, c=2, h=12, w=10)
    rng = np.random.default_rng(1)
    angles = rng.uniform(-0.6, 0.6, size=4)
    shifts = rng.uniform(-3, 3, size=(4, 2))  # fractional shifts exercise all four bilinear weights
    for fill in (None, -0.5):
        fast = warp(x, angles, shifts, fill)
        slow = warp_reference(x, angles, shifts, fill)
        np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-6)


def test_integer_shift_without_rotation_is_an_exact_translation():
    x = _images(n=2)
    fill = -1.0
    out = warp(x, np.zeros(2), np.array([[2, -3], [-1, 0]]), fill=fill)
    expected = np.full_like(x, fill)
    expected[0, :, 2:, :-3] = x[0, :, :-2, 3:]   # down 2, left 3
    expected[1, :, :-1, :] = x[1, :, 1:, :]      # up 1
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_quarter_turn_is_counter_clockwise_rot90():
    x = _images(n=1)
    out = warp(x, np.array([np.pi / 2]), np.zeros((1, 2)))
    np.testing.assert_allclose(out, np.rot90(x, k=1, axes=(2, 3)), atol=1e-5)


def test_default_fill_is_each_images_background_after_normalisation():
    x = np.zeros((2, 1, 28, 28), dtype=np.float32)
    x[:, :, 10:18, 10:18] = 1.0
    x = (x - 0.13) / 0.31  # background becomes -0.419..., as after standardisation
    out = warp(x, np.zeros(2), np.array([[0, 12], [0, -12]]))
    background = x[0, 0, 0, 0]
    assert out.dtype == np.float32
    # the digit moved right by 12: columns 0..21 are background, never a zero from padding
    np.testing.assert_allclose(out[0, 0, :, :22], background, atol=1e-6)
    np.testing.assert_allclose(out[0, 0, 10:18, 22:], x[0, 0, 10:18, 10:16], atol=1e-6)


def test_augment_batch_is_seeded_and_leaves_input_alone():
    x = _images(n=8)
    before = x.copy()
    a = augment_batch(x, np.random.default_rng(7))
    b = augment_batch(x, np.random.default_rng(7))
    c = augment_batch(x, np.random.default_rng(8))
    np.testing.assert_array_equal(x, before)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == x.shape and a.dtype == np.float32


def test_random_transforms_stay_in_range():
    angles, shifts, scales = random_transforms(5000, np.random.default_rng(0), max_shift=2, max_degrees=10)
    assert scales is None  # no scaling asked for: none drawn
    assert np.abs(np.rad2deg(angles)).max() <= 10.0
    assert np.rad2deg(angles).min() < -9.5 and np.rad2deg(angles).max() > 9.5
    assert set(np.unique(shifts)) == {-2, -1, 0, 1, 2}
    assert shifts.dtype.kind == "i"


def test_small_rotation_keeps_a_centred_digit_intact():
    x = np.zeros((1, 1, 28, 28), dtype=np.float32)
    x[0, 0, 8:20, 12:16] = 1.0  # a centred vertical bar, far from the border
    out = augment_batch(x, np.random.default_rng(3), max_shift=0, max_degrees=10)
    # bilinear resampling of a small rotation moves ink around but keeps its total within a few percent
    assert abs(out.sum() - x.sum()) / x.sum() < 0.03
    assert out.min() >= 0.0 and out.max() <= 1.0 + 1e-6


def test_bad_shapes_and_ranges_are_refused():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        augment_batch(np.zeros((4, 28, 28), dtype=np.float32), np.random.default_rng(0))
    with pytest.raises(ValueError, match="max_shift"):
        random_transforms(3, np.random.default_rng(0), max_shift=-1)
    with pytest.raises(ValueError, match="max_scale"):
        random_transforms(3, np.random.default_rng(0), max_scale=1.0)


def test_scaled_warp_matches_the_reference_and_enlarges_about_the_centre():
    x = _images(n=4, c=2, h=12, w=10)
    rng = np.random.default_rng(2)
    angles, shifts, scales = rng.uniform(-0.5, 0.5, 4), rng.uniform(-2, 2, (4, 2)), rng.uniform(0.8, 1.2, 4)
    np.testing.assert_allclose(warp(x, angles, shifts, None, scales), warp_reference(x, angles, shifts, None, scales),
                               rtol=1e-5, atol=1e-6)
    square = np.zeros((1, 1, 28, 28), dtype=np.float32)
    square[0, 0, 11:17, 11:17] = 1.0  # 6x6 about the centre (13.5, 13.5)
    bigger = warp(square, np.zeros(1), np.zeros((1, 2)), scales=np.array([1.5]))
    assert bigger.sum() == pytest.approx(square.sum() * 1.5 ** 2, rel=0.05)  # area grows with the square of the scale
    np.testing.assert_allclose(bigger[0, 0], bigger[0, 0, ::-1, ::-1], atol=1e-6)  # still centred
    np.testing.assert_array_equal(warp(x, angles, shifts, None, np.ones(4)), warp(x, angles, shifts))


def test_scaling_draws_after_the_rest_so_runs_without_it_are_unchanged():
    x = _images(n=16)
    plain = augment_batch(x, np.random.default_rng(5))
    angles, shifts, _ = random_transforms(16, np.random.default_rng(5), max_scale=0.1)
    np.testing.assert_array_equal(plain, warp(x, angles, shifts))  # the same angles and shifts as before
    scaled = augment_batch(x, np.random.default_rng(5), max_scale=0.1)
    _, _, scales = random_transforms(16, np.random.default_rng(5), max_scale=0.1)
    assert 0.9 <= scales.min() and scales.max() <= 1.1 and not np.array_equal(scaled, plain)


# --- elastic distortion ---------------------------------------------------------------------------

def test_smoothing_matches_the_explicit_weighted_sum():
    noise = np.random.default_rng(3).uniform(-1, 1, size=(2, 2, 7, 9))
    for sigma in (1.0, 4.0):
        np.testing.assert_allclose(smooth_fields(noise, sigma), smooth_fields_reference(noise, sigma), atol=1e-12)
    # a field far from the edges keeps its total: the kernel sums to one
    impulse = np.zeros((41, 41))
    impulse[20, 20] = 1.0
    assert smooth_fields(impulse, 3.0).sum() == pytest.approx(1.0, abs=1e-6)


def test_warp_with_displacements_matches_reference_and_a_uniform_field_is_a_shift():
    x = _images(n=3, c=2, h=10, w=12)
    rng = np.random.default_rng(4)
    angles, shifts, scales = rng.uniform(-0.4, 0.4, 3), rng.uniform(-2, 2, (3, 2)), rng.uniform(0.9, 1.1, 3)
    fields = random_displacements(3, 10, 12, rng, alpha=8.0, sigma=2.0)
    assert fields.shape == (3, 2, 10, 12) and np.abs(fields).max() > 0.5
    np.testing.assert_allclose(warp(x, angles, shifts, None, scales, fields),
                               warp_reference(x, angles, shifts, None, scales, fields), rtol=1e-5, atol=1e-5)
    # every pixel sampling one row further down is the image moved up one row
    uniform = np.zeros((3, 2, 10, 12))
    uniform[:, 0] = 1.0
    np.testing.assert_allclose(warp(x, np.zeros(3), np.zeros((3, 2)), -1.0, None, uniform),
                               warp(x, np.zeros(3), np.array([[-1, 0]] * 3), -1.0), atol=1e-6)


def test_elastic_distortion_draws_last_so_runs_without_it_are_unchanged():
    x = _images(n=16)
    plain = augment_batch(x, np.random.default_rng(5), max_scale=0.1)
    np.testing.assert_array_equal(plain, augment_batch(x, np.random.default_rng(5), max_scale=0.1,
                                                       elastic_alpha=0.0, elastic_sigma=6.0))
    distorted = augment_batch(x, np.random.default_rng(5), max_scale=0.1, elastic_alpha=34.0)
    rng = np.random.default_rng(5)
    angles, shifts, scales = random_transforms(16, rng, max_scale=0.1)
    fields = random_displacements(16, 28, 28, rng, 34.0, 4.0)
    np.testing.assert_array_equal(distorted, warp(x, angles, shifts, None, scales, fields))
    assert not np.array_equal(distorted, plain)
    # Simard's alpha 34, sigma 4 moves pixels by about a pixel, a few at most
    rms = float(np.sqrt((fields ** 2).mean()))
    assert 0.5 < rms < 3.0 and np.abs(fields).max() < 10
    assert random_displacements(4, 28, 28, np.random.default_rng(0), 0.0, 4.0) is None
    with pytest.raises(ValueError, match="elastic alpha"):
        random_displacements(4, 28, 28, np.random.default_rng(0), -1.0, 4.0)
