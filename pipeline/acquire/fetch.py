"""Fetch the MNIST files from an ordered list of mirrors, accepting only verified bytes.

For each file the mirrors are tried in order. A mirror that errors, times out,
serves an HTML page, the wrong size or bytes whose decompressed sha256 does
not match is skipped and the next one is tried. Bytes arrive in ``<name>.part``
beside the final path and are renamed into place only once verified, so the
final name never holds a partial or unverified file. A mirror is an HTTP(S)
URL, a ``file://`` URL or a local directory.
"""
from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import logging
import os
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, TextIO
from urllib.parse import unquote, urlparse

import requests

from pipeline.acquire.http import DownloadError, Progress, discard_part, download, is_unreachable, make_session
from pipeline.acquire.idx import IdxError, check_header
from pipeline.acquire.files import FILES, MnistFile
from pipeline.store import fsync_dir, sha256_file

log = logging.getLogger("pipeline.acquire")

READ_CHUNK = 1 << 20  # decompressed bytes hashed per step: memory stays bounded for the 47 MB file

# (file name, bytes done, total or None, bytes/s)
FileProgress = Callable[[str, int, "int | None", float], None]


class AcquireError(RuntimeError):
    """No mirror delivered a verified copy of a file; the message lists what each mirror did."""


class VerificationError(Exception):
    """Downloaded bytes are not the expected file (the message says how they differ)."""


@dataclass(frozen=True)
class FetchOptions:
    """Network settings: timeouts in seconds, retries per request, exponential backoff base."""

    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    retries: int = 3
    backoff_factor: float = 0.5


@dataclass(frozen=True)
class Mirror:
    """One mirror: ``spec`` as configured; ``base`` an http(s) URL or a local directory."""

    spec: str
    base: str | Path

    @property
    def is_local(self) -> bool:
        return isinstance(self.base, Path)

    def location(self, name: str) -> str:
        """The URL or path of ``name`` on this mirror."""
        if self.is_local:
            return str(self.base / name)
        return f"{str(self.base).rstrip('/')}/{name}"


def resolve_mirror(spec: str, cwd: Path | None = None) -> Mirror:
    """Interpret a mirror: http(s):// URL, file:// URL, or a directory (relative to ``cwd``)."""
    parsed = urlparse(spec)
    if parsed.scheme in ("http", "https"):
        return Mirror(spec, spec)
    if parsed.scheme == "file":
        return Mirror(spec, Path(unquote(parsed.path)))
    if parsed.scheme and len(parsed.scheme) > 1:  # "C:" would be a drive letter, not a scheme
        raise ValueError(f"mirror {spec!r}: scheme {parsed.scheme!r} is not supported; "
                         "use an http(s):// or file:// URL or a directory path")
    path = Path(spec).expanduser()
    return Mirror(spec, path if path.is_absolute() else (cwd or Path.cwd()) / path)


@dataclass(frozen=True)
class Verified:
    sha256_gz: str
    sha256_content: str
    content_bytes: int


