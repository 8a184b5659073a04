"""Normalisation (pipeline/data/normalize.py), stratified split (pipeline/data/split.py), the preparation
stage (pipeline/data/prepare.py) and the PrepareData task."""
from __future__ import annotations

import luigi
import numpy as np
import pytest

from conftest import storage_at
from pipeline import store
from pipeline.data import normalize, prepare, split
from pipeline.result import read_result


def images_in(lo: int, hi: int, n: int = 50, seed: int = 0) -> np.ndarray:
    """uint8 (n, 28, 28) spanning exactly lo..hi."""
    x = np.random.default_rng(seed).integers(lo, hi + 1, size=(n, 28, 28)).astype(np.uint8)
    x[0, 0, 0], x[-1, -1, -1] = lo, hi
    return x


# ------------------------------------------------------------------ normalisation
def test_minmax_output_is_exactly_zero_to_one_even_when_the_data_does_not_start_at_zero():
    x = images_in(10, 200)
    stats = normalize.fit_normalizer(x, "minmax")
    out = normalize.apply_normalizer(x, stats)
    assert out.dtype == np.float32 and out.shape == (50, 1, 28, 28)
    # The precedence bug x - x_min / x_max - x_min gives values from about -0.05 to 190: it fails here.
    assert out.min() == 0.0 and out.max() == 1.0
    assert ((out >= 0) & (out <= 1)).all()
    assert out[0, 0, 5, 7] == pytest.approx((int(x[0, 5, 7]) - 10) / 190)


def test_fitted_statistics_match_the_float64_reference():
    x = images_in(0, 255, n=80, seed=1)
    for method in normalize.METHODS:
        fast, ref = normalize.fit_normalizer(x, method), normalize.fit_normalizer_reference(x, method)
        assert fast["min"] == ref["min"] and fast["max"] == ref["max"] and fast["method"] == method
        assert fast["mean"] == pytest.approx(ref["mean"], rel=1e-12)
        assert fast["std"] == pytest.approx(ref["std"], rel=1e-12)


def test_standardize_uses_training_statistics_for_every_split():
    train = images_in(0, 200, n=100, seed=2)
    other = images_in(0, 255, n=20, seed=3)
    stats = normalize.fit_normalizer(train, "standardize")
    z = normalize.apply_normalizer(train, stats)
    assert float(z.mean()) == pytest.approx(0.0, abs=1e-5) and float(z.std()) == pytest.approx(1.0, abs=1e-5)
    z_other = normalize.apply_normalizer(other, stats)
    expected = ((other.astype(np.float64) / 200.0) - stats["mean"]) / stats["std"]  # train's min/max/mean/std
    assert np.allclose(z_other[:, 0], expected, atol=1e-5)
    # minmax with train statistics: a brighter test set goes above 1 rather than being rescaled on its own.
    assert normalize.apply_normalizer(other, normalize.fit_normalizer(train))[:, 0].max() == pytest.approx(255 / 200)


def test_normalizer_refuses_bad_input_with_a_reason():
    with pytest.raises(ValueError, match="unknown normalization 'zscore'; choose one of minmax, standardize"):
        normalize.fit_normalizer(images_in(0, 9), "zscore")
    with pytest.raises(ValueError, match="every training pixel equals 7"):
        normalize.fit_normalizer(np.full((3, 28, 28), 7, np.uint8))
    with pytest.raises(ValueError, match="empty training split"):
        normalize.fit_normalizer(np.zeros((0, 28, 28), np.uint8))


# ------------------------------------------------------------------ split
def skewed_labels(n: int = 5000, seed: int = 0) -> np.ndarray:
    """Labels with very unequal classes (class 0 is ~30x rarer than class 9)."""
    rng = np.random.default_rng(seed)
    return rng.choice(10, size=n, p=np.arange(1, 11) ** 1.5 / (np.arange(1, 11) ** 1.5).sum())


