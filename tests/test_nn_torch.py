"""The engine against PyTorch: same weights, same batch -> same logits, loss,
gradients and optimizer steps. Also proves that the benchmark's torch network
(benchmarks/engine_vs_torch.py) is the same network as the engine's."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (optional extra 'bench'); "
                                             "pip install torch==2.13.0 to compare with PyTorch")

from pipeline.nn import SGD, Adam, SoftmaxCrossEntropy, build_model, preset_spec  # noqa: E402

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "engine_vs_torch.py"


def _bench():
    spec = importlib.util.spec_from_file_location("engine_vs_torch", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


bench = _bench()


def test_loading_the_benchmark_leaves_the_environment_alone(monkeypatch):
    """It once set OPENBLAS_NUM_THREADS on import, so every `luigi` subprocess a later test started ran
    on that count instead of its worker's share of the cores."""
    import os

    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    before = dict(os.environ)
    _bench()
    assert dict(os.environ) == before


def no_dropout(spec):
    """Dropout masks cannot be shared with torch: compare those nets with rate 0."""
    return [dict(e, rate=0.0) if e["type"] == "dropout" else e for e in spec]


def compare(model, x, labels, rtol):
    net = bench.torch_model(model)
    net.train()
    ce = SoftmaxCrossEntropy()
    logits = model.forward(x, training=True)
    loss = ce.forward(logits, labels)
    model.backward(ce.backward())
    xt = torch.from_numpy(x.copy())
    out = net(xt)
    lt = torch.nn.functional.cross_entropy(out, torch.from_numpy(labels))
    lt.backward()
    np.testing.assert_allclose(logits, out.detach().numpy(), rtol=rtol, atol=rtol)
    assert loss == pytest.approx(lt.item(), rel=rtol)
    tparams = dict(net.named_parameters())
    # absolute slack scaled by the largest gradient: a conv bias before BatchNorm has a
    # true gradient of 0, and both sides return rounding noise there
    scale = max(float(p.grad.abs().max()) for p in tparams.values())
    for name, g in model.gradients().items():
        tname, transpose = bench.torch_param_name(model, name)
        tg = tparams[tname].grad.numpy()
        np.testing.assert_allclose(g, tg.T if transpose else tg, rtol=rtol, atol=rtol * scale, err_msg=name)
    tbuf = dict(net.named_buffers())
    for name, b in model.buffers().items():  # BatchNorm running statistics after one training step
        i, _, key = name.split(".")
        np.testing.assert_allclose(b, tbuf[f"{i}.{key}"].numpy(), rtol=rtol, atol=rtol)
    return net


@pytest.mark.parametrize("name", ["simple", "lenet5", "seed-torch", "seed-keras", "deep", "kaggle"])
def test_presets_match_torch_in_float64(name):
    rng = np.random.default_rng(0)
    model = build_model(no_dropout(preset_spec(name)), (1, 28, 28), np.random.default_rng(1), dtype=np.float64)
    x = rng.random((6, 1, 28, 28))
    compare(model, x, rng.integers(0, 10, 6), rtol=1e-9)


def test_strided_padded_conv_net_matches_torch_in_float32():
    spec = [
        {"type": "conv", "filters": 5, "kernel": 3, "stride": 2, "pad": 1},
        {"type": "relu"},
        {"type": "conv", "filters": 4, "kernel": [3, 2], "stride": 1, "pad": 2, "init": "glorot"},
        {"type": "batchnorm"},
        {"type": "maxpool", "size": 3, "stride": 2},
        {"type": "flatten"},
        {"type": "dense", "units": 12},
        {"type": "batchnorm"},
        {"type": "relu"},
        {"type": "dense", "units": 10},
    ]
    rng = np.random.default_rng(2)
    model = build_model(spec, (3, 15, 13), np.random.default_rng(3))
    compare(model, rng.random((7, 3, 15, 13), dtype=np.float32), rng.integers(0, 10, 7), rtol=2e-4)


@pytest.mark.parametrize("kind", ["adam", "adam-l2", "adamw", "sgd-nesterov"])
def test_optimizer_trajectories_match_torch(kind):
    rng = np.random.default_rng(4)
    model = build_model(preset_spec("lenet5"), (1, 28, 28), np.random.default_rng(5), dtype=np.float64)
    net = bench.torch_model(model)
    make = {
        "adam": (lambda: Adam(1e-3), lambda p: torch.optim.Adam(p, lr=1e-3)),
        "adam-l2": (lambda: Adam(1e-3, weight_decay=0.01), lambda p: torch.optim.Adam(p, lr=1e-3, weight_decay=0.01)),
        "adamw": (lambda: Adam(1e-3, weight_decay=0.1, decoupled=True),
                  lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.1)),
        "sgd-nesterov": (lambda: SGD(0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
                         lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    }[kind]
    opt, topt = make[0](), make[1](net.parameters())
    ce = SoftmaxCrossEntropy()
    for _ in range(4):
        x, y = rng.random((8, 1, 28, 28)), rng.integers(0, 10, 8)
        ce.forward(model.forward(x, True), y)
        model.backward(ce.backward())
        opt.step(model.parameters(), model.gradients())
        topt.zero_grad()
        torch.nn.functional.cross_entropy(net(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        topt.step()
    tparams = dict(net.named_parameters())
    for name, p in model.parameters().items():
        tname, transpose = bench.torch_param_name(model, name)
        tp = tparams[tname].detach().numpy()
        np.testing.assert_allclose(p, tp.T if transpose else tp, rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 2e-6)])
@pytest.mark.parametrize("smoothing", [0.05, 0.1, 0.3])
def test_label_smoothing_loss_and_gradient_match_torch(smoothing, dtype, rtol):
    """torch.nn.functional.cross_entropy(label_smoothing=s): the same loss and d loss / d logits."""
    rng = np.random.default_rng(12)
    logits = (rng.standard_normal((16, 10)) * 4).astype(dtype)
    labels = rng.integers(0, 10, 16)
    ce = SoftmaxCrossEntropy(label_smoothing=smoothing)
    loss = ce.forward(logits, labels)
    grad = ce.backward()
    lt = torch.from_numpy(logits.copy()).requires_grad_(True)
    tloss = torch.nn.functional.cross_entropy(lt, torch.from_numpy(labels), label_smoothing=smoothing)
    tloss.backward()
    assert loss == pytest.approx(tloss.item(), rel=rtol)
    assert grad.dtype == dtype
    np.testing.assert_allclose(grad, lt.grad.numpy(), rtol=rtol, atol=rtol * float(np.abs(grad).max()))
    # and smoothing really changes both (the test would pass vacuously if it were ignored)
    plain = torch.nn.functional.cross_entropy(torch.from_numpy(logits.copy()), torch.from_numpy(labels))
    assert abs(plain.item() - loss) > 1e-3
