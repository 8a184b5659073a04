"""A NumPy CNN engine (float32, NCHW): layers, im2col kernels, losses, optimizers, models.

Typical use::

    from pipeline.nn import build_model, preset_spec, SoftmaxCrossEntropy, Adam
    model = build_model(preset_spec("simple"), (1, 28, 28), np.random.default_rng(0))
"""
from pipeline.nn.losses import SoftmaxCrossEntropy, softmax
from pipeline.nn.model import (PRESETS, Sequential, build_model, load_model, preset_spec,
                               save_model)
from pipeline.nn.optim import SGD, Adam, make_schedule

__all__ = ["PRESETS", "Sequential", "build_model", "load_model", "preset_spec", "save_model",
           "SoftmaxCrossEntropy", "softmax", "SGD", "Adam", "make_schedule"]