def test_split_is_disjoint_complete_stratified_and_seeded():
    y = skewed_labels()
    tr, va = split.stratified_split(y, 0.2, np.random.default_rng(42))
    assert len(np.intersect1d(tr, va)) == 0 and np.array_equal(np.union1d(tr, va), np.arange(len(y)))
    assert len(va) == 1000
    counts, val_counts = np.bincount(y, minlength=10), np.bincount(y[va], minlength=10)
    assert np.all(np.abs(val_counts - 0.2 * counts) <= 1)  # each class within one image of its share
    assert split.check_proportions(y[tr], y[va])["max_abs_diff"] < 0.001
    again, _ = split.stratified_split(y, 0.2, np.random.default_rng(42))
    other, _ = split.stratified_split(y, 0.2, np.random.default_rng(43))
    assert np.array_equal(tr, again) and not np.array_equal(tr, other)


def test_a_random_split_of_skewed_labels_fails_the_proportion_check():
    y = np.sort(skewed_labels())  # sorted by class: the last 10% is all 9s
    with pytest.raises(ValueError, match="not stratified"):
        split.check_proportions(y[:4500], y[4500:])


def test_small_sets_still_get_a_stratified_validation_split():
    counts = np.array([14, 4, 7, 13, 6, 13, 13, 10, 13, 7])
    alloc = split.val_allocation(counts, 0.1)
    assert alloc.sum() == 10 and np.all(np.abs(alloc - 0.1 * counts) < 1)
    assert split.val_allocation(np.array([1, 1, 50]), 0.4).tolist() == [0, 0, 20]  # a singleton stays in training
    with pytest.raises(ValueError, match="leave no validation image"):
        split.stratified_split(np.arange(4), 0.1, np.random.default_rng(0))


@pytest.mark.parametrize("bad", [0.0, 0.5, 0.7, -0.1])
def test_val_fraction_outside_zero_to_half_is_refused(bad):
    with pytest.raises(ValueError, match="val_fraction must be strictly between 0 and 0.5"):
        split.check_val_fraction(bad)


# ------------------------------------------------------------------ the stage result
def cleaned_like(n: int = 400, seed: int = 0) -> dict:
    """A cleaned-stage artifact of n training and 50 test images, with gaps in the source indices."""
    rng = np.random.default_rng(seed)
    return {"train_images": rng.integers(0, 256, size=(n, 28, 28)).astype(np.uint8),
            "train_labels": np.arange(n) % 10,
            "test_images": rng.integers(0, 256, size=(50, 28, 28)).astype(np.uint8),
            "test_labels": np.arange(50) % 10,
            "train_source_index": np.arange(n, dtype=np.int64) * 2,
            "test_source_index": np.arange(50, dtype=np.int64),
            "policy": "drop"}


def test_prepare_stage_splits_with_the_seeded_generator_and_normalizes_with_training_statistics():
    cleaned = cleaned_like()
    result = prepare.prepare_stage(cleaned, seed=9, val_fraction=0.2, normalization="standardize", train_limit=300)
    data = result.artifacts["data"]
    # Bit for bit what the split and the normaliser give with np.random.default_rng(seed).
    y = cleaned["train_labels"][:300]
    tr, va = split.stratified_split(y, 0.2, np.random.default_rng(9))
    stats = normalize.fit_normalizer(cleaned["train_images"][:300][tr], "standardize")
    assert data["normalization"] == stats
    assert np.array_equal(data["x_train"], normalize.apply_normalizer(cleaned["train_images"][:300][tr], stats))
    assert np.array_equal(data["x_val"], normalize.apply_normalizer(cleaned["train_images"][:300][va], stats))
    assert np.array_equal(data["x_test"], normalize.apply_normalizer(cleaned["test_images"], stats))
    assert np.array_equal(data["train_source_index"], 2 * tr) and np.array_equal(data["val_source_index"], 2 * va)
    assert list(data) == ["x_train", "y_train", "x_val", "y_val", "x_test", "y_test", "train_source_index",
                          "val_source_index", "test_source_index", "normalization", "class_counts", "seed"]
    assert data["y_train"].dtype == np.int64 and data["seed"] == 9
    assert data["class_counts"]["val"] == np.bincount(y[va], minlength=10).tolist()

    summary = result.summary
    assert result.title == "Preparation"
    assert (summary["n_train"], summary["n_val"], summary["n_test"]) == (240, 60, 50)
    assert summary["clean_policy"] == "drop" and summary["train_limit"] == 300 and summary["val_fraction"] == 0.2
    assert summary["value_range"]["x_val"] == [float(data["x_val"].min()), float(data["x_val"].max())]
    headline = dict(result.headline)
    assert headline["Training images"] == 240 and headline["Test images"] == 50
    assert headline["Normalization"] == "standardize"
    assert headline["Training pixel mean / std (on [0, 1])"] == f"{stats['mean']:.4f} / {stats['std']:.4f}"
    assert headline["Split seed"] == 9


