"""A NumPy CNN engine (float32, NCHW): layers, im2col kernels, losses, optimizers, models.

Typical use::

    import numpy as np
    from pipeline.nn import Adam, SoftmaxCrossEntropy, build_model, preset_spec
    model = build_model(preset_spec("simple"), (1, 28, 28), np.random.default_rng(0))
    ce, opt = SoftmaxCrossEntropy(), Adam(1e-3)
    loss = ce.forward(model.forward(x, training=True), y)   # x (N, 1, 28, 28) float32, y (N,) int
    model.backward(ce.backward())
    opt.step(model.parameters(), model.gradients())

Determinism: the same seed gives bit-identical initial parameters, and training
is bit-identical from run to run for a given OPENBLAS_NUM_THREADS (a different
thread count can change the last bits of some GEMM sums).

Speed: conv -> ReLU -> 2x2 max-pool runs fused (conv.py); activations live in
CHWN memory so NumPy's copies run in long contiguous stretches; the first
layer skips its input gradient. ``benchmarks/engine_vs_torch.py`` compares
with PyTorch on the same network.
"""
from pipeline.nn.losses import SoftmaxCrossEntropy, softmax
from pipeline.nn.model import (PRESETS, Sequential, build_model, load_model, preset_spec,
                               save_model)
from pipeline.nn.optim import SGD, Adam, make_schedule

__all__ = ["PRESETS", "Sequential", "build_model", "load_model", "preset_spec", "save_model",
           "SoftmaxCrossEntropy", "softmax", "SGD", "Adam", "make_schedule"]
