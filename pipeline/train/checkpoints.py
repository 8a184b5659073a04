"""Per-epoch training checkpoints on disk, tied to the run that wrote them.

:class:`Checkpoints` is the checkpoint store :func:`pipeline.nn.train` saves to
and resumes from; :func:`run_fingerprint` names a run (model, settings, data) so
that a checkpoint of another run is never resumed from.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import store
from pipeline.nn.digest import sha256_arrays

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1


class Checkpoints:
    """Per-epoch checkpoints ``epoch-0007.pkl`` in one directory, written atomically.

    Only the newest ``keep`` (two) are kept: the older one is a spare should the
    newest be unreadable. The directory's integrity manifest is rewritten after every
    save, and a checkpoint is unpickled only when its sha256 matches it (and then only
    as plain data): a checkpoint someone changed is ignored, never loaded. A checkpoint
    whose fingerprint differs from the current run (other data, configuration or
    model) is ignored too, never resumed from.
    """

    PATTERN = re.compile(r"^epoch-(\d{4,})\.pkl$")

    def __init__(self, directory: str | os.PathLike, fingerprint: str, keep: int = 2) -> None:
        self.directory = Path(directory)
        self.fingerprint = fingerprint
        self.keep = keep

    def path(self, epoch: int) -> Path:
        return self.directory / f"epoch-{epoch:04d}.pkl"

    def existing(self) -> list[tuple[int, Path]]:
        """(epoch, path) of every checkpoint file present, oldest first."""
        if not self.directory.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.directory.iterdir() if (m := self.PATTERN.match(p.name))]
        return sorted(found)

    def save(self, epoch: int, state: dict[str, Any]) -> Path:
        """Write ``state`` as the checkpoint of ``epoch``, then drop all but the newest ``keep``."""
        path = self.path(epoch)
        store.write_pickle(path, {**state, "version": CHECKPOINT_VERSION, "fingerprint": self.fingerprint})
        for old_epoch, old in self.existing()[:-self.keep]:
            old.unlink(missing_ok=True)
        store.write_manifest(self.directory, {"kind": "training checkpoints", "fingerprint": self.fingerprint})
        return path

    def load_latest(self) -> dict[str, Any] | None:
        """The newest readable checkpoint of this run, or None (none yet, or they belong to another run)."""
        for epoch, path in reversed(self.existing()):
            try:
                state = store.read_verified_pickle(path)
            except (store.IntegrityError, OSError) as exc:
                log.warning("ignoring checkpoint %s, which cannot be trusted: %s", path, exc)
                continue
            if state.get("version") != CHECKPOINT_VERSION or state.get("fingerprint") != self.fingerprint:
                log.warning("ignoring checkpoint %s: it belongs to another run (data, model or settings differ)", path)
                return None
            log.info("resuming from checkpoint %s", path)
            return state
        return None


def run_fingerprint(spec: Any, config: Any, arrays: dict[str, np.ndarray]) -> str:
    """sha256 over the model spec, the result-changing settings (``config.fingerprint_fields()``) and the data."""
    head = json.dumps({"spec": store.to_jsonable(spec), "config": config.fingerprint_fields()},
                      sort_keys=True, default=str)
    return hashlib.sha256(head.encode() + sha256_arrays(arrays).encode()).hexdigest()


def run_checkpoints(directory: str | os.PathLike, spec: Any, config: Any, x_train: np.ndarray,
                    y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray) -> Checkpoints:
    """The checkpoint store in ``directory`` for training ``spec`` with ``config`` on these splits."""
    fingerprint = run_fingerprint(spec, config, {"x_train": x_train, "y_train": y_train,
                                                 "x_val": x_val, "y_val": y_val})
    return Checkpoints(directory, fingerprint)
