"""Mirrors: where the MNIST files may be had, as configured, and where one file is on each.

A mirror is an http(s):// URL, a ``file://`` URL or a local directory (a
relative one is taken relative to the current directory, so the copy bundled
in the repository works offline).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse


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
