"""Luigi tasks of the MNIST pipeline. Entry point: ``luigi --module tasks RunPipeline``.

Each task is thin: parameters, requires, output, run. The work is in ``pipeline/``.
"""
from tasks.clean import CleanData
from tasks.evaluate import EvaluateCNN
from tasks.explore import ExploreData
from tasks.fetch import FetchMNIST
from tasks.prepare import PrepareData
from tasks.report import RenderReport
from tasks.run import RunPipeline
from tasks.train import TrainCNN

__all__ = ["FetchMNIST", "CleanData", "PrepareData", "ExploreData", "TrainCNN",
           "EvaluateCNN", "RenderReport", "RunPipeline"]
