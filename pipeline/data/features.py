"""Per-image shape features of digit images: ink, bounding box, centroid, slant.

Every feature is computed on the raw uint8 pixels (0 = background, 255 = full
ink), so the numbers do not depend on the normalisation chosen later.
Coordinates are in pixels with x to the right (columns) and y downward (rows).

``image_features`` is the vectorised kernel; ``image_features_reference`` is the
slow, obvious per-image version the tests compare it with.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

FEATURE_COLUMNS = [
    "ink_mass",       # sum of intensities / 255: "how many full-ink pixels" of ink
    "ink_pixels",     # number of non-zero pixels
    "bbox_top",
    "bbox_left",
    "bbox_width",     # columns spanned by non-zero pixels (0 for an empty image)
    "bbox_height",    # rows spanned by non-zero pixels
    "centroid_x",     # intensity-weighted mean column
    "centroid_y",     # intensity-weighted mean row
    "slant",          # shear dx/dy from second moments; > 0 leans right (top to the right)
    "slant_deg",      # the same as an angle from vertical, in degrees
]


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"images must have shape (N, H, W), got {images.shape}")
    return images


def image_features(images: np.ndarray, chunk: int = 8192) -> pd.DataFrame:
    """Shape features of each image.

    images : uint8 ndarray of shape (N, H, W) (any real dtype works; 0 is background)
    returns: DataFrame with N rows and :data:`FEATURE_COLUMNS` (float64 / int64).
    An empty image gets ink 0, a zero-size box at (0, 0), centroid at the image
    centre and slant 0 (no ink, no lean), rather than NaN.
    Works in chunks of ``chunk`` images so the float64 copy stays small (cache-friendly).
    """
    images = _check_images(images)
    parts = [_features_chunk(images[i : i + chunk]) for i in range(0, len(images), chunk)]
    if not parts:
        parts = [_features_chunk(images)]
    return pd.DataFrame(
        {name: np.concatenate([p[name] for p in parts]) for name in FEATURE_COLUMNS},
        columns=FEATURE_COLUMNS,
    )


def _features_chunk(images: np.ndarray) -> dict:
    """Features of (n, H, W) images as a dict of (n,) arrays."""
    _, h, w = images.shape
    x = images.astype(np.float64) / 255.0                      # (N, H, W)
    nonzero = images > 0                                        # (N, H, W)
    rows_any = nonzero.any(axis=2)                              # (N, H)
    cols_any = nonzero.any(axis=1)                              # (N, W)
    has_ink = rows_any.any(axis=1)                              # (N,)

    # argmax finds the first True; on the reversed axis it finds the last one.
    top = np.argmax(rows_any, axis=1)
    bottom = h - 1 - np.argmax(rows_any[:, ::-1], axis=1)
    left = np.argmax(cols_any, axis=1)
    right = w - 1 - np.argmax(cols_any[:, ::-1], axis=1)
    height = np.where(has_ink, bottom - top + 1, 0)
    width = np.where(has_ink, right - left + 1, 0)
    top = np.where(has_ink, top, 0)
    left = np.where(has_ink, left, 0)

    row_mass = x.sum(axis=2)                                    # (N, H): ink per row
    col_mass = x.sum(axis=1)                                    # (N, W): ink per column
    mass = row_mass.sum(axis=1)                                 # (N,)
    ys = np.arange(h, dtype=np.float64)
    xs = np.arange(w, dtype=np.float64)
    safe = np.where(mass > 0, mass, 1.0)
    cy = np.where(mass > 0, row_mass @ ys / safe, (h - 1) / 2.0)
    cx = np.where(mass > 0, col_mass @ xs / safe, (w - 1) / 2.0)

    # Central second moments: mu11 = E[(x-cx)(y-cy)], mu02 = E[(y-cy)^2].
    dy = ys[None, :] - cy[:, None]                              # (N, H)
    dx = xs[None, :] - cx[:, None]                              # (N, W)
    mu02 = (row_mass * dy**2).sum(axis=1) / safe
    mu11 = ((x @ dx[:, :, None])[:, :, 0] * dy).sum(axis=1) / safe   # (N,H,W)@(N,W,1) -> (N,H)
    # x grows as y grows (downward) for a digit whose top leans left, so the
    # rightward lean is -mu11/mu02 (the shear that deskewing removes).
    slant = np.where(mu02 > 0, -mu11 / np.where(mu02 > 0, mu02, 1.0), 0.0)

    return {
        "ink_mass": mass,
        "ink_pixels": nonzero.sum(axis=(1, 2)).astype(np.int64),
        "bbox_top": top.astype(np.int64),
        "bbox_left": left.astype(np.int64),
        "bbox_width": width.astype(np.int64),
        "bbox_height": height.astype(np.int64),
        "centroid_x": cx,
        "centroid_y": cy,
        "slant": slant,
        "slant_deg": np.degrees(np.arctan(slant)),
    }


def image_features_reference(image: np.ndarray) -> dict:
    """The same features for one (H, W) image, with plain loops: the test oracle."""
    h, w = image.shape
    mass = sx = sy = 0.0
    pixels = 0
    ink_rows, ink_cols = [], []
    for r in range(h):
        for c in range(w):
            v = float(image[r, c]) / 255.0
            if image[r, c] > 0:
                pixels += 1
                ink_rows.append(r)
                ink_cols.append(c)
            mass += v
            sx += v * c
            sy += v * r
    if mass > 0:
        cx, cy = sx / mass, sy / mass
    else:
        cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    mu11 = mu02 = 0.0
    for r in range(h):
        for c in range(w):
            v = float(image[r, c]) / 255.0
            mu11 += v * (c - cx) * (r - cy)
            mu02 += v * (r - cy) ** 2
    if mass > 0:
        mu11, mu02 = mu11 / mass, mu02 / mass
    slant = -mu11 / mu02 if mu02 > 0 else 0.0
    return {
        "ink_mass": mass,
        "ink_pixels": pixels,
        "bbox_top": min(ink_rows) if ink_rows else 0,
        "bbox_left": min(ink_cols) if ink_cols else 0,
        "bbox_width": max(ink_cols) - min(ink_cols) + 1 if ink_cols else 0,
        "bbox_height": max(ink_rows) - min(ink_rows) + 1 if ink_rows else 0,
        "centroid_x": cx,
        "centroid_y": cy,
        "slant": slant,
        "slant_deg": float(np.degrees(np.arctan(slant))),
    }


def summarize_by_class(features: pd.DataFrame, labels: np.ndarray, columns: list[str] | None = None) -> pd.DataFrame:
    """Per-class mean and standard deviation of each feature.

    features : DataFrame with N rows; labels : int ndarray of shape (N,)
    returns  : DataFrame indexed by digit with columns "<feature>_mean", "<feature>_std" and "count".
    """
    columns = columns or ["ink_mass", "bbox_width", "bbox_height", "centroid_x", "centroid_y", "slant_deg"]
    frame = features[columns].copy()
    frame["digit"] = np.asarray(labels).astype(np.int64)
    grouped = frame.groupby("digit")
    out = grouped.agg(["mean", "std"])
    out.columns = [f"{col}_{stat}" for col, stat in out.columns]
    out.insert(0, "count", grouped.size())
    return out