def verify_gz(path: Path, expected: MnistFile) -> Verified:
    """Check that ``path`` is a gzip file whose content is ``expected``; raise VerificationError if not.

    The content is decompressed and hashed in 1 MB steps, never held whole in
    memory. On a mismatch the IDX header is checked too, so the message says
    *what* is wrong (truncated, padded, wrong magic) and not only that hashes differ.
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


def _copy_local(source: Path, part: Path, progress: Progress) -> int:
    """Copy a file from a local mirror into ``part`` in chunks, reporting progress."""
    if not source.is_file():
        where = "directory not found" if not source.parent.is_dir() else "file not found"
        raise DownloadError(f"{where}: {source}")
    discard_part(part)
    total, done = source.stat().st_size, 0
    with open(source, "rb") as src, open(part, "wb") as dst:
        for block in iter(lambda: src.read(READ_CHUNK), b""):
            dst.write(block)
            done += len(block)
            progress.update(done, total)
    progress.finish(done, total)
    return done


def _accept(part: Path, final: Path) -> None:
    """Rename a verified ``part`` into its final name, durably."""
    with open(part, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(part, final)
    discard_part(part)  # the sidecar that recorded the part's URL
    fsync_dir(final.parent)


def fetch_file(spec: MnistFile, mirrors: list[Mirror], dest: Path, *, options: FetchOptions,
               session: requests.Session, unreachable: dict[str, str] | None = None,
               on_progress: FileProgress | None = None, terminal: TextIO | None = sys.stderr) -> dict:
    """Download ``spec`` into ``dest`` from the first mirror that delivers verified bytes.

    ``unreachable`` (mirror spec -> reason) is shared across files so that a
    host found unreachable for one file is not contacted again in this run.
    Returns the manifest record; raises AcquireError naming every failed attempt.
    """
    unreachable = {} if unreachable is None else unreachable
    dest.mkdir(parents=True, exist_ok=True)
    final, part = dest / spec.name, dest / (spec.name + ".part")
    failed: list[dict] = []
    for mirror in mirrors:
        url = mirror.location(spec.name)
        if mirror.spec in unreachable:
            failed.append({"mirror": mirror.spec, "url": url,
                           "error": f"skipped: unreachable earlier in this run ({unreachable[mirror.spec]})"})
            continue
        start = time.monotonic()
        callback = None if on_progress is None else (lambda d, t, r: on_progress(spec.name, d, t, r))
        progress = Progress(spec.name, callback, stream=terminal)
        resumed_from, interruptions = 0, []
        try:
            if mirror.is_local:
                _copy_local(Path(url), part, progress)
            else:
                transfer = download(session, url, part, connect_timeout=options.connect_timeout,
                                    read_timeout=options.read_timeout, attempts=options.retries + 1,
                                    backoff_factor=options.backoff_factor, progress=progress)
                resumed_from, interruptions = transfer.resumed_from, transfer.interruptions
            verified = verify_gz(part, spec)
        except VerificationError as exc:
            discard_part(part)  # bad bytes must never seed a resume
            error = f"rejected: {exc}"
        except (DownloadError, OSError) as exc:
            error = str(exc)
            if is_unreachable(exc):
                unreachable[mirror.spec] = error
        else:
            _accept(part, final)
            seconds = round(time.monotonic() - start, 3)
            size = final.stat().st_size
            log.info("%s: accepted from %s: %d bytes in %.2f s%s, content sha256 %s verified",
                     spec.name, mirror.spec, size, seconds,
                     f" (resumed from byte {resumed_from})" if resumed_from else "", verified.sha256_content)
            return {"mirror": mirror.spec, "url": url, "bytes": size, "sha256_gz": verified.sha256_gz,
                    "sha256_content": verified.sha256_content, "content_bytes": verified.content_bytes,
                    "seconds": seconds, "resumed_from": resumed_from, "interruptions": interruptions,
                    "failed_attempts": failed}
        log.warning("%s: mirror %s failed after %.2f s: %s", spec.name, mirror.spec, time.monotonic() - start, error)
        failed.append({"mirror": mirror.spec, "url": url, "error": error})
    tried = "\n".join(f"  - {f['url']}: {f['error']}" for f in failed) or "  (no mirrors configured)"
    raise AcquireError(
        f"{spec.name}: no mirror delivered a verified file (expected content sha256 {spec.sha256}, "
        f"{spec.content_bytes} bytes). Mirrors tried:\n{tried}\n"
        "Check the network, or pass a mirror that has the file, e.g. --mirrors '[\"data/mirror/mnist\"]'."
    )


def present_record(spec: MnistFile, dest: Path, previous: dict | None) -> dict | None:
    """The record of a file already in ``dest`` whose content verifies, or None.

    The previous manifest's record is kept when it describes these very bytes;
    otherwise the mirror is unknown (the file was placed by an interrupted run).
    """
    final = dest / spec.name
    if not final.is_file():
        return None
    try:
        verified = verify_gz(final, spec)
    except VerificationError as exc:
        # A bad file must not stay where a good one is expected, even if no mirror answers now.
        log.warning("%s: the file already in %s does not verify (%s); removed, fetching it again",
                    spec.name, dest, exc)
        final.unlink()
        return None
    if previous and previous.get("sha256_gz") == verified.sha256_gz:
        return previous
    log.info("%s: already present and verified; not downloaded again", spec.name)
    return {"mirror": "already-present", "url": str(final), "bytes": final.stat().st_size,
            "sha256_gz": verified.sha256_gz, "sha256_content": verified.sha256_content,
            "content_bytes": verified.content_bytes, "seconds": 0.0, "resumed_from": 0, "interruptions": [],
            "failed_attempts": []}


@contextlib.contextmanager
def exclusive(dest: Path) -> Iterator[None]:
    """Hold a lock on ``dest`` so two runs never write the same ``.part`` file at once."""
    dest.mkdir(parents=True, exist_ok=True)
    with open(dest / ".fetch.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise AcquireError(f"another fetch is writing into {dest}; wait for it to finish") from exc
        yield


def fetch_all(dest: str | os.PathLike, mirror_specs: list[str], options: FetchOptions = FetchOptions(), *,
              previous: dict | None = None, on_progress: FileProgress | None = None,
              terminal: TextIO | None = sys.stderr) -> dict:
    """Fetch the four MNIST files into ``dest``; return the manifest (file name -> record).

    Files already in ``dest`` that verify are kept. ``previous`` is the old
    manifest, if any. The caller writes the manifest (last, atomically).
    """
    dest = Path(dest)
    mirrors = [resolve_mirror(str(m)) for m in mirror_specs]
    manifest: dict[str, dict] = {}
    unreachable: dict[str, str] = {}
    with exclusive(dest), make_session(options.retries, options.backoff_factor) as session:
        for spec in FILES:
            record = present_record(spec, dest, (previous or {}).get(spec.name))
            if record is None:
                record = fetch_file(spec, mirrors, dest, options=options, session=session,
                                    unreachable=unreachable, on_progress=on_progress, terminal=terminal)
            manifest[spec.name] = record
    return manifest
