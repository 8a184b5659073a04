"""The four MNIST files and what their decompressed content must be.

The checksums are of the decompressed IDX content, not of the ``.gz`` bytes:
mirrors recompress the files differently, but the content is the same
everywhere (values from ``shared/datasets/mnist/README.md``).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MnistFile:
    """One gzip-compressed IDX file: its canonical name, kind and expected content."""

    name: str  # e.g. "train-images-idx3-ubyte.gz"
    kind: str  # "images" (N, 28, 28) or "labels" (N,)
    content_bytes: int  # decompressed length, header included
    sha256: str  # of the decompressed content


FILES: tuple[MnistFile, ...] = (
    MnistFile("train-images-idx3-ubyte.gz", "images", 47040016,
              "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    MnistFile("train-labels-idx1-ubyte.gz", "labels", 60008,
              "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    MnistFile("t10k-images-idx3-ubyte.gz", "images", 7840016,
              "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    MnistFile("t10k-labels-idx1-ubyte.gz", "labels", 10008,
              "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
)

BY_NAME: dict[str, MnistFile] = {f.name: f for f in FILES}

# (images file, labels file) of each split, in the order idx.read_pair takes them.
SPLIT_FILES: dict[str, tuple[str, str]] = {
    split: tuple(f.name for kind in ("images", "labels") for f in FILES
                 if f.kind == kind and f.name.startswith(prefix))
    for split, prefix in (("train", "train-"), ("test", "t10k-"))
}
