"""Luigi tasks of the MNIST pipeline. Entry point: ``luigi --module tasks RunPipeline``.

One module per stage, each a thin task (parameters, requires, output, a run()
of a few lines) over the package of the same name in ``pipeline/``:
``tasks/acquire.py`` -> ``pipeline/acquire/``, ``tasks/data.py`` -> ``pipeline/data/``, ...
"""
from tasks.acquire import FetchMNIST
from tasks.data import CleanData, PrepareData
from tasks.evaluate import EvaluateCNN
from tasks.luigi_config import check_configuration
from tasks.explore import ExploreData
from tasks import notify  # noqa: F401  (registers the failure webhook)
from tasks.report import RenderReport, RunIndex
from tasks.nightly import MirrorHealth, Nightly
from tasks.run import RunPipeline
from tasks.train import TrainCNN

__all__ = ["FetchMNIST", "CleanData", "PrepareData", "ExploreData", "TrainCNN",
           "EvaluateCNN", "RenderReport", "RunIndex", "RunPipeline", "MirrorHealth", "Nightly"]

check_configuration()  # Luigi's recommended exit codes wherever luigi runs; a warning when luigi.cfg was not read
