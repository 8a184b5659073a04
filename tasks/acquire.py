"""FetchMNIST: the four verified MNIST ``.gz`` files and a manifest saying where each came from."""
from __future__ import annotations

from pathlib import Path

import luigi

from tasks.base import ReportsProgress
from tasks.config import data_path

MANIFEST = "manifest.json"


class FetchMNIST(ReportsProgress, luigi.Task):
    """Write ``data_dir/raw/mnist/{manifest.json, <the four .gz files>}``.

    The path is fixed rather than hashed from the parameters: every mirror must
    deliver the same content (checked by sha256), so none of the parameters
    changes the result and all are insignificant for the task id.
    """

    mirrors = luigi.ListParameter(
        significant=False,
        description="ordered mirrors: http(s):// URLs, file:// URLs or directories (relative to the "
                    "current directory); default in luigi.cfg [FetchMNIST]",
    )
    connect_timeout = luigi.FloatParameter(default=5.0, significant=False, description="seconds")
    read_timeout = luigi.FloatParameter(default=30.0, significant=False, description="seconds without a byte")
    retries = luigi.IntParameter(default=3, significant=False,
                                 description="retries per request (5xx, 429, read errors, interruptions)")
    backoff_factor = luigi.FloatParameter(default=0.5, significant=False,
                                          description="exponential backoff base in seconds")
    lock_timeout = luigi.FloatParameter(default=3600.0, significant=False,
                                        description="seconds to wait while another run downloads into the "
                                                    "same data directory")

    def output_dir(self) -> Path:
        return data_path("raw", "mnist")

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(str(self.output_dir() / MANIFEST))

    def complete(self) -> bool:
        """Done when the manifest exists and every file it lists is there with its recorded size."""
        import json

        out = Path(self.output().path)
        try:
            manifest = json.loads(out.read_text())
            return all((out.parent / name).stat().st_size == rec["bytes"] for name, rec in manifest.items())
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return False

    def run(self):
        from pipeline import store
        from pipeline.acquire.fetch import FetchOptions, fetch_all

        out = Path(self.output().path)
        previous = store.read_json(out) if out.exists() else None
        options = FetchOptions(self.connect_timeout, self.read_timeout, self.retries, self.backoff_factor,
                               self.lock_timeout)
        manifest = fetch_all(out.parent, list(self.mirrors), options, previous=previous, progress=self.progress)
        store.write_json(out, manifest)  # last: the manifest marks completion

