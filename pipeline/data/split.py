"""Stratified, seeded train/validation split and a check of class proportions."""
from __future__ import annotations

import numpy as np


def check_val_fraction(val_fraction: float) -> float:
    """Return ``val_fraction`` if 0 < f < 0.5, else raise naming the fix."""
    if not 0.0 < float(val_fraction) < 0.5:
        raise ValueError(
            f"val_fraction must be strictly between 0 and 0.5 (e.g. 0.1), got {val_fraction}; "
            "a validation split of half the data or more would starve training"
        )
    return float(val_fraction)


def stratified_split(labels: np.ndarray, val_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split positions 0..N-1 into train and validation, class by class.

    labels : int ndarray of shape (N,)
    returns: (train_positions, val_positions), int64, each sorted ascending.
    Validation gets round(N * val_fraction) images, shared among classes in
    proportion to their counts (largest remainder, so small sets are stratified
    too); each class keeps at least one image in training. Which images go is
    drawn from ``rng``: same seed, same split.
    """
    check_val_fraction(val_fraction)
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    n_val = val_allocation(counts, val_fraction)
    if labels.size and n_val.sum() == 0:
        raise ValueError(
            f"{labels.size} images with val_fraction={val_fraction} leave no validation image; "
            "use more images (train_limit) or a larger val_fraction"
        )
    val_parts = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, n_val)]
    val = np.sort(np.concatenate(val_parts)).astype(np.int64) if val_parts else np.zeros(0, np.int64)
    is_val = np.zeros(labels.size, dtype=bool)
    is_val[val] = True
    return np.flatnonzero(~is_val).astype(np.int64), val


def val_allocation(counts: np.ndarray, val_fraction: float) -> np.ndarray:
    """How many images of each class go to validation (largest-remainder rounding).

    counts : int (C,) images per class; returns int64 (C,) summing to round(sum * f),
    less any that the "keep one in training" rule forbids.
    """
    counts = np.asarray(counts, dtype=np.int64)
    exact = counts * float(val_fraction)
    base = np.floor(exact).astype(np.int64)
    missing = int(round(counts.sum() * float(val_fraction))) - int(base.sum())
    # Stable sort on the negated remainders: ties go to the lower class, deterministically.
    order = np.argsort(-(exact - base), kind="stable")
    base[order[:max(missing, 0)]] += 1
    return np.minimum(base, np.maximum(counts - 1, 0))


def class_proportions(splits: dict[str, np.ndarray], n_classes: int = 10) -> "pd.DataFrame":  # noqa: F821
    """Share of each class in each split.

    splits : {"train": labels (N,), "val": labels (M,), ...}
    returns: DataFrame indexed by digit, one column of fractions per split
             plus "max_abs_diff" (largest gap between splits for that digit).
    """
    import pandas as pd  # here, not at the top: the task layer imports this module when a task is built

    frame = pd.DataFrame(
        {
            name: np.bincount(np.asarray(y).astype(np.int64), minlength=n_classes) / max(len(y), 1)
            for name, y in splits.items()
        }
    )
    frame.index.name = "digit"
    frame["max_abs_diff"] = frame.max(axis=1) - frame.min(axis=1)
    return frame


def check_proportions(train_labels: np.ndarray, val_labels: np.ndarray, tolerance: float | None = None) -> dict:
    """Compare class shares of train and validation; raise if they drift beyond ``tolerance``.

    The default tolerance allows the rounding of a stratified split (each class's
    count rounded to a whole image, the total shifted by those roundings):
    2/len(val) + 1/len(train), i.e. 0.0004 for 54,000/6,000.
    returns: {"max_abs_diff": float, "tolerance": float, "ok": True}.
    """
    n_train, n_val = len(train_labels), len(val_labels)
    if tolerance is None:
        tolerance = 2.0 / max(n_val, 1) + 1.0 / max(n_train, 1)
    diff = float(class_proportions({"train": train_labels, "val": val_labels})["max_abs_diff"].max())
    if diff > tolerance:
        raise ValueError(
            f"class proportions of train and validation differ by {diff:.4f} > {tolerance:.4f}: "
            "the split is not stratified; this is a bug in the split, not in the data"
        )
    return {"max_abs_diff": diff, "tolerance": tolerance, "ok": True}
