"""HTTP downloads that survive flaky servers: retries, ``Range`` resume, bounded memory.

urllib3's ``Retry`` handles everything that happens before the body starts
(connect errors, read timeouts waiting for headers, 429 and 5xx answers, with
exponential backoff that honours ``Retry-After``). Once the body is streaming,
a dropped or stalled connection is handled here: the bytes already received
stay in the ``.part`` file and the next attempt asks for the rest with
``Range: bytes=N-``. A server that answers 200 instead of 206 gets a fresh
download. Memory stays bounded by the chunk size whatever the file size.
Progress goes to a callback (see :mod:`pipeline.acquire.meter`); nothing here prints.
"""
from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from pipeline.acquire.meter import ByteProgress, Meter

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
RETRY_STATUSES = (429, 500, 502, 503, 504)
RETRY_AFTER_MAX = 60.0  # a nightly run waits for a busy server, but not for an hour


class DownloadError(Exception):
    """A URL did not deliver its bytes (the message says why); the caller may try another mirror."""


class HtmlPageError(DownloadError):
    """The server answered with an HTML page (an error or login page), not the file."""


def make_session(retries: int = 3, backoff_factor: float = 0.5) -> requests.Session:
    """A Session whose adapters retry connect/read errors, 429 and 5xx with exponential backoff.

    Connect errors (DNS failure, connection refused) are retried at most once:
    a host that cannot be reached now will not be reached in a second either,
    and offline runs must fail over to the next mirror in seconds, not minutes.
    """
    options = dict(
        total=retries,
        connect=min(retries, 1),
        read=retries,
        status=retries,
        other=0,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET", "HEAD"}),
        backoff_factor=backoff_factor,
        backoff_max=30.0,
        respect_retry_after_header=True,
        raise_on_status=False,  # the last 5xx response comes back; download() names its status
    )
    if hasattr(Retry, "DEFAULT_RETRY_AFTER_MAX"):  # recent urllib3 2.x can cap Retry-After; older ones cannot
        options["retry_after_max"] = RETRY_AFTER_MAX
    adapter = HTTPAdapter(max_retries=Retry(**options))
    session = requests.Session()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    # The file is stored byte for byte: no transfer compression (it would also break Range offsets).
    session.headers["Accept-Encoding"] = "identity"
    return session


