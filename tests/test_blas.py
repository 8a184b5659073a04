"""The choice of OpenBLAS kernels (pipeline/blas.py): by CPU, never over the user's, only before NumPy."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.blas import CORETYPE_VARIABLE, ZEN4_CORETYPE, choose_gemm_kernels, preferred_coretype

REPO = Path(__file__).resolve().parents[1]


def cpuinfo(vendor: str, family: int, flags: str) -> str:
    """/proc/cpuinfo text of a two-processor machine (the second block differs, and must not matter)."""
    block = f"processor\t: {{n}}\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: 17\nflags\t\t: {flags}\n"
    return block.format(n=0) + "\n" + block.format(n=1).replace(flags, "fpu") + "\n"


ZEN4 = cpuinfo("AuthenticAMD", 25, "fpu sse2 avx2 fma avx512f avx512bw avx512vl")


@pytest.mark.parametrize("text, expected", [
    (ZEN4, ZEN4_CORETYPE),
    (cpuinfo("AuthenticAMD", 25, "fpu sse2 avx2 fma"), None),  # Zen 3: already on the AVX2 kernels
    (cpuinfo("AuthenticAMD", 26, "fpu avx2 avx512f"), None),  # Zen 5: full-width AVX-512, not measured
    (cpuinfo("GenuineIntel", 6, "fpu avx2 avx512f"), None),  # Intel AVX-512: its own kernels fit
    ("", None),
])
def test_preferred_coretype_is_haswell_only_on_zen4(text, expected):
    assert preferred_coretype(text) == expected


def test_choose_sets_the_variable_only_before_numpy_and_never_over_the_user(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(ZEN4)
    env: dict[str, str] = {}
    assert choose_gemm_kernels(env, frozenset({"os"}), str(info)) == ZEN4_CORETYPE
    assert env == {CORETYPE_VARIABLE: ZEN4_CORETYPE}
    user = {CORETYPE_VARIABLE: "SkylakeX"}
    assert choose_gemm_kernels(user, frozenset(), str(info)) is None
    assert user == {CORETYPE_VARIABLE: "SkylakeX"}  # the user's choice stands
    late: dict[str, str] = {}
    assert choose_gemm_kernels(late, frozenset({"numpy"}), str(info)) is None  # OpenBLAS has chosen
    assert late == {}
    assert choose_gemm_kernels(late, frozenset(), str(tmp_path / "missing")) is None  # no /proc
    assert late == {}


def _loaded_kernels(code: str, **env: str) -> set[str]:
    """The OpenBLAS core types a fresh interpreter ends up with after running ``code``."""
    environ = {k: v for k, v in os.environ.items() if k != CORETYPE_VARIABLE}
    environ.update(env)
    probe = code + "; import numpy, json, threadpoolctl; print(json.dumps([i.get('architecture') for i in " \
                   "threadpoolctl.threadpool_info() if i.get('internal_api') == 'openblas']))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=environ, capture_output=True, text=True,
                         check=True, timeout=120).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def test_importing_the_tasks_picks_the_kernels_on_this_machine():
    """What `luigi --module tasks` gets: the tasks package imports pipeline before NumPy."""
    try:
        wanted = preferred_coretype(Path("/proc/cpuinfo").read_text())
    except OSError:
        pytest.skip("no /proc/cpuinfo on this machine")
    if wanted is None:
        pytest.skip("this CPU needs no kernel choice (not AMD Zen 4); the choice is tested on texts above")
    assert _loaded_kernels("import tasks") == {wanted}


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="Sandybridge kernels are x86-64 only")
def test_a_coretype_the_user_set_reaches_openblas():
    assert _loaded_kernels("import pipeline", **{CORETYPE_VARIABLE: "Sandybridge"}) == {"Sandybridge"}


def test_this_test_process_runs_the_kernels_the_tasks_get():
    """conftest imports pipeline first, so tests that recompute a subprocess's results bit for bit
    (the ensemble's member probabilities) run the same OpenBLAS kernels as the `luigi` subprocess."""
    import numpy  # noqa: F401  (threadpoolctl sees only loaded libraries)
    from threadpoolctl import threadpool_info

    here = {i.get("architecture") for i in threadpool_info() if i.get("internal_api") == "openblas"}
    assert here == _loaded_kernels("import tasks")
