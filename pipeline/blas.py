"""Which of OpenBLAS's GEMM kernels NumPy runs on: chosen before NumPy loads it.

OpenBLAS (as bundled with NumPy's wheels) picks its kernels by CPU when it loads. On AMD Zen 4
(family 25 with AVX-512) it picks its AVX-512 "SkylakeX" kernels, but Zen 4 executes AVX-512 as
two 256-bit halves, and OpenBLAS's AVX2 "Haswell" kernels ran this engine's GEMMs faster there.
Measured on a 2-core Zen 4 (EPYC, family 25 model 17), OpenBLAS 0.3.31, medians of 20:

* sgemm 32x400 @ 400x6400 (twoconv's second conv): 2.14 ms against 2.54 (1 thread),
  1.00 ms against 1.13 (2 threads); 1024x1024x1024: 106 against 98 GFLOPS (1 thread);
* a whole training step, forward and backward (1 thread, batch 100): twoconv 14.5-16.8 ms
  against 15.6-17.0, deep 80-84 ms against 89-91.

The choice goes through OpenBLAS's own switch, the ``OPENBLAS_CORETYPE`` environment variable,
which it reads once, when it loads: so :func:`choose_gemm_kernels` must run before NumPy is
imported, which is why this module imports nothing but the standard library and
``pipeline/__init__.py`` calls it first. A value the user set is never overridden, and on any
other CPU nothing is set. What OpenBLAS ended up with is recorded in every manifest
(provenance ``blas[].architecture``).
"""
from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

CORETYPE_VARIABLE = "OPENBLAS_CORETYPE"
ZEN4_CORETYPE = "Haswell"  # OpenBLAS's AVX2 kernels; see the module docstring for the measurements
CPUINFO = "/proc/cpuinfo"


def preferred_coretype(cpuinfo: str) -> str | None:
    """The OpenBLAS core type to ask for on the CPU that ``cpuinfo`` (the text of /proc/cpuinfo)
    describes, or None to leave OpenBLAS's own choice. Only Zen 4 (AMD, family 25, AVX-512) gets
    one: Zen 3 (family 25 without AVX-512) already runs the AVX2 kernels, and Zen 5 (family 26)
    executes AVX-512 at full width, where the measurement above does not apply."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            break  # the first processor's block describes them all
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    flags = fields.get("flags", "").split()
    if fields.get("vendor_id") == "AuthenticAMD" and fields.get("cpu family") == "25" and "avx512f" in flags:
        return ZEN4_CORETYPE
    return None


def choose_gemm_kernels(environ: MutableMapping[str, str] = os.environ, loaded: frozenset | None = None,
                        cpuinfo_path: str = CPUINFO) -> str | None:
    """Set ``OPENBLAS_CORETYPE`` in ``environ`` to :func:`preferred_coretype`'s choice; return what
    was set, or None when nothing was: the variable is already set (the user's choice stands),
    NumPy is already loaded (``loaded``: the imported module names, by default ``sys.modules``; too
    late, OpenBLAS has chosen), the CPU needs no choice, or its description cannot be read."""
    loaded = frozenset(sys.modules) if loaded is None else loaded
    if CORETYPE_VARIABLE in environ or "numpy" in loaded:
        return None
    try:
        with open(cpuinfo_path, encoding="utf-8", errors="replace") as f:
            coretype = preferred_coretype(f.read())
    except OSError:  # not Linux, or no /proc: keep OpenBLAS's choice
        return None
    if coretype is not None:
        environ[CORETYPE_VARIABLE] = coretype
    return coretype
