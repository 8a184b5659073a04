"""Cleaning: the audit (pipeline/data/audit.py), policies (pipeline/data/clean.py), per-image features
(pipeline/data/features.py), the stage result (pipeline/data/clean_stage.py) and CleanData."""
from __future__ import annotations

import json

import luigi
import numpy as np
import pandas as pd
import pytest

from conftest import storage_at
from pipeline import store
from pipeline.data import audit, clean, clean_stage, features
from pipeline.result import read_result, write_result


def random_digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n distinct 'digits': a random blob of ink in a 28x28 frame, labels cycling 0..9."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        top, left = rng.integers(3, 8, size=2)
        h, w = rng.integers(14, 20, size=2)
        images[i, top:top + h, left:left + w] = rng.integers(0, 256, size=(h, w)) * (rng.random((h, w)) < 0.5)
    return images, np.arange(n, dtype=np.uint8) % 10


# ------------------------------------------------------------------ features
def test_features_match_the_per_pixel_reference():
    images, _ = random_digits(40, seed=1)
    images[5] = 0  # an empty image must not give NaN
    fast = features.image_features(images, chunk=16)  # several chunks
    for i in range(len(images)):
        ref = features.image_features_reference(images[i])
        for col in features.FEATURE_COLUMNS:
            assert fast[col].iat[i] == pytest.approx(ref[col], abs=1e-9), (i, col)
    assert not fast.isna().any().any()
    assert fast.loc[5, "ink_mass"] == 0 and fast.loc[5, "bbox_width"] == 0


def test_features_of_a_hand_drawn_stroke():
    img = np.zeros((28, 28), np.uint8)
    for r in range(4, 24):  # a diagonal whose top is to the right: x = 26 - r
        img[r, 26 - r] = 255
    f = features.image_features(img[None]).iloc[0]
    assert f["ink_mass"] == pytest.approx(20.0)
    assert (f["bbox_top"], f["bbox_left"], f["bbox_width"], f["bbox_height"]) == (4, 3, 20, 20)
    assert (f["centroid_x"], f["centroid_y"]) == pytest.approx((12.5, 13.5))
    assert f["slant"] == pytest.approx(1.0) and f["slant_deg"] == pytest.approx(45.0)
    upright = np.zeros((28, 28), np.uint8)
    upright[4:24, 14] = 200
    assert features.image_features(upright[None])["slant"].iat[0] == pytest.approx(0.0, abs=1e-12)


def test_summarize_by_class_agrees_with_a_plain_groupby():
    images, labels = random_digits(100, seed=2)
    feats = features.image_features(images)
    table = features.summarize_by_class(feats, labels)
    assert table["count"].tolist() == [10] * 10
    for digit in (0, 7):
        members = feats[labels == digit]
        assert table.loc[digit, "ink_mass_mean"] == pytest.approx(members["ink_mass"].mean())
        assert table.loc[digit, "slant_deg_std"] == pytest.approx(members["slant_deg"].std())


# ------------------------------------------------------------------ duplicates and leakage
def test_duplicate_groups_match_the_dict_reference_and_see_label_conflicts():
    images, labels = random_digits(200, seed=3)
    images[50] = images[10]
    images[120] = images[10]
    images[77] = images[3]
    groups = audit.duplicate_groups(images, labels, "train")
    assert sorted(groups["indices"]) == audit.duplicate_groups_reference(images) == [[3, 77], [10, 50, 120]]
    by_first = groups.set_index("first_index")
    assert by_first.loc[10, "count"] == 3
    assert by_first.loc[10, "labels"] == [0]  # 10, 50 and 120 all have label 0
    assert bool(by_first.loc[3, "label_conflict"])  # label 3 vs label 7


def test_pixel_hashes_are_equal_exactly_for_equal_images():
    images, _ = random_digits(50, seed=4)
    images[1] = images[0]
    images[2] = images[0]
    images[2, 14, 14] ^= 1  # one pixel differs by one grey level
    h = audit.pixel_hashes(images)
    assert h[0] == h[1] and h[0] != h[2]
    assert len(set(h.tolist())) == 49


