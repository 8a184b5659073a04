"""Seeded data augmentation: random shifts, small rotations and (optionally) scalings and elastic
distortions of digit images.

Every image in a batch gets its own rotation angle (uniform in
``[-max_degrees, max_degrees]``), its own integer shift (uniform in
``[-max_shift, max_shift]`` pixels on each axis) and, when ``max_scale`` > 0, its own
scale factor (uniform in ``[1 - max_scale, 1 + max_scale]``), drawn from the Generator
the caller passes, so a seed and the Generator's state fix the result exactly. The
scales are drawn after the other two, and only when asked for, so a run without
scaling draws exactly what it drew before scaling existed. Elastic distortion (Simard, Steinkraus
and Platt, "Best practices for convolutional neural networks applied to visual document analysis",
2003) moves every pixel's sampling point by its own displacement: a field of uniform noise in
[-1, 1], smoothed by a Gaussian of ``sigma`` pixels and multiplied by ``alpha``; it is drawn last,
and only when ``alpha`` > 0, for the same reason.
Rotation and scaling are about the image centre and resample bilinearly; pixels that come
from outside the image take a fill value (the image's own background by
default, so this works before or after normalisation).

:func:`warp` is the vectorised kernel; :func:`warp_reference` computes the same
thing one pixel at a time and is what the tests trust; likewise :func:`smooth_fields` and
:func:`smooth_fields_reference` for the Gaussian smoothing of the displacement fields.
"""
from __future__ import annotations

import math

import numpy as np

from pipeline.nn.train import ELASTIC_SIGMA


def _check_images(x: np.ndarray) -> None:
    if x.ndim != 4:
        raise ValueError(f"augment expects images of shape (N, C, H, W), got shape {x.shape}")


def _fill_values(x: np.ndarray, fill: float | None) -> np.ndarray:
    """Per-image fill of shape (N,): the given constant, or each image's minimum (its background)."""
    if fill is None:
        return x.reshape(x.shape[0], -1).min(axis=1)
    return np.full(x.shape[0], fill, dtype=x.dtype)


def source_coordinates(angles: np.ndarray, shifts: np.ndarray, height: int, width: int,
                       scales: np.ndarray | None = None, displacements: np.ndarray | None = None):
    """Where each output pixel samples the input.

    angles : (N,) radians, positive turns the digit counter-clockwise as displayed.
    shifts : (N, 2) pixels (dy, dx), positive moves the digit down / right.
    scales : (N,) factors (> 1 enlarges the digit), or None for 1.
    displacements : (N, 2, H, W) pixels (dy, dx) added to each output pixel's source point
        after the affine map (an elastic distortion), or None.
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
    if displacements is not None:
        ys = ys + displacements[:, 0]
        xs = xs + displacements[:, 1]
    return ys, xs


def warp(x: np.ndarray, angles: np.ndarray, shifts: np.ndarray, fill: float | None = None,
         scales: np.ndarray | None = None, displacements: np.ndarray | None = None) -> np.ndarray:
    """Scale, rotate, shift (and distort) each image of ``x`` (N, C, H, W) float; returns a new
    array, same shape and dtype.

    angles : (N,) radians; shifts : (N, 2) pixels (dy, dx); scales : (N,) or None;
    displacements : (N, 2, H, W) or None; see :func:`source_coordinates`.
    """
    _check_images(x)
    n, c, h, w = x.shape
    angles = np.asarray(angles, dtype=np.float64).reshape(n)
    shifts = np.asarray(shifts, dtype=np.float64).reshape(n, 2)
    if scales is not None:
        scales = np.asarray(scales, dtype=np.float64).reshape(n)
    ys, xs = source_coordinates(angles, shifts, h, w, scales, displacements)
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
                   scales: np.ndarray | None = None, displacements: np.ndarray | None = None) -> np.ndarray:
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
                    if displacements is not None:
                        sy, sx = sy + float(displacements[i, 0, r, q]), sx + float(displacements[i, 1, r, q])
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


def gaussian_matrix(size: int, sigma: float) -> np.ndarray:
    """(size, size) matrix G with ``G @ v`` = v convolved with a Gaussian of ``sigma`` pixels,
    zero outside (the kernel is normalised over its whole extent, so edges fade as with a
    zero-padded filter)."""
    d = np.arange(size, dtype=np.float64)
    g = np.exp(-0.5 * ((d[:, None] - d[None, :]) / sigma) ** 2)
    offsets = np.arange(-(size - 1), size, dtype=np.float64)
    return g / np.exp(-0.5 * (offsets / sigma) ** 2).sum()


def smooth_fields(noise: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-smooth each (H, W) plane of ``noise`` (..., H, W), zero outside: two matrix products."""
    h, w = noise.shape[-2:]
    return gaussian_matrix(h, sigma) @ noise @ gaussian_matrix(w, sigma).T


def smooth_fields_reference(noise: np.ndarray, sigma: float) -> np.ndarray:
    """Slow version of :func:`smooth_fields`: each output point as the explicit weighted sum."""
    h, w = noise.shape[-2:]
    flat = noise.reshape(-1, h, w)
    out = np.zeros_like(flat, dtype=np.float64)
    norm = sum(math.exp(-0.5 * (o / sigma) ** 2) for o in range(-(h - 1), h)) * \
        sum(math.exp(-0.5 * (o / sigma) ** 2) for o in range(-(w - 1), w))
    for k in range(flat.shape[0]):
        for r in range(h):
            for q in range(w):
                out[k, r, q] = sum(math.exp(-0.5 * (((r - a) / sigma) ** 2 + ((q - b) / sigma) ** 2)) * flat[k, a, b]
                                   for a in range(h) for b in range(w)) / norm
    return out.reshape(noise.shape)


def random_displacements(n: int, height: int, width: int, rng: np.random.Generator, alpha: float,
                         sigma: float) -> np.ndarray | None:
    """N elastic displacement fields (N, 2, H, W) pixels: uniform noise in [-1, 1] smoothed by a
    Gaussian of ``sigma`` pixels, times ``alpha``; None (nothing drawn) when alpha is 0."""
    if alpha < 0 or sigma <= 0:
        raise ValueError(f"elastic alpha ({alpha}) must be >= 0 and sigma ({sigma}) > 0")
    if not alpha:
        return None
    return alpha * smooth_fields(rng.uniform(-1.0, 1.0, size=(n, 2, height, width)), sigma)


def augment_batch(x: np.ndarray, rng: np.random.Generator, max_shift: int = 2,
                  max_degrees: float = 10.0, fill: float | None = None, max_scale: float = 0.0,
                  elastic_alpha: float = 0.0, elastic_sigma: float = ELASTIC_SIGMA) -> np.ndarray:
    """A randomly shifted, rotated (scaled, elastically distorted) copy of the batch ``x`` (N, C, H, W);
    ``x`` is not modified."""
    _check_images(x)
    angles, shifts, scales = random_transforms(x.shape[0], rng, max_shift, max_degrees, max_scale)
    fields = random_displacements(x.shape[0], x.shape[2], x.shape[3], rng, elastic_alpha, elastic_sigma)
    return warp(x, angles, shifts, fill, scales, fields)
