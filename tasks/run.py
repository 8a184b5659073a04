"""RunPipeline: the single entry point, ``luigi --module tasks RunPipeline``."""
from __future__ import annotations

import luigi
from luigi.util import inherits

from tasks.report import RenderReport, RunIndex
from tasks.train import NeutralDefaults


@inherits(RenderReport)
class RunPipeline(NeutralDefaults, luigi.WrapperTask):
    """Fetch, clean, prepare, explore, train, evaluate, report and index the run; every parameter passes down.

    Common flags: ``--epochs``, ``--seed``, ``--train-limit N`` (first N training
    images only, for quick runs), ``--preset``, ``--ensemble K`` (K models with seeds seed … seed+K-1,
    their probabilities averaged; add ``--workers N`` to train N members at once). Mirrors:
    ``--FetchMNIST-mirrors``.
    """

    def requires(self):
        return self.clone(RunIndex)
