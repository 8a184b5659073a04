"""How many cores a task's engine work may use when several Luigi workers share the machine."""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator

import luigi
import luigi.interface

log = logging.getLogger("luigi-interface")


def worker_threads() -> int | None:
    """BLAS threads for one task: the cores split evenly among this machine's Luigi worker processes
    (``--workers``, ``[core] workers``), at least 1; None when OPENBLAS_NUM_THREADS or
    OMP_NUM_THREADS is set, which is the user's choice and stands."""
    from pipeline.nn.kernels.parallel import threads_per_process, threads_set_by_user

    if threads_set_by_user() is not None:
        return None
    return threads_per_process(luigi.interface.core().workers)


@contextmanager
def worker_share_of_cores(task_name: str) -> Iterator[None]:
    """Run the block with the engine (OpenBLAS and its own loops) on :func:`worker_threads` threads.

    Why: each worker process's OpenBLAS starts one thread per core, so ``--workers 2`` on two
    cores ran four busy threads, and each GEMM call waited for a thread descheduled by the other
    worker (the README's ensemble timings). One thread each keeps every core busy with one.
    """
    from pipeline.nn.kernels.parallel import limited_to, usable_cores

    threads = worker_threads()
    if threads is None:
        yield
        return
    log.info("%s: %d BLAS thread(s) (%d Luigi worker(s) on %d cores)", task_name, threads,
             luigi.interface.core().workers, usable_cores())
    with limited_to(threads):
        yield
