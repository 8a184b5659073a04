"""FetchMNIST: the four verified MNIST ``.gz`` files and a manifest saying where each came from."""
from __future__ import annotations

import logging
from pathlib import Path

import luigi

from tasks.config import data_path

MANIFEST = "manifest.json"


class FetchMNIST(luigi.Task):
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
        from pipeline import acquire, store
        from pipeline.acquire.files import FILES

        _show_acquire_log()
        out = Path(self.output().path)
        previous = store.read_json(out) if out.exists() else None
        position = {f.name: i for i, f in enumerate(FILES)}

        def on_progress(name: str, done: int, total: int | None, rate: float) -> None:
            from pipeline.acquire.http import format_progress

            if self.set_progress_percentage is None:  # run() called outside a Luigi worker
                return
            if total:
                self.set_progress_percentage(round(100.0 * (position[name] + done / total) / len(FILES), 1))
            self.set_status_message(f"file {position[name] + 1}/{len(FILES)}: {format_progress(name, done, total, rate)}")

        options = acquire.FetchOptions(self.connect_timeout, self.read_timeout, self.retries, self.backoff_factor)
        manifest = acquire.fetch_all(out.parent, list(self.mirrors), options, previous=previous,
                                     on_progress=on_progress)
        store.write_json(out, manifest)  # last: the manifest marks completion
        if self.set_progress_percentage is None:
            return
        self.set_progress_percentage(100)
        self.set_status_message("verified: " + ", ".join(f"{n} from {r['mirror']}" for n, r in manifest.items()))


def _show_acquire_log() -> None:
    """Luigi only configures its own loggers; show ours (attempts, resumes) unless the user configured logging."""
    logger = logging.getLogger("pipeline.acquire")
    if not logger.hasHandlers():
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
