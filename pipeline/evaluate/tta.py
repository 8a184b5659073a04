"""Test-time augmentation (TTA): a model's probabilities averaged over a few shifted copies of
each image.

A digit one pixel off-centre is still the same digit, and training with random shifts taught the
network so; averaging its softmax over the identity and small shifts removes some of the errors
that depend on exactly where the digit sits. Level ``tta`` = k uses 1 + 4k views: the image
itself, then (dy, dx) = (0, ±d) and (±d, 0) for d = 1 … k (:func:`views`). The cost is that many
forward passes. Whether it pays is decided on the validation split (:func:`tta_record`).

:func:`shift_images` is the fast kernel (slicing); :func:`pipeline.data.augment.warp_reference`
with a zero angle is its slow reference (the same shift, with the same per-image background fill,
that training augmentation applies).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.evaluate.ensemble import accuracy, average_probabilities

MAX_LEVEL = 3  # 13 views; beyond ±3 px a 28×28 digit starts to leave its frame


def views(tta: int) -> list[tuple[int, int]]:
    """The (dy, dx) pixel shifts of level ``tta``: [(0, 0)] for 0 (off), the identity first always."""
    if not 0 <= tta <= MAX_LEVEL:
        raise ValueError(f"tta must be 0 (off) to {MAX_LEVEL} (shifts of up to that many pixels), got {tta}")
    out = [(0, 0)]
    for d in range(1, tta + 1):
        out += [(0, d), (0, -d), (d, 0), (-d, 0)]
    return out


def shift_images(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``x`` (N, C, H, W) moved ``dy`` pixels down and ``dx`` right (negative: up, left); a new array.

    Pixels moved in from outside take each image's minimum (its background), as in
    :func:`pipeline.data.augment.warp`, so this works before or after normalisation.
    """
    if x.ndim != 4:
        raise ValueError(f"shift_images expects images of shape (N, C, H, W), got shape {x.shape}")
    n, _, h, w = x.shape
    if abs(dy) >= h or abs(dx) >= w:
        raise ValueError(f"a shift of ({dy}, {dx}) moves a {h}×{w} image out of its frame")
    out = np.empty_like(x)
    out[...] = x.reshape(n, -1).min(axis=1)[:, None, None, None] if n else 0
    # rows [max(dy, 0), h + min(dy, 0)) of the output come from rows [max(-dy, 0), h - max(dy, 0)) of x
    out[:, :, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        x[:, :, max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


def view_probabilities(model: Any, x: np.ndarray, shifts: list[tuple[int, int]],
                       batch_size: int = 1000) -> np.ndarray:
    """``model.predict_proba`` of every view of ``x`` (N, C, H, W): (V, N, K) float32, views in order
    (the identity, unshifted, as it is: view 0 of ``views(k)`` is plain prediction bit for bit)."""
    out = []
    for dy, dx in shifts:
        xs = x if (dy, dx) == (0, 0) else shift_images(x, dy, dx)
        out.append(model.predict_proba(xs, batch_size))
    return np.stack(out)


def tta_probabilities(model: Any, x: np.ndarray, tta: int, batch_size: int = 1000) -> np.ndarray:
    """The TTA classifier's probabilities (N, K) float32: the mean over the views of level ``tta``
    (level 0: ``model.predict_proba(x)`` exactly)."""
    return average_probabilities(list(view_probabilities(model, x, views(tta), batch_size)))


def predict(model: Any, x: np.ndarray, tta: int, batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities with TTA, probabilities without), each (N, K) float32, from one pass over the
    views; at level 0 both are ``model.predict_proba(x)`` (one array, computed once)."""
    if tta == 0:
        probs = model.predict_proba(x, batch_size)
        return probs, probs
    per_view = view_probabilities(model, x, views(tta), batch_size)
    return average_probabilities(list(per_view)), per_view[0]


def tta_record(tta: int, val: tuple[np.ndarray, np.ndarray], y_val: np.ndarray,
               test_without: np.ndarray, y_test: np.ndarray) -> dict[str, Any]:
    """The JSON-able facts of a TTA evaluation: the level, its views, the validation accuracy with
    and without TTA (``val`` = (with, without) probabilities (N_val, K), as :func:`predict` gives:
    choose TTA on these), and the test accuracy without it (for the record)."""
    return {"level": int(tta), "views": [list(v) for v in views(tta)],
            "val_accuracy": accuracy(val[0], y_val), "val_accuracy_without": accuracy(val[1], y_val),
            "test_accuracy_without": accuracy(test_without, y_test)}
