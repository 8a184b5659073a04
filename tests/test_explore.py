"""Exploration statistics (pipeline/explore/stats.py), the stage result with its figures and captions
(pipeline/explore/stage.py, figures.py) and ExploreData."""
from __future__ import annotations

import luigi
import numpy as np
import pandas as pd
import pytest

from conftest import storage_at
from pipeline import store
from pipeline.explore import stats as explore
from pipeline.explore.stage import explore_stage, rows_for_sources
from pipeline.result import read_result, write_result


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
    assert rows_for_sources(available, np.array([7, 0, 9])).tolist() == [3, 0, 4]
    with pytest.raises(ValueError, match=r"source indices \[5\] are not in the cleaned data"):
        rows_for_sources(available, np.array([2, 5]))


def prepared_and_cleaned(n: int = 200, seed: int = 0) -> tuple[dict, dict, dict]:
    """Stage inputs from :func:`digits`: a cleaned artifact (train: the first n - 20 images, with gaps in
    the source indices; test: the last 20), a prepared artifact splitting its train part, and a clean summary."""
    images, labels = digits(n, seed)
    n_train = n - 20
    source = np.arange(n_train, dtype=np.int64) * 3  # as after 'drop': source rows with gaps
    cleaned = {"train_images": images[:n_train], "train_labels": labels[:n_train].astype(np.int64),
               "test_images": images[n_train:], "test_labels": labels[n_train:].astype(np.int64),
               "train_source_index": source, "test_source_index": np.arange(20, dtype=np.int64), "policy": "drop"}
    train, val = np.arange(n_train - 30), np.arange(n_train - 30, n_train)
    prepared = {"y_train": cleaned["train_labels"][train], "y_val": cleaned["train_labels"][val],
                "y_test": cleaned["test_labels"], "train_source_index": source[train], "val_source_index": source[val],
                "test_source_index": np.arange(20, dtype=np.int64),
                "normalization": {"method": "minmax", "min": 0, "max": 255, "mean": 0.2, "std": 0.3}, "seed": 5}
    clean_summary = {"policy": "drop", "duplicates": {"train": {"extra_copies": 2}, "test": {"extra_copies": 0}},
                     "leakage": {"pairs": 1}, "flags": {"flagged_train_images": 4, "flagged_test_images": 1}}
    return prepared, cleaned, clean_summary


def test_explore_stage_result_writes_every_table_artifact_and_figure(tmp_path):
    prepared, cleaned, clean_summary = prepared_and_cleaned()
    result = explore_stage(prepared, cleaned, clean_summary, np.random.default_rng(0), pca_sample=100)
    summary = result.summary
    assert result.title == "Exploration"
    assert summary["class_counts"]["val"] == [3] * 10 and summary["n_images"] == {"train": 150, "val": 30, "test": 20}
    assert summary["pca_sample"] == 100 and summary["seed"] == 5
    assert summary["normalization"]["method"] == "minmax"
    assert summary["cleaning"] == {"policy": "drop", "duplicate_copies": {"train": 2, "test": 0}, "leakage_pairs": 1,
                                   "flagged_train_images": 4, "flagged_test_images": 1}
    # The images explored are the cleaned rows the prepared source indices point at.
    features = result.artifacts["features"]
    val_rows = np.arange(150, 180)
    expected_ink = cleaned["train_images"][val_rows].reshape(30, -1).sum(axis=1) / 255
    assert features[features["split"] == "val"]["ink_mass"].to_numpy() == pytest.approx(expected_ink)

    headline = dict(result.headline)
    share_zero = summary["pixels_train"]["share_zero"]
    assert headline["Training images"] == 150 and headline["Validation images"] == 30 and headline["Test images"] == 20
    assert headline["Background (0) share of training pixels"] == f"{share_zero:.1%}"
    assert headline["Duplicate copies, train / test"] == "2 / 0" and headline["Train/test leakage pairs"] == 1
    assert headline["Cleaning policy"] == "drop" and headline["Normalization"] == "minmax" and headline["Seed"] == 5
    ratio = summary["pca_explained_variance_ratio"]
    assert headline["Variance in the first two principal components"] == f"{ratio[0] + ratio[1]:.1%}"

    # Captions carry the numbers computed from the data, never typed-in ones.
    captions = {f.name: f.caption for f in result.figures}
    assert list(captions) == ["class_distribution", "class_images", "pixel_histogram", "features_by_class",
                              "pca_2d", "mean_similarity"]
    assert f"{share_zero:.1%} are background" in captions["pixel_histogram"]
    assert "81%" not in captions["pixel_histogram"] and share_zero < 0.1  # digits(): noise, few zero pixels
    assert f"{summary['pixels_train']['share_full']:.1%} are full ink" in captions["pixel_histogram"]
    assert "training (150 images), validation (30 images) and test (20 images)" in captions["class_distribution"]
    assert "differ by at most 0.00 percentage points" in captions["class_distribution"]  # 3 of each digit in 30
    assert "average of the 150 training images" in captions["class_images"]
    assert f"{summary['share_bbox_height_20_train']:.1%} of the heights are 20" in captions["features_by_class"]
    assert f"sample of 100 training images" in captions["pca_2d"]
    assert f"({ratio[0] + ratio[1]:.1%} together)" in captions["pca_2d"]
    top = summary["most_similar_mean_images"][0]
    assert f"are {top['a']} & {top['b']} ({top['cosine']:.3f})" in captions["mean_similarity"]
    ink = result.tables[1].frame["ink_mass_mean"]
    assert f"Digit {ink.idxmax()} carries the most ink ({ink.max():.0f} " in captions["features_by_class"]

    write_result(result, tmp_path)
    index = read_result(tmp_path)
    assert index["summary"]["pca_sample"] == 100 and [list(h) for h in result.headline] == index["headline"]
    assert [t["file"] for t in index["tables"]] == ["class_distribution.pkl", "feature_summary.pkl",
                                                     "mean_similarity.pkl"]
    for table in index["tables"]:
        frame = pd.read_pickle(tmp_path / table["file"])
        assert isinstance(frame, pd.DataFrame) and len(frame) <= 10 and table["title"]
    assert sorted(index["artifacts"]) == ["class_images.pkl", "features.pkl", "pca.pkl", "pixel_histogram.pkl"]
    assert len(store.read_verified_pickle(tmp_path / "pixel_histogram.pkl")) == 256
    assert len(store.read_verified_pickle(tmp_path / "features.pkl")) == 200
    assert store.read_verified_pickle(tmp_path / "class_images.pkl")["mean"].shape == (10, 28, 28)
    assert store.read_verified_pickle(tmp_path / "pca.pkl")["projection"].shape == (100, 2)
    assert len(index["figures"]) == 6
    for figure in index["figures"]:
        assert figure["title"] and figure["caption"] == captions[figure["file"][: -len(".png")]]
        data = (tmp_path / figure["file"]).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000


