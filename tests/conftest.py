"""Shared fixtures: where the real MNIST lives, and an isolated data/report directory."""
from __future__ import annotations

import contextlib
import os

# First: importing pipeline picks OpenBLAS's kernels for this CPU (pipeline/blas.py), which must happen
# before NumPy loads. Tests that recompute in this process what a `luigi` subprocess computed, bit for
# bit, need the same kernels the subprocess gets.
import pipeline  # noqa: F401  isort: skip

from pathlib import Path

import luigi
import luigi.configuration
import pytest

REPO = Path(__file__).resolve().parents[1]
MNIST_DIR = REPO / "data" / "mirror" / "mnist"


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The bundled real MNIST .gz files (skip when the checkout lacks them)."""
    if not (MNIST_DIR / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"the bundled real MNIST is missing from {MNIST_DIR}; restore it with "
                    "`git checkout -- data/mirror/mnist`")
    return MNIST_DIR


@contextlib.contextmanager
def storage_at(root: Path):
    """Point [storage] data_dir/report_dir under ``root`` while the block runs."""
    config = luigi.configuration.get_config()
    saved = {k: config.get("storage", k, None) for k in ("data_dir", "report_dir")}
    config.set("storage", "data_dir", str(root / "data"))
    config.set("storage", "report_dir", str(root / "reports"))
    cwd = os.getcwd()
    os.chdir(REPO)  # the bundled mirror path in luigi.cfg is relative to the repo
    try:
        yield root
    finally:
        os.chdir(cwd)
        for key, value in saved.items():
            if value is None:
                config.remove_option("storage", key)
            else:
                config.set("storage", key, value)


@pytest.fixture
def isolated_storage(tmp_path):
    """Point [storage] data_dir/report_dir at tmp_path for the duration of a test."""
    with storage_at(tmp_path):
        yield tmp_path


SMALL_RUN = dict(train_limit=3000, epochs=2, seed=7, preset="simple")


@pytest.fixture(scope="session")
def small_run(tmp_path_factory, mnist_dir):
    """Run the whole pipeline once on a small subset; yields (root, task)."""
    from tasks import RunPipeline

    root = tmp_path_factory.mktemp("e2e")
    with storage_at(root):
        task = RunPipeline(**SMALL_RUN)
        result = luigi.build([task], local_scheduler=True, detailed_summary=True, log_level="WARNING")
    assert result.scheduling_succeeded, result.summary_text
    return root, task