def test_cross_duplicates_report_every_leaking_pair():
    train, ytr = random_digits(100, seed=5)
    test, yte = random_digits(30, seed=6)
    train[40] = test[7]
    train[41] = test[7]
    train[90] = test[2]
    leak = audit.cross_duplicates(train, ytr, test, yte)
    assert list(zip(leak["train_index"], leak["test_index"])) == [(40, 7), (41, 7), (90, 2)]
    assert leak["same_label"].tolist() == [ytr[40] == yte[7], ytr[41] == yte[7], ytr[90] == yte[2]]


# ------------------------------------------------------------------ outliers
def test_class_zscores_are_within_class():
    values = np.array([1.0, 2.0, 3.0, 100.0, 200.0, 300.0, 5.0])
    labels = np.array([0, 0, 0, 1, 1, 1, 2])
    z = audit.class_zscores(values, labels)
    sd0 = np.std([1.0, 2.0, 3.0])
    assert z[:3] == pytest.approx([-1 / sd0, 0, 1 / sd0])
    assert z[3:6] == pytest.approx(z[:3])  # same shape of spread, 100x the scale
    assert z[6] == 0.0  # a class of one has no spread: z is 0, not NaN


def test_near_empty_and_heavy_ink_images_are_flagged_with_their_zscores():
    images, labels = random_digits(400, seed=7)
    images[13] = 0
    images[13, 10, 10:15] = 255  # 5 ink pixels
    images[20] = 0
    images[20, 2:26, 2:26] = 255  # a solid block: far more ink and area than any class member
    result = clean.clean(images, labels, *random_digits(20, seed=8), policy="flag")
    flags = result.flags.set_index(["split", "index"])
    assert flags.loc[("train", 13), "reason"] == "near_empty"
    assert flags.loc[("train", 20), "reason"] == "outlier"
    assert flags.loc[("train", 20), "z_ink_mass"] > 4 and flags.loc[("train", 20), "z_bbox_area"] > 4
    assert "|z| of" in flags.loc[("train", 20), "detail"]
    assert result.report["flags"]["train"] == {"near_empty": 1, "outlier": 1}


# ------------------------------------------------------------------ policies
@pytest.fixture
def dirty():
    """Train with two copies of image 10, one image also in test, one empty image."""
    train, ytr = random_digits(300, seed=9)
    test, yte = random_digits(60, seed=10)
    train[30] = train[10]
    train[60] = test[5]
    train[99] = 0
    return train, ytr, test, yte


def test_flag_keeps_everything_and_lists_the_flags(dirty):
    train, ytr, test, yte = dirty
    r = clean.clean(train, ytr, test, yte, policy="flag")
    assert r.report["counts"] == {"before": {"train": 300, "test": 60}, "after": {"train": 300, "test": 60},
                                  "dropped": {"train": 0, "test": 0}}
    assert np.array_equal(r.train_images, train) and np.array_equal(r.train_source_index, np.arange(300))
    reasons = {(row.index, row.reason) for row in r.flags.itertuples() if row.split == "train"}
    assert {(30, "duplicate"), (60, "leakage"), (99, "near_empty")} <= reasons
    assert r.report["leakage"]["train_indices"] == [60] and r.report["leakage"]["test_indices"] == [5]
    assert "nothing is removed" in r.report["policy_note"]


def test_keep_audits_but_carries_no_flags(dirty):
    r = clean.clean(*dirty, policy="keep")
    assert r.flags.empty and list(r.flags.columns) == audit.FLAG_COLUMNS
    assert r.report["duplicates"]["train"]["extra_copies"] == 1  # the audit still ran
    assert r.report["counts"]["after"]["train"] == 300


