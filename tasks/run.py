"""RunPipeline: the single entry point, ``luigi --module tasks RunPipeline``."""
from __future__ import annotations

import luigi
from luigi.util import inherits

from tasks.report import RenderReport, RunIndex


@inherits(RenderReport)
class RunPipeline(luigi.WrapperTask):
    """Fetch, clean, prepare, explore, train, evaluate, report and index the run; every parameter passes down.

    Common flags: ``--epochs``, ``--seed``, ``--train-limit N`` (first N training
    images only, for quick runs), ``--preset``. Mirrors: ``--FetchMNIST-mirrors``.
    """

    def requires(self):
        return self.clone(RunIndex)
