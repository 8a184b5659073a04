"""Exploration statistics (pipeline/explore.py), figures (pipeline/explore_plots.py) and ExploreData."""
from __future__ import annotations

import json

import luigi
import numpy as np
import pandas as pd
import pytest

from conftest import storage_at
from pipeline import explore, explore_plots, store


def digits(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (n, 28, 28) where class c has a bright square at a class-specific place, plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    images = rng.integers(0, 40, size=(n, 28, 28)).astype(np.uint8)
    for i, c in enumerate(labels):
        images[i, 2 * c:2 * c + 8, 20 - 2 * c:28 - 2 * c] = rng.integers(150, 256)
    return images, labels


def test_class_mean_and_std_images_match_the_mask_reference():
    images, labels = digits()
    labels = labels.copy()
    labels[labels == 3] = 4  # class 3 is now empty: zeros, not NaN
    mean, std = explore.class_mean_std_images(images, labels)
    ref_mean, ref_std = explore.class_mean_std_images_reference(images, labels)
    assert mean.shape == std.shape == (10, 28, 28)
    assert np.allclose(mean, ref_mean, atol=1e-12) and np.allclose(std, ref_std, atol=1e-12)
    assert not mean[3].any() and 0 <= mean.min() and mean.max() <= 1


def test_pixel_histogram_counts_every_pixel_once():
    images, _ = digits(50)
    hist = explore.pixel_histogram(images)
    assert len(hist) == 256 and hist["count"].sum() == images.size
    assert np.array_equal(hist["count"].to_numpy(), np.bincount(images.ravel(), minlength=256))
    stats = explore.pixel_stats(hist)
    assert stats["mean"] == pytest.approx(images.mean() / 255)
    assert stats["std"] == pytest.approx(images.std() / 255)
    assert stats["share_zero"] == pytest.approx((images == 0).mean())
    with pytest.raises(ValueError, match="expects uint8"):
        explore.pixel_histogram(images.astype(np.float32))


def test_pca_axes_and_variance_match_the_svd_reference():
    images, labels = digits(400, seed=1)
    pca = explore.pca_2d(images, labels, n_sample=250, rng=np.random.default_rng(0))
    x = images[pca["indices"]].reshape(250, -1) / 255.0
    axes, ratio = explore.pca_reference(x, k=2)
    assert np.abs(np.sum(pca["components"] * axes, axis=1)) == pytest.approx([1.0, 1.0], abs=1e-8)
    assert pca["explained_variance_ratio"][:2] == pytest.approx(ratio, rel=1e-8)
    assert pca["projection"].shape == (250, 2) and np.array_equal(pca["labels"], labels[pca["indices"]])
    assert pca["projection"].mean(axis=0) == pytest.approx([0.0, 0.0], abs=1e-9)  # centred
    again = explore.pca_2d(images, labels, n_sample=250, rng=np.random.default_rng(0))
    assert np.array_equal(again["indices"], pca["indices"]) and np.allclose(again["projection"], pca["projection"])
    other = explore.pca_2d(images, labels, n_sample=250, rng=np.random.default_rng(1))
    assert not np.array_equal(other["indices"], pca["indices"])


def test_similarity_of_mean_images_is_the_cosine():
    images, labels = digits()
    mean, _ = explore.class_mean_std_images(images, labels)
    sim = explore.mean_similarity(mean)
    a, b = mean[2].ravel(), mean[5].ravel()
    assert sim.loc[2, 5] == pytest.approx(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert np.allclose(np.diag(sim), 1.0) and np.allclose(sim, sim.T)
    pairs = explore.most_similar_pairs(sim, k=2)
    off = sim.to_numpy()[~np.eye(10, dtype=bool)]
    assert pairs[0]["cosine"] == pytest.approx(off.max()) and pairs[0]["a"] < pairs[0]["b"]


def test_class_distribution_and_source_mapping():
    dist = explore.class_distribution({"train": np.array([0, 0, 1, 9]), "test": np.array([1])})
    assert dist["train_count"].tolist() == [2, 1, 0, 0, 0, 0, 0, 0, 0, 1]
    assert dist.loc[0, "train_share"] == 0.5 and dist.loc[1, "test_share"] == 1.0
    available = np.array([0, 2, 3, 7, 9])
    assert explore.rows_for_sources(available, np.array([7, 0, 9])).tolist() == [3, 0, 4]
    with pytest.raises(ValueError, match=r"source indices \[5\] are not in the cleaned data"):
        explore.rows_for_sources(available, np.array([2, 5]))


def test_figures_are_written_as_png(tmp_path):
    images, labels = digits(200)
    result = explore.explore_splits({"train": images[:150], "val": images[150:180], "test": images[180:]},
                                    {"train": labels[:150], "val": labels[150:180], "test": labels[180:]},
                                    np.random.default_rng(0), pca_sample=100)
    explore_plots.plot_class_distribution(result["distribution"], tmp_path / "a.png")
    explore_plots.plot_class_images(result["mean"], result["std"], tmp_path / "b.png")
    explore_plots.plot_pixel_histogram(result["histogram"], tmp_path / "c.png")
    train = result["features"][result["features"]["split"] == "train"]
    explore_plots.plot_features_by_class(train, labels[:150], tmp_path / "d.png")
    explore_plots.plot_pca(result["pca"], tmp_path / "e.png")
    explore_plots.plot_similarity(result["similarity"], tmp_path / "f.png")
    explore_plots.plot_examples(images[:0], [], "none", tmp_path / "g.png")
    for name in "abcdefg":
        data = (tmp_path / f"{name}.png").read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000
    assert result["stats"]["class_counts"]["val"] == [3] * 10
    assert result["stats"]["pca_sample"] == 100


def test_explore_data_on_a_real_mnist_subset(tmp_path, mnist_dir):
    from tasks.explore import ExploreData
    from tasks.acquire import FetchMNIST

    task = ExploreData(train_limit=3000, seed=11, pca_sample=800)
    with storage_at(tmp_path):
        assert luigi.build([FetchMNIST(mirrors=[str(mnist_dir)]), task], local_scheduler=True, log_level="WARNING")
        out = task.output_dir()
    summary = json.loads((out / "explore.json").read_text())
    assert summary["n_train"] + summary["n_val"] == 3000 and summary["n_test"] == 10000
    assert summary["class_counts"]["test"] == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert sum(summary["class_counts"]["val"]) == summary["n_val"] == 300
    assert summary["leakage_pairs"] == 0 and summary["duplicate_copies_train"] == 0
    assert summary["pca_sample"] == 800 and 0 < summary["pca_variance_2d"] < 1
    assert 80 < summary["mean_ink_mass_train"] < 130  # MNIST digits: ~100 full-ink pixels of 784
    assert summary["normalization"] == "minmax" and summary["seed"] == 11
    assert len(summary["figures"]) == 6
    for figure in summary["figures"]:
        assert figure["title"] and figure["caption"]
        assert (out / figure["file"]).read_bytes().startswith(b"\x89PNG")
    for table in summary["tables"]:
        frame = pd.read_pickle(out / table["file"])
        assert isinstance(frame, pd.DataFrame) and len(frame) <= 10  # small: per class, for HTML
    features = pd.read_pickle(out / "features.pkl")
    assert len(features) == 13000 and set(features["split"]) == {"train", "val", "test"}
    # Features were computed on the raw uint8 images: the first test image's ink equals its pixel sum / 255.
    from pipeline.acquire.idx import read_images

    first_test = read_images(mnist_dir / "t10k-images-idx3-ubyte.gz")[0]
    row = features[(features["split"] == "test") & (features["position"] == 0)].iloc[0]
    assert row["ink_mass"] == pytest.approx(first_test.sum() / 255) and row["label"] == 7
    images = store.read_pickle(out / "class_images.pkl")
    assert images["mean"].shape == (10, 28, 28) and images["std"].shape == (10, 28, 28)