# ------------------------------------------------------------------ the task, on real MNIST
def build(root, tasks, mnist_dir) -> bool:
    from tasks.acquire import FetchMNIST

    with storage_at(root):
        return luigi.build([FetchMNIST(mirrors=[str(mnist_dir)]), *tasks], local_scheduler=True, log_level="WARNING")


def test_prepare_data_on_a_real_mnist_subset(tmp_path, mnist_dir):
    from tasks.data import PrepareData

    task = PrepareData(train_limit=2000, seed=3)
    assert build(tmp_path, [task], mnist_dir)
    with storage_at(tmp_path):
        out = task.output_dir()
    data = store.read_verified_pickle(out / "data.pkl")
    assert {"x_train", "y_train", "x_val", "y_val", "x_test", "y_test", "train_source_index", "val_source_index",
            "test_source_index", "normalization", "class_counts", "seed"} <= set(data)
    for name in ("train", "val", "test"):
        x, y = data[f"x_{name}"], data[f"y_{name}"]
        assert x.dtype == np.float32 and x.shape == (len(y), 1, 28, 28) and y.dtype == np.int64
        assert data[f"{name}_source_index"].dtype == np.int64
    assert len(data["y_train"]) == 1800 and len(data["y_val"]) == 200 and len(data["y_test"]) == 10000
    # train_limit takes the first 2000 training images, before the split.
    both = np.concatenate([data["train_source_index"], data["val_source_index"]])
    assert np.array_equal(np.sort(both), np.arange(2000))
    # Minmax: in [0, 1] with minimum exactly 0 and maximum exactly 1.
    assert data["x_train"].min() == 0.0 and data["x_train"].max() == 1.0
    assert data["normalization"] == {"method": "minmax", "min": 0, "max": 255,
                                     "mean": pytest.approx(float(data["x_train"].mean()), abs=1e-6),
                                     "std": pytest.approx(float(data["x_train"].std()), abs=1e-6)}
    assert data["y_test"][:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert data["class_counts"]["test"] == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert data["seed"] == 3
    index = read_result(out)
    meta = index["summary"]
    assert meta["n_train"] == 1800 and meta["proportion_check"]["ok"] is True
    assert meta["normalization"]["method"] == "minmax" and meta["clean_policy"] == "flag"
    assert meta["value_range"]["x_train"] == [0.0, 1.0]
    headline = dict(map(tuple, index["headline"]))
    assert headline["Training images"] == 1800 and headline["Validation images"] == 200
    assert headline["Normalization"] == "minmax" and headline["Training pixel min / max (raw)"] == "0 / 255"
    assert headline["Value range of x_train"] == "0 to 1"


def test_prepare_data_standardized_and_seeded(tmp_path, mnist_dir):
    from tasks.data import PrepareData

    a = PrepareData(train_limit=1000, seed=5, normalization="standardize")
    b = PrepareData(train_limit=1000, seed=6, normalization="standardize")
    assert build(tmp_path, [a, b], mnist_dir)
    with storage_at(tmp_path):
        da, db = store.read_verified_pickle(a.output().path), store.read_verified_pickle(b.output().path)
    assert float(da["x_train"].mean()) == pytest.approx(0.0, abs=1e-4)
    assert float(da["x_train"].std()) == pytest.approx(1.0, abs=1e-4)
    assert da["normalization"]["method"] == "standardize"
    stats = da["normalization"]
    expected_test = (0.0 - stats["mean"]) / stats["std"]  # background pixel under the train statistics
    assert float(da["x_test"].min()) == pytest.approx(expected_test, rel=1e-6)
    assert not np.array_equal(da["val_source_index"], db["val_source_index"])  # the seed decides the split


def test_prepare_data_refuses_a_bad_val_fraction_before_running_anything():
    from tasks.data import PrepareData

    with pytest.raises(ValueError, match="val_fraction must be strictly between 0 and 0.5"):
        PrepareData(val_fraction=0.6)
    with pytest.raises(ValueError, match="train_limit must be >= 0"):
        PrepareData(train_limit=-5)
