"""Every layer's backward against central finite differences, in float64.

For a layer f and a fixed random R, the scalar L = sum(f(x) * R) has
dL/dx = backward(R) and dL/dp = grads[p]. Central differences with h = 1e-6
in float64 agree with a correct analytic gradient to ~1e-8 relative error;
a wrong one (missing term, transposed index) is off by O(1).
"""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.nn import layers as L
from pipeline.nn.losses import SoftmaxCrossEntropy
from pipeline.nn.model import build_model

H = 1e-6
TOL = 1e-6


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    """Relative error; gradients that are truly zero (a conv bias before BatchNorm)
    compare against a 1e-3 floor: finite-difference noise is ~1e-10, a wrong gradient is O(1e-2+)."""
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-3))


def numeric_grad(f, arr: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Central differences of scalar f() w.r.t. the flat entries ``idx`` of ``arr`` (perturbed in place)."""
    flat = arr.reshape(-1)
    g = np.empty(len(idx))
    for k, i in enumerate(idx):
        old = flat[i]
        flat[i] = old + H
        fp = f()
        flat[i] = old - H
        fm = f()
        flat[i] = old
        g[k] = (fp - fm) / (2 * H)
    return g


def sample(arr: np.ndarray, rng, n: int = 40) -> np.ndarray:
    return rng.choice(arr.size, size=min(n, arr.size), replace=False)


def check_layer(layer, x: np.ndarray, rng, training: bool = True, reset=None):
    """Compare dL/dx and dL/dparams of ``layer`` with finite differences."""
    def loss():
        if reset:
            reset()
        return float(np.sum(layer.forward(x, training) * R))

    if reset:
        reset()
    out = layer.forward(x, training)
    R = rng.standard_normal(out.shape)
    dx = layer.backward(R)
    analytic = {k: v.copy() for k, v in layer.grads.items()}
    idx = sample(x, rng)
    assert rel_err(np.ascontiguousarray(dx).reshape(-1)[idx], numeric_grad(loss, x, idx)) < TOL
    for name, p in layer.params.items():
        idx = sample(p, rng)
        assert rel_err(analytic[name].reshape(-1)[idx], numeric_grad(loss, p, idx)) < TOL, name


@pytest.mark.parametrize("stride,pad,kernel", [(1, 0, 3), (2, 1, 3), (1, 2, 5), (2, 0, (2, 3))])
def test_conv2d_gradients(stride, pad, kernel):
    rng = np.random.default_rng(stride * 10 + pad)
    layer = L.Conv2D(3, 4, kernel, stride, pad, "he", rng, np.float64)
    layer.params["b"][:] = rng.standard_normal(4)
    check_layer(layer, rng.standard_normal((2, 3, 7, 8)), rng)


def test_dense_gradients():
    rng = np.random.default_rng(1)
    layer = L.Dense(6, 5, "glorot", rng, np.float64)
    layer.params["b"][:] = rng.standard_normal(5)
    check_layer(layer, rng.standard_normal((4, 6)), rng)


def test_relu_gradients():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 2, 4, 5))
    x[np.abs(x) < 1e-3] = 0.5  # keep every point away from the kink
    check_layer(L.ReLU(), x, rng)


@pytest.mark.parametrize("size,stride", [(2, 2), (3, 2), (2, 1)])
def test_maxpool_gradients(size, stride):
    rng = np.random.default_rng(3)
    # distinct values spaced far beyond H so no perturbation changes an argmax
    x = rng.permutation(2 * 3 * 7 * 7).reshape(2, 3, 7, 7) * 0.01
    check_layer(L.MaxPool2D(size, stride), x.astype(np.float64), rng)


def test_flatten_gradients():
    rng = np.random.default_rng(4)
    check_layer(L.Flatten(), rng.standard_normal((2, 3, 4, 5)), rng)


def test_dropout_gradients_and_scaling():
    rng = np.random.default_rng(5)
    layer = L.Dropout(0.4, np.random.default_rng(9))

    def reset():  # the same mask on every evaluation
        layer.rng = np.random.default_rng(9)

    x = rng.standard_normal((3, 2, 6, 6))
    check_layer(layer, x, rng, reset=reset)
    reset()
    y = layer.forward(np.ones((200, 4, 10, 10)), training=True)
    kept = y != 0
    assert set(np.unique(y)) == {0.0, 1 / 0.6}
    assert abs(kept.mean() - 0.6) < 0.01  # 80,000 draws: sd of the mean ~0.0017
    np.testing.assert_array_equal(layer.forward(x, training=False), x)  # inference is the identity


@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (8, 7)])
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_gradients(shape, training):
    rng = np.random.default_rng(6)
    C = shape[1]
    layer = L.BatchNorm(C, dtype=np.float64)
    layer.params["gamma"][:] = rng.uniform(0.5, 2, C)
    layer.params["beta"][:] = rng.standard_normal(C)
    layer.buffers["running_mean"][:] = rng.standard_normal(C)
    layer.buffers["running_var"][:] = rng.uniform(0.5, 2, C)
    saved = {k: v.copy() for k, v in layer.buffers.items()}

    def reset():  # running statistics move on every training forward; keep them fixed for the check
        for k, v in saved.items():
            layer.buffers[k][...] = v

    check_layer(layer, rng.standard_normal(shape) * 3 + 1, rng, training=training, reset=reset)


def test_batchnorm_training_normalises_and_updates_running_stats():
    rng = np.random.default_rng(7)
    layer = L.BatchNorm(3, momentum=0.1, dtype=np.float64)
    x = rng.standard_normal((16, 3, 4, 4)) * np.array([1, 2, 3])[None, :, None, None] + 5
    y = layer.forward(x, training=True)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1, rtol=1e-4)
    np.testing.assert_allclose(layer.buffers["running_mean"], 0.1 * x.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(layer.buffers["running_var"], 0.9 + 0.1 * x.var(axis=(0, 2, 3), ddof=1), rtol=1e-12)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_softmax_cross_entropy_gradient(smoothing):
    rng = np.random.default_rng(8)
    logits = rng.standard_normal((6, 10)) * 3
    labels = rng.integers(0, 10, 6)
    loss = SoftmaxCrossEntropy(smoothing)
    value = loss.forward(logits, labels)
    # the definition, written out: mean over rows of -sum_k target_k * log softmax_k
    logp = logits - logits.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    target = np.full((6, 10), smoothing / 10)
    target[np.arange(6), labels] += 1 - smoothing
    assert value == pytest.approx(-(target * logp).sum() / 6, rel=1e-12)
    d = loss.backward()
    idx = np.arange(logits.size)
    num = numeric_grad(lambda: loss.forward(logits, labels), logits, idx)
    assert rel_err(d.reshape(-1), num) < TOL


def test_whole_model_gradients_including_input():
    """A small net using every layer type: parameter and input gradients through the whole stack."""
    spec = [
        {"type": "conv", "filters": 3, "kernel": 3, "pad": 1},
        {"type": "batchnorm"},
        {"type": "relu"},
        {"type": "maxpool", "size": 2},
        {"type": "conv", "filters": 4, "kernel": 2, "stride": 2, "init": "glorot"},
        {"type": "relu"},
        {"type": "flatten"},
        {"type": "dropout", "rate": 0.3},
        {"type": "dense", "units": 5},
    ]
    rng = np.random.default_rng(10)
    model = build_model(spec, (2, 9, 9), np.random.default_rng(0), dtype=np.float64)
    model.set_needs_input_grad(True)
    x = rng.standard_normal((3, 2, 9, 9))
    labels = rng.integers(0, 5, 3)
    ce = SoftmaxCrossEntropy()
    bn_state = {k: v.copy() for k, v in model.buffers().items()}

    def loss():
        model.rng.bit_generator.state = np.random.default_rng(4).bit_generator.state
        for k, v in bn_state.items():
            model.buffers()[k][...] = v
        return ce.forward(model.forward(x, training=True), labels)

    loss()
    dx = model.backward(ce.backward())
    grads = {k: v.copy() for k, v in model.gradients().items()}
    idx = sample(x, rng)
    assert rel_err(dx.reshape(-1)[idx], numeric_grad(loss, x, idx)) < TOL
    for name, p in model.parameters().items():
        idx = sample(p, rng, 15)
        assert rel_err(grads[name].reshape(-1)[idx], numeric_grad(loss, p, idx)) < TOL, name


@pytest.mark.parametrize("chunk_bytes", [256 << 10, 1, 4 * 16 * 9 * 7 * 4])  # one chunk / one channel / 4 of 6
@pytest.mark.parametrize("shape", [(16, 6, 9, 7), (50, 12)])
def test_batchnorm_float32_kernel_matches_the_textbook_reference(shape, chunk_bytes, monkeypatch):
    # the fast layer (fewer passes: a*dy + b*xm + c, a few channels at a time) against the step-by-step
    # chain rule in float64, on ReLU-like inputs with a large mean, the regime of seed-keras's
    # conv -> ReLU -> BatchNorm
    monkeypatch.setattr(L.BatchNorm, "CHUNK_BYTES", chunk_bytes)
    rng = np.random.default_rng(31)
    x = (np.maximum(rng.standard_normal(shape), 0) * 3 + 2).astype(np.float32)
    dout = rng.standard_normal(shape).astype(np.float32)
    layer = L.BatchNorm(shape[1])
    layer.params["gamma"][...] = rng.uniform(0.5, 1.5, shape[1])
    layer.params["beta"][...] = rng.standard_normal(shape[1])
    y = layer.forward(x, training=True)
    dx = layer.backward(dout)
    ry, rdx, rdgamma, rdbeta = L.batchnorm_train_ref(x.astype(np.float64), layer.params["gamma"].astype(np.float64),
                                                     layer.params["beta"].astype(np.float64), layer.eps,
                                                     dout.astype(np.float64))
    assert y.dtype == dx.dtype == np.float32
    np.testing.assert_allclose(y, ry, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dx, rdx, rtol=1e-3, atol=1e-4 * np.abs(rdx).max())
    np.testing.assert_allclose(layer.grads["gamma"], rdgamma, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(layer.grads["beta"], rdbeta, rtol=1e-4, atol=1e-3)
