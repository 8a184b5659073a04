"""Fetch the MNIST files from an ordered list of mirrors, accepting only verified bytes.

For each file the mirrors are tried in order. A mirror that errors, times out,
serves an HTML page, the wrong size or bytes whose decompressed sha256 does
not match is skipped and the next one is tried. Bytes arrive in ``<name>.part``
beside the final path and are renamed into place only once verified, so the
final name never holds a partial or unverified file.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import requests

from pipeline.acquire.files import FILES, MnistFile
from pipeline.acquire.http import DownloadError, discard_part, download, is_unreachable, make_session
from pipeline.acquire.meter import ByteProgress, Meter, format_progress, fraction
from pipeline.acquire.mirrors import Mirror, resolve_mirror
from pipeline.acquire.verify import VerificationError, verify_gz
from pipeline.progress import ProgressFn, ignore
from pipeline.store import fsync_dir, lock

log = logging.getLogger(__name__)

COPY_CHUNK = 1 << 20  # bytes per step when copying from a local mirror: memory stays bounded

# 1.0 means "all four files verified": the last byte of the last file is not that yet, and
# whoever shows the progress may treat 1.0 as the end (close its line), so the files stop short.
FILES_DONE = 0.999
LOCK_FILE = ".fetch.lock"  # hidden: not an artifact, never listed in a manifest


class AcquireError(RuntimeError):
    """No mirror delivered a verified copy of a file; the message lists what each mirror did."""


@dataclass(frozen=True)
class FetchOptions:
    """Network settings: timeouts in seconds, retries per request, exponential backoff base."""

    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    retries: int = 3
    backoff_factor: float = 0.5
    lock_timeout: float = 3600.0  # seconds to wait for another run's download into the same directory


def _copy_local(source: Path, part: Path, progress: ByteProgress | None = None) -> int:
    """Copy a file from a local mirror into ``part`` in chunks; ``progress(done, total, bytes/s)`` after each."""
    if not source.is_file():
        where = "directory not found" if not source.parent.is_dir() else "file not found"
        raise DownloadError(f"{where}: {source}")
    discard_part(part)
    total, done, meter = source.stat().st_size, 0, Meter(progress)
    with open(source, "rb") as src, open(part, "wb") as dst:
        for block in iter(lambda: src.read(COPY_CHUNK), b""):
            dst.write(block)
            done += len(block)
            meter(done, total)
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
               progress: ProgressFn = ignore) -> dict:
    """Download ``spec`` into ``dest`` from the first mirror that delivers verified bytes.

    ``unreachable`` (mirror spec -> reason) is shared across files so that a
    host found unreachable for one file is not contacted again in this run.
    ``progress(fraction of this file, message)`` is called for every chunk received.
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
        def on_bytes(done: int, total: int | None, rate: float | None) -> None:
            progress(fraction(done, total), format_progress(spec.name, done, total, rate))

        resumed_from, interruptions = 0, []
        try:
            if mirror.is_local:
                _copy_local(Path(url), part, on_bytes)
            else:
                transfer = download(session, url, part, connect_timeout=options.connect_timeout,
                                    read_timeout=options.read_timeout, attempts=options.retries + 1,
                                    backoff_factor=options.backoff_factor, progress=on_bytes)
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
        "Check the network, or add a mirror that has the file (a directory works offline, e.g. the copy "
        "bundled in the repository, data/mirror/mnist)."
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
def exclusive(dest: Path, timeout: float, progress: ProgressFn = ignore) -> Iterator[None]:
    """Hold a lock on ``dest`` so two runs never write the same ``.part`` file at once.

    A run that finds the lock taken waits for it (saying so through ``progress`` and the log),
    up to ``timeout`` seconds; it then finds the other run's verified files and keeps them.
    """
    def waiting(seconds: float) -> None:
        log.info("another run is fetching into %s; waiting for it (%.0f s so far)", dest, seconds)
        progress(0.0, f"waiting for another run's download into {dest} ({seconds:.0f} s of {timeout:g} s)")

    try:
        with lock.exclusive(dest / LOCK_FILE, timeout, waiting):
            yield
    except lock.LockTimeout:
        raise AcquireError(f"another run has been fetching into {dest} for over {timeout:g} s; let it finish, or "
                           f"raise the lock timeout (lock_timeout in luigi.cfg [FetchMNIST])") from None


def fetch_all(dest: str | os.PathLike, mirror_specs: list[str], options: FetchOptions = FetchOptions(), *,
              previous: dict | None = None, progress: ProgressFn = ignore) -> dict:
    """Fetch the four MNIST files into ``dest``; return the manifest (file name -> record).

    Files already in ``dest`` that verify are kept. ``previous`` is the old
    manifest, if any. The caller writes the manifest (last, atomically).
    ``progress(fraction, message)`` gets the share of the four files done, e.g.
    ``file 1/4: train-images-idx3-ubyte.gz  3.1 of 9.9 MB (31%)  1.20 MB/s``,
    and 1.0 once, at the end, with the mirror each file came from.
    """
    dest = Path(dest)
    mirrors = [resolve_mirror(str(m)) for m in mirror_specs]
    manifest: dict[str, dict] = {}
    unreachable: dict[str, str] = {}
    with exclusive(dest, options.lock_timeout, progress), make_session(options.retries, options.backoff_factor) as session:
        for i, spec in enumerate(FILES):
            def report(share: float, message: str, i: int = i) -> None:  # this file's share -> all files'
                progress(min((i + share) / len(FILES), FILES_DONE), f"file {i + 1}/{len(FILES)}: {message}")

            record = present_record(spec, dest, (previous or {}).get(spec.name))
            if record is None:
                record = fetch_file(spec, mirrors, dest, options=options, session=session,
                                    unreachable=unreachable, progress=report)
            else:
                report(1.0, f"{spec.name} already present and verified")
            manifest[spec.name] = record
    progress(1.0, "verified: " + ", ".join(f"{name} from {rec['mirror']}" for name, rec in manifest.items()))
    return manifest
