"""Provenance: the software and checkout an artifact was made with, recorded in every manifest."""
from __future__ import annotations

import functools
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

LIBRARIES = ("numpy", "scipy", "pandas", "luigi", "jinja2", "matplotlib")  # scipy: the engine's FFT convolution


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def blas() -> list[dict[str, Any]]:
    """The BLAS libraries loaded (NumPy's, and SciPy's once imported), their versions and thread counts
    (threadpoolctl), and which package ships each ("library": the directory it is in, e.g. numpy.libs)."""
    import numpy  # noqa: F401  (loads the BLAS that threadpoolctl then inspects)
    from threadpoolctl import threadpool_info

    keep = ("internal_api", "version", "num_threads", "threading_layer", "architecture")
    return [{**{k: info.get(k) for k in keep}, "library": Path(info.get("filepath") or "").parent.name}
            for info in threadpool_info() if info.get("user_api") == "blas"]


def git_state(directory: str | os.PathLike) -> dict[str, Any] | None:
    """{"commit", "dirty"} of the git checkout holding ``directory``, or None outside one."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=directory, capture_output=True, text=True, check=True,
                              timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def environment() -> dict[str, Any]:
    """Python and library versions, BLAS, and the git state of the code.

    BLAS is read at each call, because its thread count is what the calling block runs on: a task
    limits it to its worker's share of the cores (tasks/cores.py), and the engine's kernels, and so a
    model's bits, depend on it (the Nightly recheck retrains on the count recorded here). The rest is
    computed once per process (:func:`_process_environment`).
    """
    return {**_process_environment(), "blas": blas()}


@functools.lru_cache(maxsize=1)
def _process_environment() -> dict[str, Any]:
    """What cannot change within a process: Python, library versions, platform, git state.

    The git state is that of the directory the package was imported from when it is a
    checkout (``pip install -e .``), else of the current directory (``pip install .`` run
    from a clone, as the README does), recorded with the directory it describes.
    """
    package_dir = Path(__file__).resolve().parents[2]
    code_dir = package_dir if (package_dir / ".git").exists() else Path.cwd()
    return {
        "python": platform.python_version(),
        "libraries": {name: _version(name) for name in LIBRARIES},
        "platform": platform.platform(),
        "git": git_state(code_dir),
        "code_dir": str(code_dir),
    }


def blas_threads(provenance: dict[str, Any]) -> int | None:
    """The thread count of NumPy's BLAS in an :func:`environment` record: the one the engine's matrix
    products run on (SciPy's, loaded later and perhaps after a limit was set, does no engine work).
    Records made before "library" was kept: the largest count; None if the record names no BLAS."""
    entries = [b for b in provenance.get("blas", []) if b.get("num_threads")]
    numpy_entries = [b for b in entries if str(b.get("library", "")).startswith("numpy")]
    counts = [b["num_threads"] for b in numpy_entries or entries]
    return max(counts) if counts else None
