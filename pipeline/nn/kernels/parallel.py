"""Run a kernel's memory-bound loops on every core: split an axis into disjoint parts,
one per thread.

Why: OpenBLAS runs each GEMM on all cores, but NumPy's copies and elementwise
passes (im2col, col2im, pooling masks) run on one; with two cores they become
half of a training step. NumPy releases the GIL inside large copies and ufunc
loops, so plain threads run them side by side. Each part writes only its own
slice of the output (e.g. its own channels), so the result is the same, bit for
bit, whatever the number of threads.
"""
from __future__ import annotations

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator

# Split only loops over at least 8M elements (32 MB of float32). Waking a worker thread is
# cheap on an idle core but can take a scheduler time slice (~16 ms measured) on a busy
# machine: there, splitting seed-keras's 90 MB col2im halved it (83 -> 41 ms) while
# splitting twoconv's 10 MB im2col made it 9x slower (2 -> 18 ms).
MIN_ITEMS = 1 << 23


THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")  # what OpenBLAS reads, in its order


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_set_by_user() -> int | None:
    """The BLAS thread count set in the environment (OPENBLAS_NUM_THREADS, else OMP_NUM_THREADS), or None."""
    for var in THREAD_VARIABLES:
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None


def _thread_count() -> int:
    """Threads to use: what OpenBLAS is told to use (OPENBLAS_NUM_THREADS), else the usable cores, at most 4."""
    return min(threads_set_by_user() or usable_cores(), 4)


THREADS = _thread_count()
_pool: ThreadPoolExecutor | None = None


def _forget_pool() -> None:
    """In a forked child (Luigi's worker processes) the parent's threads do not exist: start afresh."""
    global _pool
    _pool = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def threads_per_process(processes: int, cores: int | None = None) -> int:
    """Threads for each of ``processes`` processes that compute side by side on this machine's
    ``cores`` (default: :func:`usable_cores`): an even share, at least 1. Two Luigi workers on
    two cores get one each: each worker's OpenBLAS otherwise starts a thread per core, and N
    workers run N times as many threads as cores, which wait on each other's time slices."""
    return max(1, (usable_cores() if cores is None else cores) // max(1, processes))


@contextlib.contextmanager
def limited_to(threads: int) -> Iterator[None]:
    """Run the block with OpenBLAS (threadpoolctl) and this module's loops limited to ``threads``.
    Restores both afterwards. The engine's kernel choices read :data:`THREADS` at call time."""
    from threadpoolctl import threadpool_limits

    global THREADS
    saved = THREADS
    with threadpool_limits(limits=threads, user_api="blas"):
        THREADS = min(threads, 4)
        try:
            yield
        finally:
            THREADS = saved


def split_run(fn: Callable[[int, int], None], n: int, items: int) -> None:
    """Call ``fn(lo, hi)`` over disjoint ranges covering 0..n, in parallel when ``items``
    (the elements the whole call touches) make it worth it; in the calling thread otherwise.

    ``fn`` must write only what range lo..hi owns. The first exception is re-raised.
    """
    parts = min(THREADS, n) if items >= MIN_ITEMS else 1
    if parts <= 1:
        fn(0, n)
        return
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=THREADS - 1, thread_name_prefix="nn-kernel")
    bounds = [n * p // parts for p in range(parts + 1)]
    futures = [_pool.submit(fn, bounds[p], bounds[p + 1]) for p in range(1, parts)]
    try:
        fn(bounds[0], bounds[1])
    finally:
        for f in futures:
            f.result()


def split_run_ref(fn: Callable[[int, int], None], n: int, items: int) -> None:
    """Slow reference of :func:`split_run`: the whole range in one call, in this thread."""
    fn(0, n)
