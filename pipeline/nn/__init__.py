"""A NumPy CNN engine (float32, NCHW): layers, kernels, losses, optimizers, models, training.

It stands alone: nothing here imports the rest of ``pipeline``. Files, augmentation
and progress display belong to the caller, who passes them in (see :func:`train`).

Typical use::

    import numpy as np
    from pipeline.nn import Adam, SoftmaxCrossEntropy, build_model, preset_spec
    model = build_model(preset_spec("simple"), (1, 28, 28), np.random.default_rng(0))
    ce, opt = SoftmaxCrossEntropy(), Adam(1e-3)
    loss = ce.forward(model.forward(x, training=True), y)   # x (N, 1, 28, 28) float32, y (N,) int
    model.backward(ce.backward())
    opt.step(model.parameters(), model.gradients())

Modules: kernels/ (one per algorithm, each fast kernel beside its reference),
layers, fusion (which layers run as one kernel), presets (architectures as data),
spec (checking specs, building layers), model (Sequential, build_model),
serialize (a model to and from a plain dict), losses, optim, averaging (a moving
average of the weights), digest, train.

Determinism: the same seed gives bit-identical initial parameters, and training
is bit-identical from run to run for a given BLAS thread count (OPENBLAS_NUM_THREADS,
or under Luigi each worker's share of the cores, tasks/cores.py) and OpenBLAS kernel
type (pipeline/blas.py): another thread count can pick another conv kernel
(fusion.prefer_rows) and change the last bits of some GEMM sums.

Speed: conv -> ReLU -> 2x2 max-pool runs fused (fusion.py); activations live in
batch-innermost memory so NumPy's copies run in long contiguous stretches
(kernels/layout.py); the first layer skips its input gradient. With single-threaded
BLAS, large convs run row-blocked (kernels/blocked.py: columns built, multiplied and
finished in cache, input gradients without col2im).
``benchmarks/engine_vs_torch.py`` compares with PyTorch on the same network.
"""
from pipeline.nn.averaging import ExponentialMovingAverage
from pipeline.nn.digest import sha256_arrays
from pipeline.nn.losses import SoftmaxCrossEntropy, softmax
from pipeline.nn.model import Sequential, build_model
from pipeline.nn.optim import OPTIMIZERS, SCHEDULES, SGD, Adam, make_schedule, onecycle
from pipeline.nn.presets import PRESETS, preset_spec
from pipeline.nn.serialize import model_from_state, model_state
from pipeline.nn.train import TrainConfig, train

__all__ = ["build_model", "preset_spec", "PRESETS", "Sequential", "model_state", "model_from_state",
           "sha256_arrays", "SoftmaxCrossEntropy", "softmax", "SGD", "Adam", "make_schedule", "onecycle",
           "ExponentialMovingAverage", "OPTIMIZERS", "SCHEDULES", "TrainConfig", "train"]