def is_unreachable(exc: BaseException) -> bool:
    """True when ``exc`` means the host could not be contacted at all (DNS, refused, connect timeout)."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        err = stack.pop()
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, (requests.ConnectTimeout, urllib3.exceptions.NewConnectionError,
                            urllib3.exceptions.ConnectTimeoutError)):
            return True
        if isinstance(err, urllib3.exceptions.MaxRetryError):
            stack.append(err.reason)
        stack.extend([err.__cause__, err.__context__, *[a for a in err.args if isinstance(a, BaseException)]])
    return False


@dataclass
class Transfer:
    """What one download did: final size, the offset it resumed from, and interruptions it survived."""

    url: str
    bytes: int
    resumed_from: int = 0
    interruptions: list[str] = field(default_factory=list)


def _meta_path(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _read_meta(part: Path) -> dict:
    try:
        return json.loads(_meta_path(part).read_text())
    except (OSError, ValueError):
        return {}


def discard_part(part: Path) -> None:
    """Remove a partial download and its sidecar (which records the URL it came from)."""
    for path in (part, _meta_path(part)):
        path.unlink(missing_ok=True)


def resumable_offset(part: Path, url: str) -> int:
    """Bytes of ``part`` that may be resumed from ``url`` (0 if they came from another URL).

    Mirrors serve different gzip bytes for the same content, so a partial
    file is only ever continued from the URL that produced it.
    """
    if not part.exists():
        return 0
    if _read_meta(part).get("url") != url:
        discard_part(part)
        return 0
    return part.stat().st_size


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def download(session: requests.Session, url: str, part: Path, *, connect_timeout: float,
             read_timeout: float, attempts: int = 3, backoff_factor: float = 0.5,
             progress: ByteProgress | None = None, chunk: int = CHUNK) -> Transfer:
    """Stream ``url`` into ``part``, resuming with ``Range`` after an interruption.

    ``part`` is left in place when all ``attempts`` are interrupted, so a later
    run (or a rerun after ``kill -9``) continues from its last byte. Raises
    :class:`DownloadError` for an HTTP error status, an HTML page or too many
    interruptions. The caller verifies the bytes; nothing here trusts them.
    ``progress(done, total, bytes/s)`` is called for every chunk.
    """
    part.parent.mkdir(parents=True, exist_ok=True)
    meter = Meter(progress)
    transfer = Transfer(url=url, bytes=0)
    for attempt in range(1, attempts + 1):
        offset = resumable_offset(part, url)
        meta = _read_meta(part)
        headers = {}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            # If-Range: a file changed on the server since the first bytes comes back whole (200).
            validator = meta.get("etag") or meta.get("last_modified")
            if validator:
                headers["If-Range"] = validator
        try:
            response = session.get(url, headers=headers, stream=True, timeout=(connect_timeout, read_timeout))
        except requests.RequestException as exc:
            raise DownloadError(f"request failed: {_describe(exc)}") from exc
        with response:
            done, total = _open_body(response, part, url, offset, transfer)
            if done is None:  # 416 on a part that is already whole
                transfer.bytes = offset
                return transfer
            meter.begin(done)
            try:
                with open(part, "ab" if done else "wb") as fh:
                    for block in response.raw.stream(chunk, decode_content=False):
                        fh.write(block)
                        done += len(block)
                        meter(done, total)
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                reason = _describe(exc)
            else:
                if total is None or done == total:
                    transfer.bytes = done
                    return transfer
                reason = f"connection closed after {done} of {total} bytes"
        transfer.interruptions.append(f"interrupted at byte {done}: {reason}")
        log.warning("%s: interrupted at byte %d of %s (%s); attempt %d of %d",
                    url, done, total if total is not None else "?", reason, attempt, attempts)
        if attempt < attempts:
            time.sleep(min(backoff_factor * 2 ** (attempt - 1), 30.0))
    raise DownloadError(f"interrupted {attempts} times; last: {transfer.interruptions[-1]}; "
                        f"{part.name} keeps the bytes received for a resume")


def _open_body(response: requests.Response, part: Path, url: str, offset: int,
               transfer: Transfer) -> tuple[int | None, int | None]:
    """Check the status and headers; prepare ``part``. Returns (bytes already in part, total size).

    Returns ``(None, None)`` when a 416 says ``part`` already holds the whole file.
    """
    status = response.status_code
    length = response.headers.get("Content-Length")
    length = int(length) if length and length.isdigit() else None
    if status == 416 and offset:
        match = re.fullmatch(r"bytes\s+\*/(\d+)", response.headers.get("Content-Range", "").strip())
        if match and int(match.group(1)) == offset:
            log.info("%s: %s already holds all %d bytes", url, part.name, offset)
            return None, None
        discard_part(part)
        raise DownloadError(f"HTTP 416 for Range bytes={offset}-: the partial file does not fit; it was discarded")
    if status not in (200, 206):
        raise DownloadError(f"HTTP {status} {response.reason}")
    content_type = response.headers.get("Content-Type", "")
    if "html" in content_type.lower():
        raise HtmlPageError(f"HTTP {status} with Content-Type {content_type!r}: an HTML page, not the file")
    if status == 206:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        if match and int(match.group(1)) == offset:
            total = int(match.group(3)) if match.group(3) != "*" else None
            log.info("%s: resuming %s from byte %d of %s (HTTP 206)", url, part.name, offset, total)
            transfer.resumed_from = offset
            return offset, total
        discard_part(part)  # otherwise every later run would ask for the same range again
        raise DownloadError(f"HTTP 206 with Content-Range {response.headers.get('Content-Range')!r} "
                            f"does not start at the requested byte {offset}; the partial file was discarded")
    if offset:
        log.info("%s: server ignored Range bytes=%d- (HTTP 200); starting over", url, offset)
    discard_part(part)
    _meta_path(part).write_text(json.dumps({
        "url": url, "etag": response.headers.get("ETag"), "last_modified": response.headers.get("Last-Modified"),
    }))
    part.write_bytes(b"")
    log.info("%s: downloading %s (%s bytes)", url, part.name, length if length is not None else "unknown")
    return 0, length


def _describe(exc: BaseException) -> str:
    """A one-line reason, without urllib3's nested repr noise where a plain cause exists."""
    if isinstance(exc, requests.ConnectionError) and exc.args and isinstance(exc.args[0], urllib3.exceptions.MaxRetryError):
        reason = exc.args[0].reason
        return f"{type(reason).__name__}: {reason}"
    return f"{type(exc).__name__}: {exc}"
