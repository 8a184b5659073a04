"""Seeded data augmentation: random shifts, small rotations and (optionally) scalings of digit images.

Every image in a batch gets its own rotation angle (uniform in
``[-max_degrees, max_degrees]``), its own integer shift (uniform in
``[-max_shift, max_shift]`` pixels on each axis) and, when ``max_scale`` > 0, its own
scale factor (uniform in ``[1 - max_scale, 1 + max_scale]``), drawn from the Generator
the caller passes, so a seed and the Generator's state fix the result exactly. The
scales are drawn after the other two, and only when asked for, so a run without
scaling draws exactly what it drew before scaling existed.
Rotation and scaling are about the image centre and resample bilinearly; pixels that come
from outside the image take a fill value (the image's own background by
default, so this works before or after normalisation).

:func:`warp` is the vectorised kernel; :func:`warp_reference` computes the same
thing one pixel at a time and is what the tests trust.
"""
from __future__ import annotations

import math

import numpy as np


def _check_images(x: np.ndarray) -> None:
    if x.ndim != 4:
        raise ValueError(f"augment expects images of shape (N, C, H, W), got shape {x.shape}")


def _fill_values(x: np.ndarray, fill: float | None) -> np.ndarray:
    """Per-image fill of shape (N,): the given constant, or each image's minimum (its background)."""
    if fill is None:
        return x.reshape(x.shape[0], -1).min(axis=1)
    return np.full(x.shape[0], fill, dtype=x.dtype)


def source_coordinates(angles: np.ndarray, shifts: np.ndarray, height: int, width: int,
                       scales: np.ndarray | None = None):
    """Where each output pixel samples the input.

    angles : (N,) radians, positive turns the digit counter-clockwise as displayed.
    shifts : (N, 2) pixels (dy, dx), positive moves the digit down / right.
    scales : (N,) factors (> 1 enlarges the digit), or None for 1.
    Returns (ys, xs), each of shape (N, H, W), float64 source coordinates.
    """
    cy, cx = (height - 1) / 2.0, (width - 1) / 2.0
    rows = np.arange(height, dtype=np.float64)[None, :, None]
    cols = np.arange(width, dtype=np.float64)[None, None, :]
    # Inverse mapping: undo the shift, then undo the rotation, about the centre.
    y = rows - cy - shifts[:, 0, None, None]
    x = cols - cx - shifts[:, 1, None, None]
    if scales is not None:  # undo the scaling: an output pixel d from the centre samples d / scale
        x = x / scales[:, None, None]
        y = y / scales[:, None, None]
    cos, sin = np.cos(angles)[:, None, None], np.sin(angles)[:, None, None]
    # Rows grow downwards, so a counter-clockwise turn on screen is clockwise in (row, col).
    xs = cos * x - sin * y + cx
    ys = sin * x + cos * y + cy
    return ys, xs


def warp(x: np.ndarray, angles: np.ndarray, shifts: np.ndarray, fill: float | None = None,
         scales: np.ndarray | None = None) -> np.ndarray:
    """Scale, rotate and shift each image of ``x`` (N, C, H, W) float; returns a new array, same shape and dtype.

    angles : (N,) radians; shifts : (N, 2) pixels (dy, dx); scales : (N,) or None;
    see :func:`source_coordinates`.
    """
    _check_images(x)
    n, c, h, w = x.shape
    angles = np.asarray(angles, dtype=np.float64).reshape(n)
    shifts = np.asarray(shifts, dtype=np.float64).reshape(n, 2)
    if scales is not None:
        scales = np.asarray(scales, dtype=np.float64).reshape(n)
    ys, xs = source_coordinates(angles, shifts, h, w, scales)
    # Clamp into [-1, H] x [-1, W] first: a clamped coordinate lands on the frame of fill
    # values around the image (1 pixel before, 2 after, so the "+1" neighbour always exists),
    # which gives bilinear interpolation against a constant background for free.
    ys = np.clip(ys, -1, h).astype(np.float32)
    xs = np.clip(xs, -1, w).astype(np.float32)
    y0, x0 = np.floor(ys), np.floor(xs)
    wy, wx = (ys - y0)[:, None], (xs - x0)[:, None]  # (N, 1, H, W), broadcast over channels
    ph, pw = h + 3, w + 3
    pad = np.empty((n, c, ph, pw), dtype=x.dtype)
    pad[...] = _fill_values(x, fill)[:, None, None, None]
    pad[:, :, 1:h + 1, 1:w + 1] = x
    # Flat index of the top-left neighbour of every output pixel, per image and channel.
    base = ((y0.astype(np.intp) + 1) * pw + (x0.astype(np.intp) + 1))[:, None]  # (N, 1, H, W)
    base = base + (np.arange(n * c, dtype=np.intp) * (ph * pw)).reshape(n, c, 1, 1)  # (N, C, H, W)
    flat = pad.reshape(-1)
    top = flat[base] * (1 - wx) + flat[base + 1] * wx
    bottom = flat[base + pw] * (1 - wx) + flat[base + pw + 1] * wx
    return (top * (1 - wy) + bottom * wy).astype(x.dtype, copy=False)


