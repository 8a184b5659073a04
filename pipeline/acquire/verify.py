"""Whether a ``.gz`` file holds the expected MNIST content, checked in bounded memory.

The checksum is of the decompressed content (mirrors recompress differently).
On a mismatch the IDX header is checked too, so the message says *what* is
wrong (truncated, padded, wrong magic), not only that the hashes differ.
"""
from __future__ import annotations

import gzip
import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path

from pipeline.acquire.files import MnistFile
from pipeline.acquire.idx import IdxError, check_header
from pipeline.store import sha256_file

READ_CHUNK = 1 << 20  # decompressed bytes hashed per step: memory stays bounded for the 47 MB file


class VerificationError(Exception):
    """Downloaded bytes are not the expected file (the message says how they differ)."""


@dataclass(frozen=True)
class Verified:
    """What a verified file is: sha256 of its gzip bytes and of its content, and the content length."""

    sha256_gz: str
    sha256_content: str
    content_bytes: int


def verify_gz(path: Path, expected: MnistFile) -> Verified:
    """Check that ``path`` is a gzip file whose content is ``expected``; raise VerificationError if not.

    The content is decompressed and hashed in 1 MB steps, never held whole in memory.
    """
    gz_sha = sha256_file(path)
    received = f"received {path.stat().st_size} bytes (sha256 {gz_sha})"
    with open(path, "rb") as fh:
        magic = fh.read(64)
    if not magic.startswith(b"\x1f\x8b"):
        looks = "an HTML page" if b"<" in magic[:16] else "not gzip"
        raise VerificationError(f"{received} that are {looks}, starting {magic[:24]!r}")
    digest, length, head = hashlib.sha256(), 0, b""
    try:
        with gzip.open(path, "rb") as fh:
            for block in iter(lambda: fh.read(READ_CHUNK), b""):
                digest.update(block)
                if len(head) < 16:
                    head += block[: 16 - len(head)]
                length += len(block)
    except (OSError, EOFError, zlib.error) as exc:
        raise VerificationError(f"{received}: the gzip stream is corrupt or truncated after "
                                f"{length} decompressed bytes ({exc})") from exc
    content_sha = digest.hexdigest()
    if content_sha != expected.sha256:
        try:
            check_header(head, length, expected.name, expected.kind)
            defect = f"{length} content bytes (expected {expected.content_bytes})"
        except IdxError as exc:
            defect = str(exc)
        raise VerificationError(f"{received}: content sha256 {content_sha} does not match the expected "
                                f"{expected.sha256}: {defect}")
    return Verified(gz_sha, content_sha, length)