def test_explore_stage_refuses_inputs_from_different_runs():
    prepared, cleaned, clean_summary = prepared_and_cleaned()
    prepared["val_source_index"] = prepared["val_source_index"] + 1  # rows the cleaned data does not have
    with pytest.raises(ValueError, match="not in the cleaned data"):
        explore_stage(prepared, cleaned, clean_summary, np.random.default_rng(0), pca_sample=100)
    prepared, cleaned, clean_summary = prepared_and_cleaned()
    prepared["y_val"] = (prepared["y_val"] + 1) % 10
    with pytest.raises(ValueError, match="val labels of the prepared and cleaned data disagree"):
        explore_stage(prepared, cleaned, clean_summary, np.random.default_rng(0), pca_sample=100)


def test_explore_data_on_a_real_mnist_subset(tmp_path, mnist_dir):
    from tasks.explore import ExploreData
    from tasks.acquire import FetchMNIST

    task = ExploreData(train_limit=3000, seed=11, pca_sample=800)
    with storage_at(tmp_path):
        assert luigi.build([FetchMNIST(mirrors=[str(mnist_dir)]), task], local_scheduler=True, log_level="WARNING")
        out = task.output_dir()
    index = read_result(out)
    summary = index["summary"]
    n = summary["n_images"]
    assert n["train"] + n["val"] == 3000 and n["test"] == 10000
    assert summary["class_counts"]["test"] == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert sum(summary["class_counts"]["val"]) == n["val"] == 300
    assert summary["cleaning"]["leakage_pairs"] == 0 and summary["cleaning"]["duplicate_copies"]["train"] == 0
    assert summary["pca_sample"] == 800 and 0 < sum(summary["pca_explained_variance_ratio"][:2]) < 1
    assert 80 < summary["mean_ink_mass"]["train"] < 130  # MNIST digits: ~100 full-ink pixels of 784
    assert summary["normalization"]["method"] == "minmax" and summary["seed"] == 11
    headline = dict(map(tuple, index["headline"]))
    share_zero = summary["pixels_train"]["share_zero"]
    assert 0.75 < share_zero < 0.85 and headline["Background (0) share of training pixels"] == f"{share_zero:.1%}"
    assert headline["Training images"] == n["train"] and headline["Train/test leakage pairs"] == 0
    assert len(index["figures"]) == 6
    for figure in index["figures"]:
        assert figure["title"] and figure["caption"]
        assert (out / figure["file"]).read_bytes().startswith(b"\x89PNG")
    captions = {f["file"]: f["caption"] for f in index["figures"]}
    assert f"{share_zero:.1%} are background (0)" in captions["pixel_histogram.png"]
    for table in index["tables"]:
        frame = pd.read_pickle(out / table["file"])
        assert isinstance(frame, pd.DataFrame) and len(frame) <= 10  # small: per class, for HTML
    features = pd.read_pickle(out / "features.pkl")
    assert len(features) == 13000 and set(features["split"]) == {"train", "val", "test"}
    # Features were computed on the raw uint8 images: the first test image's ink equals its pixel sum / 255.
    from pipeline.acquire.idx import read_images

    first_test = read_images(mnist_dir / "t10k-images-idx3-ubyte.gz")[0]
    row = features[(features["split"] == "test") & (features["position"] == 0)].iloc[0]
    assert row["ink_mass"] == pytest.approx(first_test.sum() / 255) and row["label"] == 7
    images = store.read_verified_pickle(out / "class_images.pkl")
    assert images["mean"].shape == (10, 28, 28) and images["std"].shape == (10, 28, 28)
