"""Mirror health: is each configured mirror reachable, does it honour ``Range``, does it serve MNIST?

For every mirror and file the check records one status:

- ``verified``: the served bytes decompress to the pinned content (sha256 of the IDX content);
- ``unchanged``: the mirror's validators (ETag, Last-Modified, length) are those of a copy verified
  on an earlier night, so nothing is downloaded again;
- ``unreachable``: no connection (DNS, refused, timeout): recorded, and harmless while another
  mirror serves verified bytes;
- ``missing``: the mirror answered but has no such file (HTTP 404/403, no local file);
- ``error``: the mirror answered with another error status, or the download broke off: recorded,
  and, like ``unreachable``, harmless while another mirror serves verified bytes;
- ``mismatch``: the mirror serves something else: a different or corrupt file. This is a finding
  a night must fail on, since a mirror the pipeline trusts is serving wrong data.

A file is downloaded in full only when it must be: when no earlier verified record with the same
validators exists.
"""
from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from pipeline.acquire.files import FILES, MnistFile
from pipeline.acquire.http import DownloadError, download, is_unreachable, make_session
from pipeline.acquire.mirrors import Mirror, resolve_mirror
from pipeline.acquire.verify import VerificationError, verify_gz
from pipeline.progress import ProgressFn, ignore

log = logging.getLogger(__name__)

FAILING = ("mismatch",)  # statuses that fail a night
SERVING = ("verified", "unchanged")  # statuses under which a mirror counts as serving the file


def _validators(headers: Any) -> dict[str, Any]:
    return {"etag": headers.get("ETag"), "last_modified": headers.get("Last-Modified"),
            "length": _total_length(headers)}


def _total_length(headers: Any) -> int | None:
    content_range = headers.get("Content-Range", "")  # "bytes 0-0/9912422"
    if "/" in content_range and content_range.rsplit("/", 1)[1].isdigit():
        return int(content_range.rsplit("/", 1)[1])
    length = headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def _verify(path: Path, spec: MnistFile) -> dict[str, Any]:
    try:
        verified = verify_gz(path, spec)
    except VerificationError as exc:
        return {"status": "mismatch", "detail": str(exc)}
    return {"status": "verified", "sha256_gz": verified.sha256_gz, "sha256_content": verified.sha256_content}


def check_local(mirror: Mirror, spec: MnistFile) -> dict[str, Any]:
    """A directory mirror: the file is there and verifies (local reads are cheap: always checked)."""
    path = Path(mirror.location(spec.name))
    if not path.is_file():
        return {"status": "missing", "detail": f"no file {path}"}
    return {"range": True, **_verify(path, spec)}


def connection_reason(exc: BaseException) -> str:
    """A short reason for a failed request (``connection refused``, ``host name not resolved``, ...).

    requests nests urllib3's errors several levels deep; the page and the failure sentences want
    the cause in a few words, the record keeps the full text beside it.
    """
    import requests

    text = str(exc)
    for needle, reason in (("Name or service not known", "host name not resolved"),
                           ("Temporary failure in name resolution", "host name not resolved"),
                           ("Failed to resolve", "host name not resolved"),
                           ("Connection refused", "connection refused"),
                           ("Network is unreachable", "network unreachable"),
                           ("No route to host", "no route to host")):
        if needle in text:
            return reason
    if isinstance(exc, requests.ConnectTimeout):
        return "connection timed out"
    if isinstance(exc, requests.ReadTimeout):
        return "no answer within the read timeout"
    return f"{type(exc).__name__}: {text}"[:200]


def check_http(mirror: Mirror, spec: MnistFile, session, previous: dict[str, Any] | None, *,
               connect_timeout: float, read_timeout: float, scratch: Path) -> dict[str, Any]:
    """An HTTP mirror: a ``Range`` probe, then a full download only if the validators changed.

    The probe asks for ``bytes=1-``, the open-ended form the downloader resumes with, so
    ``range`` records the capability a resumed download relies on; only the headers are read.
    """
    import requests

    url = mirror.location(spec.name)
    try:
        probe = session.get(url, headers={"Range": "bytes=1-"}, timeout=(connect_timeout, read_timeout),
                            stream=True)
        probe.close()
    except requests.RequestException as exc:
        status = "unreachable" if is_unreachable(exc) else "error"
        return {"status": status, "detail": connection_reason(exc), "error": f"{type(exc).__name__}: {exc}"}
    if probe.status_code in (403, 404, 410):
        return {"status": "missing", "detail": f"HTTP {probe.status_code}"}
    if probe.status_code not in (200, 206):
        return {"status": "error", "detail": f"HTTP {probe.status_code}"}
    record: dict[str, Any] = {"range": probe.status_code == 206, **_validators(probe.headers)}
    known = previous or {}
    same = all(record[k] == known.get(k) for k in ("etag", "last_modified", "length"))
    if same and known.get("status") in SERVING and (record["etag"] or record["last_modified"]):
        return {**record, "status": "unchanged", "sha256_gz": known.get("sha256_gz"),
                "sha256_content": known.get("sha256_content"), "verified_on": known.get("verified_on")}
    part = scratch / f"{spec.name}.part"
    try:
        download(session, url, part, connect_timeout=connect_timeout, read_timeout=read_timeout)
    except (DownloadError, requests.RequestException) as exc:
        return {**record, "status": "error", "detail": connection_reason(exc),
                "error": f"{type(exc).__name__}: {exc}"}
    return {**record, **_verify(part, spec)}


