"""IDX validation: every defect is named together with the file, and the real MNIST parses."""
from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from pipeline.acquire.idx import IdxError, check_header, parse_idx, read_images, read_labels, read_pair


def images_bytes(n: int = 5, rows: int = 28, cols: int = 28, magic: int = 2051) -> bytes:
    pixels = np.arange(n * rows * cols, dtype=np.int64).astype(np.uint8)
    return struct.pack(">IIII", magic, n, rows, cols) + pixels.tobytes()


def labels_bytes(values=(5, 0, 4, 1, 9)) -> bytes:
    return struct.pack(">II", 2049, len(values)) + bytes(values)


def write(tmp_path, name: str, raw: bytes, gz: bool = True):
    path = tmp_path / (name + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def test_well_formed_files_parse_to_the_declared_shapes(tmp_path):
    images = read_images(write(tmp_path, "img", images_bytes()))
    labels = read_labels(write(tmp_path, "lab", labels_bytes(), gz=False))
    assert images.shape == (5, 28, 28) and images.dtype == np.uint8
    assert images[0, 0, :3].tolist() == [0, 1, 2] and images[1, 0, 0] == 784 % 256
    assert labels.tolist() == [5, 0, 4, 1, 9]


@pytest.mark.parametrize("defect, raw, message", [
    ("truncated", images_bytes()[:-1], r"img.gz: truncated: header says 5x28x28 \(3936 bytes\) but the file has 3935"),
    ("padded", images_bytes() + b"\0" * 7, r"img.gz: padded: header says 5x28x28 \(3936 bytes\) but the file has 3943"),
    ("labels magic", labels_bytes(), r"img.gz: magic 2049 is not 2051 \(images\)"),
    ("not 28x28", images_bytes(rows=27, cols=29), r"img.gz: images have shape \(27, 29\), expected 28x28"),
    ("mistyped", b"\x00\x00\x0d\x03" + images_bytes()[4:], r"img.gz: magic 3331 is not 2051"),
    ("too short", b"\x00\x00", r"img.gz: 2 bytes is too short"),
    ("header cut", images_bytes()[:10], r"img.gz: header declares 3 dimensions but the file has only 10 bytes"),
])
def test_image_file_defects_are_named(tmp_path, defect, raw, message):
    with pytest.raises(IdxError, match=message):
        read_images(write(tmp_path, "img", raw))


def test_label_defects_are_named(tmp_path):
    with pytest.raises(IdxError, match=r"lab.gz: label value 12 is outside 0..9"):
        read_labels(write(tmp_path, "lab", labels_bytes((1, 12, 3))))
    with pytest.raises(IdxError, match=r"lab.gz: magic 2051 is not 2049 \(labels\)"):
        read_labels(write(tmp_path, "lab", images_bytes()))
    with pytest.raises(IdxError, match=r"lab.gz: truncated"):
        read_labels(write(tmp_path, "lab", labels_bytes()[:-2]))


def test_generic_parser_rejects_a_non_ubyte_type():
    raw = b"\x00\x00\x0b\x01" + struct.pack(">I", 2) + b"\0" * 4  # 0x0b = int16
    with pytest.raises(IdxError, match="data type 0x0b is not unsigned byte"):
        parse_idx(raw, "x")


def test_counts_must_agree(tmp_path):
    images = write(tmp_path, "img", images_bytes(n=4))
    labels = write(tmp_path, "lab", labels_bytes())
    with pytest.raises(IdxError, match="img.gz has 4 images but lab.gz has 5 labels"):
        read_pair(images, labels)


def test_a_truncated_gzip_names_the_file_and_the_fix(tmp_path):
    path = write(tmp_path, "img", images_bytes())
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(IdxError, match=r"img.gz: cannot decompress .* fetch again"):
        read_images(path)


def test_header_check_works_from_the_first_16_bytes():
    raw = images_bytes(n=60000 // 10000)
    assert check_header(raw[:16], len(raw), "x", "images") == (6, 28, 28)
    with pytest.raises(IdxError, match=r"x: padded"):
        check_header(raw[:16], len(raw) + 1, "x", "images")
    assert check_header(labels_bytes()[:8], 13, "y", "labels") == (5,)


def test_the_real_mnist_parses_with_the_published_facts(mnist_dir):
    train_x, train_y = read_pair(mnist_dir / "train-images-idx3-ubyte.gz", mnist_dir / "train-labels-idx1-ubyte.gz")
    test_x, test_y = read_pair(mnist_dir / "t10k-images-idx3-ubyte.gz", mnist_dir / "t10k-labels-idx1-ubyte.gz")
    assert train_x.shape == (60000, 28, 28) and test_x.shape == (10000, 28, 28)
    assert np.bincount(train_y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(test_y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert train_y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert test_y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_content_that_does_not_hash_to_the_pinned_value_is_refused(tmp_path):
    import gzip
    import hashlib

    from pipeline.acquire.idx import read_labels

    raw = struct.pack(">IIB", 2049, 3, 0)[:8] + bytes([1, 2, 3])
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(raw))
    assert read_labels(path, hashlib.sha256(raw).hexdigest()).tolist() == [1, 2, 3]
    with pytest.raises(IdxError, match=r"labels\.gz: content sha256 .* is not the expected .*delete it and rerun"):
        read_labels(path, "0" * 64)
