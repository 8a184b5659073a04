"""Turn uint8 images into float32 model input, with statistics from the training split only.

Two methods:
- ``minmax`` (default): ``(x - min) / (max - min)`` with min and max of the
  training pixels, so the training split spans exactly [0, 1]. For MNIST these
  are 0 and 255.
- ``standardize``: first the min-max scaling above, then ``(x01 - mean) / std``
  with the mean and standard deviation of the scaled training pixels (one
  scalar each, over every pixel; MNIST: 0.1307 and 0.3081).

The statistics are fitted once, on the training split, stored with the data,
and applied unchanged to validation and test, so no information from those
splits leaks into the model input.
"""
from __future__ import annotations

import numpy as np

METHODS = ("minmax", "standardize")
DEFAULT_METHOD = "minmax"


def fit_normalizer(train_images: np.ndarray, method: str = DEFAULT_METHOD) -> dict:
    """Fit the statistics on training images.

    train_images : uint8 ndarray of shape (N, H, W), N >= 1
    returns      : {"method", "min", "max", "mean", "std"}; min/max in raw pixel units,
                   mean/std of the min-max-scaled pixels (used only by ``standardize``
                   but always recorded).
    Sums are done in integers so mean and std are exact, whatever N.
    """
    if method not in METHODS:
        raise ValueError(f"unknown normalization {method!r}; choose one of {', '.join(METHODS)}")
    x = np.asarray(train_images)
    if x.size == 0:
        raise ValueError("cannot fit a normalizer on an empty training split; lower val_fraction or raise train_limit")
    if not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"fit_normalizer expects integer pixels (uint8), got {x.dtype}")
    lo, hi = int(x.min()), int(x.max())
    if hi == lo:
        raise ValueError(f"every training pixel equals {lo}: min-max scaling is undefined; the images are blank")
    n = x.size
    if x.dtype == np.uint8:
        # A histogram of the 256 values gives both sums exactly with no int64 copy of the images
        # (three such copies of 54,000 images were 1 GB: the peak memory of the whole default run).
        counts = np.bincount(x.reshape(-1), minlength=256).astype(np.int64)
        v = np.arange(256, dtype=np.int64) - lo
        s1, s2 = int(counts @ v), int(counts @ (v * v))  # sums of (x - lo) and (x - lo)^2, exact
    else:
        s1 = s2 = 0
        for chunk in np.array_split(x.reshape(-1), max(1, n // (1 << 20))):  # ~8 MB of int64 at a time
            d = chunk.astype(np.int64) - lo
            s1 += int(d.sum())
            s2 += int(np.dot(d, d))  # exact in int64 for < 1.4e14 pixels
    span = float(hi - lo)
    mean = s1 / (n * span)
    var = max(s2 / (n * span * span) - mean * mean, 0.0)
    return {"method": method, "min": lo, "max": hi, "mean": mean, "std": float(np.sqrt(var))}


def apply_normalizer(images: np.ndarray, stats: dict) -> np.ndarray:
    """Apply fitted statistics.

    images : uint8 ndarray of shape (N, H, W)
    returns: float32 ndarray of shape (N, 1, H, W) (NCHW, one channel).
    Values outside the training range (possible in validation or test) are not
    clipped: the transform is the same affine map for every split.
    """
    x = np.asarray(images)
    if x.ndim != 3:
        raise ValueError(f"images must have shape (N, H, W), got {x.shape}")
    span = np.float32(stats["max"] - stats["min"])
    out = (x.astype(np.float32) - np.float32(stats["min"])) / span        # (N, H, W) in [0, 1] for train
    if stats["method"] == "standardize":
        out -= np.float32(stats["mean"])
        out /= np.float32(stats["std"])
    elif stats["method"] != "minmax":
        raise ValueError(f"unknown normalization {stats['method']!r}; choose one of {', '.join(METHODS)}")
    return out[:, None, :, :]                                             # (N, 1, H, W)


def fit_normalizer_reference(train_images: np.ndarray, method: str = DEFAULT_METHOD) -> dict:
    """The same statistics with float64 NumPy reductions: the test oracle."""
    x = np.asarray(train_images, dtype=np.float64)
    lo, hi = x.min(), x.max()
    scaled = (x - lo) / (hi - lo)
    return {"method": method, "min": int(lo), "max": int(hi), "mean": float(scaled.mean()), "std": float(scaled.std())}