def warp_reference(x: np.ndarray, angles: np.ndarray, shifts: np.ndarray, fill: float | None = None,
                   scales: np.ndarray | None = None) -> np.ndarray:
    """Slow, obvious version of :func:`warp`: one output pixel at a time."""
    _check_images(x)
    n, c, h, w = x.shape
    fills = _fill_values(x, fill)
    out = np.empty_like(x)
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    for i in range(n):
        cos, sin = math.cos(float(angles[i])), math.sin(float(angles[i]))
        scale = 1.0 if scales is None else float(scales[i])
        for ch in range(c):
            for r in range(h):
                for q in range(w):
                    y, xx = (r - cy - float(shifts[i][0])) / scale, (q - cx - float(shifts[i][1])) / scale
                    sx, sy = cos * xx - sin * y + cx, sin * xx + cos * y + cy
                    fy, fx = math.floor(sy), math.floor(sx)
                    ay, ax = sy - fy, sx - fx

                    def pixel(yy: int, xq: int) -> float:
                        if 0 <= yy < h and 0 <= xq < w:
                            return float(x[i, ch, yy, xq])
                        return float(fills[i])

                    value = ((1 - ay) * ((1 - ax) * pixel(fy, fx) + ax * pixel(fy, fx + 1))
                             + ay * ((1 - ax) * pixel(fy + 1, fx) + ax * pixel(fy + 1, fx + 1)))
                    out[i, ch, r, q] = value
    return out


def random_transforms(n: int, rng: np.random.Generator, max_shift: int = 2, max_degrees: float = 10.0,
                      max_scale: float = 0.0):
    """Draw N transforms: angles (N,) radians uniform in ±max_degrees, shifts (N, 2) integers in ±max_shift,
    and scales (N,) uniform in 1 ± max_scale, or None when max_scale is 0 (nothing drawn for them)."""
    if max_shift < 0 or max_degrees < 0 or not 0 <= max_scale < 1:
        raise ValueError(f"max_shift ({max_shift}) and max_degrees ({max_degrees}) must be >= 0, "
                         f"max_scale ({max_scale}) in [0, 1)")
    angles = np.deg2rad(rng.uniform(-max_degrees, max_degrees, size=n))
    shifts = rng.integers(-max_shift, max_shift + 1, size=(n, 2))
    scales = rng.uniform(1 - max_scale, 1 + max_scale, size=n) if max_scale else None
    return angles, shifts, scales


def augment_batch(x: np.ndarray, rng: np.random.Generator, max_shift: int = 2,
                  max_degrees: float = 10.0, fill: float | None = None, max_scale: float = 0.0) -> np.ndarray:
    """A randomly shifted, rotated (and scaled) copy of the batch ``x`` (N, C, H, W); ``x`` is not modified."""
    _check_images(x)
    angles, shifts, scales = random_transforms(x.shape[0], rng, max_shift, max_degrees, max_scale)
    return warp(x, angles, shifts, fill, scales)