def test_drop_removes_flagged_training_images_and_never_touches_test(dirty):
    train, ytr, test, yte = dirty
    r = clean.clean(train, ytr, test, yte, policy="drop")
    flagged = set(r.flags.loc[r.flags["split"] == "train", "index"])
    assert {30, 60, 99} <= flagged and 10 not in flagged  # the first copy stays
    assert set(r.train_source_index) == set(range(300)) - flagged
    assert r.report["counts"]["after"]["train"] == 300 - len(flagged)
    assert np.array_equal(r.train_images, train[r.train_source_index])  # rows stay traceable
    assert np.array_equal(r.train_labels, ytr[r.train_source_index])
    assert np.array_equal(r.test_images, test) and np.array_equal(r.test_source_index, np.arange(60))
    assert r.report["counts"]["dropped"]["test"] == 0 and r.report["test_altered"] is False
    assert len(audit.cross_duplicates(r.train_images, r.train_labels, test, yte)) == 0


def test_bad_labels_and_bad_policy_are_refused_with_a_reason():
    images, labels = random_digits(20)
    bad = labels.astype(np.int64)
    bad[3] = 10
    with pytest.raises(ValueError, match=r"train labels must be integers in 0\.\.9.*range 0\.\.10"):
        clean.clean(images, bad, images, labels)
    with pytest.raises(ValueError, match="test labels must be integers"):
        clean.clean(images, labels, images, labels.astype(np.float32))
    with pytest.raises(ValueError, match="unknown cleaning policy 'purge'; choose one of keep, flag, drop"):
        clean.clean(images, labels, images, labels, policy="purge")
    with pytest.raises(ValueError, match="the test split has no images"):
        clean.clean(images, labels, images[:0], labels[:0])


def test_label_audit_reports_type_range_and_counts():
    found = audit.label_audit(np.array([0, 1, 1, 9], np.uint8), "train")
    assert found == {"split": "train", "dtype": "uint8", "integer": True, "n": 4, "min": 0, "max": 9,
                     "in_range": True, "counts": [1, 2, 0, 0, 0, 0, 0, 0, 0, 1]}