def check_mirrors(mirror_specs: list[str], previous: dict[str, Any] | None = None, *, today: str,
                  connect_timeout: float = 5.0, read_timeout: float = 30.0, retries: int = 1,
                  progress: ProgressFn = ignore) -> dict[str, Any]:
    """Health of every mirror: {"checked": [specs, in order], "mirrors": {spec: {"files": {name: record},
    "serves_all": bool, "seconds": float}}, "failures": [sentences], "served": {name: [specs serving it]}}.
    ``previous`` is an earlier result."""
    previous_mirrors = (previous or {}).get("mirrors", {})
    result: dict[str, Any] = {"checked": [str(m) for m in mirror_specs],  # in the configured order (JSON sorts keys)
                              "mirrors": {}, "failures": [], "served": {f.name: [] for f in FILES}}
    with make_session(retries, 0.2) as session, tempfile.TemporaryDirectory(prefix="mirror-health-") as tmp:
        for i, spec_text in enumerate(mirror_specs):
            mirror = resolve_mirror(str(spec_text))
            started = time.monotonic()
            files: dict[str, Any] = {}
            for j, spec in enumerate(FILES):
                progress((i + j / len(FILES)) / max(len(mirror_specs), 1), f"checking {spec.name} on {spec_text}")
                before = previous_mirrors.get(str(spec_text), {}).get("files", {}).get(spec.name)
                if mirror.is_local:
                    rec = check_local(mirror, spec)
                else:
                    rec = check_http(mirror, spec, session, before, connect_timeout=connect_timeout,
                                     read_timeout=read_timeout, scratch=Path(tmp))
                if rec["status"] == "verified":
                    rec["verified_on"] = today
                files[spec.name] = rec
                if rec["status"] in SERVING:
                    result["served"][spec.name].append(str(spec_text))
                if rec["status"] in FAILING:
                    result["failures"].append(f"mirror {spec_text} serves a {spec.name} that does not match the "
                                              f"pinned MNIST content: {rec.get('detail', '')}")
                if rec["status"] == "unreachable":  # one failed connection says enough about this mirror tonight
                    files.update({rest.name: {"status": "unreachable", "detail": rec["detail"], "tried": False}
                                  for rest in FILES[j + 1:]})
                    break
            result["mirrors"][str(spec_text)] = {
                "files": files, "seconds": round(time.monotonic() - started, 3),
                "serves_all": all(files[f.name]["status"] in SERVING for f in FILES)}
    for name, servers in result["served"].items():
        if not servers:
            result["failures"].append(f"no configured mirror serves a verified {name}")
    progress(1.0, f"{sum(m['serves_all'] for m in result['mirrors'].values())} of {len(mirror_specs)} "
                  "mirrors serve all four verified files")
    return result


def health_changes(before: dict[str, Any] | None, after: dict[str, Any]) -> list[str]:
    """Sentences naming every mirror whose status for a file changed between two checks."""
    if not before:
        return []
    changes = []
    for spec_text in after.get("checked", sorted(after["mirrors"])):
        mirror = after["mirrors"][spec_text]
        old_files = before.get("mirrors", {}).get(spec_text, {}).get("files")
        if old_files is None:
            changes.append(f"{spec_text}: new mirror")
            continue
        for name, rec in mirror["files"].items():
            old = old_files.get(name, {}).get("status")
            new = rec["status"]
            if old != new and {old, new} != {"verified", "unchanged"}:
                changes.append(f"{spec_text} {name}: {old} -> {new}")
    changes.extend(f"{spec}: no longer configured" for spec in before.get("mirrors", {})
                   if spec not in after["mirrors"])
    return changes
