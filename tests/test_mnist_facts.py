"""The facts of the MNIST dataset's README, checked on the bundled real files through this pipeline's code."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

from pipeline.data import audit, normalize
from pipeline.data.clean_stage import read_splits

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@functools.cache
def _read(directory: Path) -> dict[str, np.ndarray]:
    """The four arrays, read once per test session."""
    splits = read_splits(directory)
    return {"x_train": splits["train"][0], "y_train": splits["train"][1],
            "x_test": splits["test"][0], "y_test": splits["test"][1]}


@pytest.fixture
def mnist(mnist_dir):
    return _read(mnist_dir)


def test_label_counts(mnist):
    assert np.bincount(mnist["y_train"], minlength=10).tolist() == TRAIN_COUNTS
    assert np.bincount(mnist["y_test"], minlength=10).tolist() == TEST_COUNTS
    assert audit.label_audit(mnist["y_train"], "train")["counts"] == TRAIN_COUNTS


def test_first_labels(mnist):
    assert mnist["y_train"][:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert mnist["y_test"][:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_shapes_and_types(mnist):
    assert mnist["x_train"].shape == (60000, 28, 28) and mnist["x_test"].shape == (10000, 28, 28)
    assert mnist["x_train"].dtype == np.uint8 and mnist["y_train"].dtype == np.uint8


def test_minmax_normalized_training_data_spans_exactly_zero_to_one(mnist):
    stats = normalize.fit_normalizer(mnist["x_train"], "minmax")
    x = normalize.apply_normalizer(mnist["x_train"], stats)
    assert x.shape == (60000, 1, 28, 28) and x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0
    # The widely quoted MNIST normalisation constants (torchvision examples: 0.1307, 0.3081).
    assert round(stats["mean"], 4) == 0.1307 and round(stats["std"], 4) == 0.3081


def test_real_mnist_has_no_exact_duplicates_and_no_train_test_leakage(mnist):
    assert audit.duplicate_groups(mnist["x_train"], mnist["y_train"], "train").empty
    assert audit.duplicate_groups(mnist["x_test"], mnist["y_test"], "test").empty
    assert audit.cross_duplicates(mnist["x_train"], mnist["y_train"], mnist["x_test"], mnist["y_test"]).empty