# ------------------------------------------------------------------ the stage result
def test_clean_stage_result_describes_the_audit_and_writes_every_file(dirty, tmp_path):
    train, ytr, test, yte = dirty
    result = clean_stage.clean_splits(train, ytr, test, yte, policy="drop")
    report = clean.clean(train, ytr, test, yte, policy="drop").report
    assert result.title == "Cleaning" and result.summary == report
    headline = dict(result.headline)
    flagged = report["flags"]["flagged_train_images"]
    assert headline["Cleaning policy"] == "drop"
    assert headline["Training images before"] == 300 and headline["Training images after"] == 300 - flagged
    assert headline["Test images (never altered)"] == 60
    assert headline["Duplicate copies (train)"] == 1 and headline["Train/test leakage pairs"] == 1
    assert headline["Flagged training images"] == flagged >= 3
    # The cleaned artifact: the same keys and dtypes later stages load.
    cleaned = result.artifacts["cleaned"]
    assert list(cleaned) == ["train_images", "train_labels", "test_images", "test_labels", "train_source_index",
                             "test_source_index", "policy", "flags"]
    assert cleaned["train_labels"].dtype == cleaned["test_labels"].dtype == np.int64
    assert cleaned["train_images"].dtype == np.uint8 and len(cleaned["train_images"]) == 300 - flagged
    assert cleaned["policy"] == "drop" and isinstance(cleaned["flags"], pd.DataFrame)
    # The figure's caption states the numbers it shows, and the policy.
    (figure,) = result.figures
    assert figure.name == "flagged_examples"
    total = report["flags"]["flagged_train_images"] + report["flags"]["flagged_test_images"]
    assert f"of the {total:,} flagged images ({flagged:,} train," in figure.caption
    assert "1 also in test" in figure.caption and "1 duplicate copies" in figure.caption
    assert f"|z| > {report['settings']['z_threshold']:g}" in figure.caption
    assert f"Policy 'drop': {report['policy_note']}" in figure.caption

    write_result(result, tmp_path)
    index = read_result(tmp_path)
    assert index["summary"] == json.loads(json.dumps(report))
    assert [t["file"] for t in index["tables"]] == ["counts.pkl", "label_audit.pkl", "flag_summary.pkl"]
    for table in index["tables"]:
        assert isinstance(pd.read_pickle(tmp_path / table["file"]), pd.DataFrame)
    for name in ("duplicates", "leakage", "flags"):
        assert isinstance(pd.read_pickle(tmp_path / f"{name}.pkl"), pd.DataFrame)
    png = (tmp_path / "flagged_examples.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    assert store.read_verified_pickle(tmp_path / "cleaned.pkl")["train_source_index"].tolist() == cleaned["train_source_index"].tolist()


def test_clean_stage_without_flags_draws_a_note_and_says_so(tmp_path):
    train, ytr = random_digits(100, seed=11)
    test, yte = random_digits(20, seed=12)
    settings = audit.CleanSettings(z_threshold=1e6, min_ink_pixels=0)  # nothing can be an outlier or near-empty
    result = clean_stage.clean_splits(train, ytr, test, yte, policy="flag", settings=settings)
    (figure,) = result.figures
    assert figure.caption.startswith("No image was flagged") and "above 1e+06" in figure.caption
    assert dict(result.headline)["Flagged training images"] == 0
    write_result(result, tmp_path)
    png = (tmp_path / "flagged_examples.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000


# ------------------------------------------------------------------ the task, on real MNIST
def test_clean_data_task_on_real_mnist(tmp_path, mnist_dir):
    from tasks.data import CleanData
    from tasks.acquire import FetchMNIST

    with storage_at(tmp_path):
        fetch = FetchMNIST(mirrors=[str(mnist_dir)])
        task = CleanData()
        assert luigi.build([fetch, task], local_scheduler=True, log_level="WARNING")
        out = task.output_dir()
    assert out.parent == tmp_path / "data" / "interim" and out.name.startswith("clean-flag-")
    cleaned = store.read_verified_pickle(out / "cleaned.pkl")
    assert cleaned["train_images"].shape == (60000, 28, 28) and cleaned["train_images"].dtype == np.uint8
    assert cleaned["test_images"].shape == (10000, 28, 28)
    assert cleaned["train_labels"].dtype == np.int64 and cleaned["train_labels"][:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert np.array_equal(cleaned["train_source_index"], np.arange(60000))
    assert cleaned["policy"] == "flag" and isinstance(cleaned["flags"], pd.DataFrame)

    index = read_result(out)
    report = index["summary"]
    assert index["title"] == "Cleaning"
    assert report["policy"] == "flag" and report["test_altered"] is False
    # Real MNIST has no exact duplicates within or across its splits.
    assert report["duplicates"]["train"]["extra_copies"] == 0 == report["duplicates"]["test"]["extra_copies"]
    assert report["leakage"]["pairs"] == 0
    assert report["labels"]["test"]["counts"] == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert report["counts"]["before"] == report["counts"]["after"] == {"train": 60000, "test": 10000}
    # Flagged, not dropped: the outliers are listed with their z-scores.
    outliers = cleaned["flags"][cleaned["flags"]["reason"] == "outlier"]
    assert len(outliers) == report["flags"]["flagged_train_images"] + report["flags"]["flagged_test_images"] > 0
    assert (np.fmax(outliers["z_ink_mass"].abs(), outliers["z_bbox_area"].abs()) > 4).all()
    headline = dict(map(tuple, index["headline"]))
    assert headline["Flagged training images"] == report["flags"]["flagged_train_images"]
    assert headline["Train/test leakage pairs"] == 0 and headline["Training images after"] == 60000
    assert len(index["tables"]) == 3
    for table in index["tables"]:
        assert isinstance(pd.read_pickle(out / table["file"]), pd.DataFrame)
    assert len(index["figures"]) == 1
    for figure in index["figures"]:
        assert (out / figure["file"]).read_bytes().startswith(b"\x89PNG")
        assert f"{len(outliers):,} flagged images" in figure["caption"]
    for name in ("duplicates", "leakage", "flags"):
        assert isinstance(pd.read_pickle(out / f"{name}.pkl"), pd.DataFrame)
