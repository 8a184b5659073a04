"""Parse and validate IDX files (the MNIST container format).

Layout (big-endian): two zero bytes, a type code (0x08 = unsigned byte), the
number of dimensions, one uint32 per dimension, then the data. MNIST labels
have magic 2049 (1 dimension, 8-byte header); images have magic 2051
(3 dimensions: count, rows, cols; 16-byte header).
"""
from __future__ import annotations

import gzip
import hashlib
import os
import struct
import zlib
from pathlib import Path

import numpy as np

LABELS_MAGIC = 2049
IMAGES_MAGIC = 2051
UBYTE = 0x08


class IdxError(ValueError):
    """An IDX file is malformed; the message names the file and the defect."""


def read_bytes(path: str | os.PathLike, expected_sha256: str | None = None) -> bytes:
    """The decompressed bytes of ``path`` (gzip if it ends in .gz); with ``expected_sha256``, only
    if they hash to it (the pinned content of an MNIST file: what was verified when it was fetched)."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                raw = fh.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise IdxError(
            f"{path}: cannot decompress ({exc}); the file is truncated or corrupt: delete it and fetch again"
        ) from exc
    if expected_sha256 is not None:
        actual = hashlib.sha256(raw).hexdigest()
        if actual != expected_sha256:
            raise IdxError(f"{path}: content sha256 {actual} is not the expected {expected_sha256}; the file "
                           f"changed after it was verified: delete it and rerun, the pipeline fetches it again")
    return raw


def parse_header(raw: bytes, length: int, name: str = "<bytes>") -> tuple[tuple[int, ...], int]:
    """Validate the IDX header at the start of ``raw`` against the total ``length``.

    ``raw`` needs to hold only the header (16 bytes for MNIST), so a file can be
    checked while it is streamed. Returns (dimensions, header length in bytes).
    """
    if length < 4:
        raise IdxError(f"{name}: {length} bytes is too short for an IDX header")
    zero, dtype_code, ndim = raw[0:2], raw[2], raw[3]
    if zero != b"\x00\x00":
        raise IdxError(f"{name}: bad magic number {raw[:4].hex()} (expected 0000080N): not an IDX file")
    if dtype_code != UBYTE:
        raise IdxError(f"{name}: data type 0x{dtype_code:02x} is not unsigned byte (0x08)")
    if ndim < 1:
        raise IdxError(f"{name}: declares {ndim} dimensions")
    header = 4 + 4 * ndim
    if length < header:
        raise IdxError(f"{name}: header declares {ndim} dimensions but the file has only {length} bytes")
    if len(raw) < header:
        raise ValueError(f"{name}: pass at least the {header} header bytes to parse_header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + int(np.prod(dims, dtype=np.int64))
    if length != expected:
        kind = "truncated" if length < expected else "padded"
        raise IdxError(
            f"{name}: {kind}: header says {'x'.join(map(str, dims))} ({expected} bytes) but the file has {length} bytes"
        )
    return dims, header


def parse_idx(raw: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes into a uint8 array of the shape the header declares."""
    dims, header = parse_header(raw, len(raw), name)
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def check_header(raw: bytes, length: int, name: str, kind: str) -> tuple[int, ...]:
    """Validate an MNIST ``kind`` ("images" or "labels") header: magic, dimensions, 28x28, exact length.

    ``raw`` is the start of the decompressed file (16 bytes suffice), ``length``
    its full length. Returns the dimensions, e.g. (60000, 28, 28).
    """
    magic = {"images": IMAGES_MAGIC, "labels": LABELS_MAGIC}[kind]
    if len(raw) >= 4 and struct.unpack(">I", raw[:4])[0] != magic:
        raise IdxError(f"{name}: magic {struct.unpack('>I', raw[:4])[0]} is not {magic} ({kind})")
    dims, _ = parse_header(raw, length, name)
    if kind == "images" and (len(dims) != 3 or dims[1:] != (28, 28)):
        raise IdxError(f"{name}: images have shape {dims[1:]}, expected 28x28")
    if kind == "labels" and len(dims) != 1:
        raise IdxError(f"{name}: labels have {len(dims)} dimensions, expected 1")
    return dims


def read_images(path: str | os.PathLike, expected_sha256: str | None = None) -> np.ndarray:
    """Read an MNIST image file (checked against ``expected_sha256`` when given). Returns uint8 (N, 28, 28)."""
    raw = read_bytes(path, expected_sha256)
    name = Path(path).name
    check_header(raw, len(raw), name, "images")
    return parse_idx(raw, name)


def read_labels(path: str | os.PathLike, expected_sha256: str | None = None) -> np.ndarray:
    """Read an MNIST label file (checked against ``expected_sha256`` when given). Returns uint8 (N,) in 0..9."""
    raw = read_bytes(path, expected_sha256)
    name = Path(path).name
    check_header(raw, len(raw), name, "labels")
    labels = parse_idx(raw, name)
    if labels.size and labels.max() > 9:
        raise IdxError(f"{name}: label value {int(labels.max())} is outside 0..9")
    return labels


def read_pair(images_path: str | os.PathLike, labels_path: str | os.PathLike,
              expected_sha256: tuple[str, str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read matching image and label files; their counts must agree (and their content hashes
    ``expected_sha256`` = (images, labels), when given).

    Returns (images uint8 (N, 28, 28), labels uint8 (N,)).
    """
    sha_images, sha_labels = expected_sha256 or (None, None)
    images, labels = read_images(images_path, sha_images), read_labels(labels_path, sha_labels)
    if len(images) != len(labels):
        raise IdxError(
            f"{Path(images_path).name} has {len(images)} images but {Path(labels_path).name} has {len(labels)} labels"
        )
    return images, labels
