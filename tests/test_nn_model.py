"""Model specs, presets, summary, determinism, state to/from a plain dict; loss, optimizers and schedules."""
from __future__ import annotations

import json
import math
import pickle
import subprocess
import sys

import numpy as np
import pytest

from pipeline import store
from pipeline.store import safe_pickle
from pipeline.nn import (PRESETS, SGD, Adam, SoftmaxCrossEntropy, build_model, make_schedule, model_from_state,
                         model_state, preset_spec, softmax)
from pipeline.nn.optim import adam_update_ref


def train_steps(model, steps: int, seed: int = 1, batch: int = 8):
    rng = np.random.default_rng(seed)
    x = rng.random((batch * steps, *model.input_shape), dtype=np.float32)
    y = rng.integers(0, 10, batch * steps)
    ce, opt = SoftmaxCrossEntropy(), Adam(1e-3)
    losses = []
    for s in range(steps):
        sl = slice(s * batch, (s + 1) * batch)
        losses.append(ce.forward(model.forward(x[sl], training=True), y[sl]))
        model.backward(ce.backward())
        opt.step(model.parameters(), model.gradients())
    return losses, opt


def expected_param_count(spec, input_shape):
    """Parameter count worked out from the spec by hand-written shape rules."""
    C, H, W = input_shape
    flat, total = None, 0
    for e in spec:
        t = e["type"]
        if t == "conv":
            k, s, p = e["kernel"], e.get("stride", 1), e.get("pad", 0)
            total += e["filters"] * C * k * k + e["filters"]
            C, H, W = e["filters"], (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1
        elif t == "maxpool":
            H, W = H // e["size"], W // e["size"]
        elif t == "batchnorm":
            total += 2 * (C if flat is None else flat)
        elif t == "flatten":
            flat = C * H * W
        elif t == "dense":
            total += flat * e["units"] + e["units"]
            flat = e["units"]
    return total


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_build_roundtrip_json_and_give_logits(name):
    spec = preset_spec(name)
    assert json.loads(json.dumps(spec)) == spec
    a = build_model(spec, (1, 28, 28), np.random.default_rng(3))
    b = build_model(json.loads(json.dumps(spec)), (1, 28, 28), np.random.default_rng(3))
    for (ka, va), (kb, vb) in zip(a.parameters().items(), b.parameters().items()):
        assert ka == kb and va.dtype == np.float32
        np.testing.assert_array_equal(va, vb)  # same seed -> bit-identical initialisation
    assert a.num_params() == expected_param_count(spec, (1, 28, 28))
    x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    logits = a.forward(x)
    assert logits.shape == (3, 10) and logits.dtype == np.float32 and np.all(np.isfinite(logits))
    p = a.predict_proba(x, batch_size=2)
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(a.predict(x), logits.argmax(axis=1))


def _one_backward_pass(models, x, y) -> None:
    """Forward (training mode) and backward through each model once, leaving its gradients."""
    for m in models:
        ce = SoftmaxCrossEntropy()
        ce.forward(m.forward(x, training=True), y)
        m.backward(ce.backward())


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_fused_execution_plan_equals_layer_by_layer(name):
    # the fused conv kernels must compute exactly what the separate layers compute
    spec = [dict(e, rate=0.0) if e["type"] == "dropout" else e for e in preset_spec(name)]
    fused = build_model(spec, (1, 28, 28), np.random.default_rng(2), dtype=np.float64)
    plain = build_model(spec, (1, 28, 28), np.random.default_rng(2), dtype=np.float64, fuse=False)
    kinds = [(type(s).__name__, getattr(s, "block", None)) for s in fused.plan]
    assert ("FusedConv", False) in kinds or name == "simple"  # the im2col GEMM kernel with ReLU/pool
    if name in ("simple", "lenet5"):
        assert ("FusedConv", True) in kinds  # the full-width block kernel
    assert all(type(s).__name__ != "FusedConv" for s in plain.plan)
    rng = np.random.default_rng(0)
    x, y = rng.random((5, 1, 28, 28)), rng.integers(0, 10, 5)
    _one_backward_pass((fused, plain), x, y)
    np.testing.assert_allclose(fused.forward(x), plain.forward(x), rtol=1e-12, atol=1e-12)
    for k, g in plain.gradients().items():
        np.testing.assert_allclose(fused.gradients()[k], g, rtol=1e-10, atol=1e-12, err_msg=k)



def _fused_and_plain_after_one_step(name: str):
    """Preset ``name`` (dropout off) built fused and layer by layer in float64, the same weights,
    after one forward and backward pass over the same four random images."""
    spec = [dict(e, rate=0.0) if e["type"] == "dropout" else e for e in preset_spec(name)]
    fused = build_model(spec, (1, 28, 28), np.random.default_rng(5), dtype=np.float64)
    plain = build_model(spec, (1, 28, 28), np.random.default_rng(5), dtype=np.float64, fuse=False)
    rng = np.random.default_rng(1)
    x, y = rng.random((4, 1, 28, 28)), rng.integers(0, 10, 4)
    _one_backward_pass((fused, plain), x, y)
    return fused, plain


@pytest.mark.parametrize("name", ["seed-keras", "deep", "seed-torch", "twoconv"])
def test_row_blocked_training_steps_equal_layer_by_layer(name, monkeypatch):
    # training takes the row-blocked conv kernel only for large batches; force it at any size
    from pipeline.nn import fusion

    monkeypatch.setattr(fusion.parallel, "THREADS", 1)  # it runs with single-threaded BLAS only
    monkeypatch.setattr(fusion, "ROWS_MIN_BYTES", 0)
    monkeypatch.setattr(fusion, "SPECTRAL_MIN_MACS", float("inf"))  # not the FFT kernel (tested below)
    fused, plain = _fused_and_plain_after_one_step(name)
    convs = [s for s in fused.plan if type(s).__name__ == "FusedConv" and not s.block]
    assert convs and all(s._bwd is fusion.K.conv_rows_backward for s in convs)
    for k, g in plain.gradients().items():
        np.testing.assert_allclose(fused.gradients()[k], g, rtol=1e-10, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("name", ["seed-torch", "strong"])
def test_fft_training_steps_equal_layer_by_layer(name):
    # their large 5x5 convs train on the FFT kernel: the gradients must be the separate layers' too
    from pipeline.nn import fusion

    fused, plain = _fused_and_plain_after_one_step(name)
    spectral = [s for s in fused.plan if type(s).__name__ == "FusedConv" and s._bwd is fusion.K.conv_fft_backward]
    assert len(spectral) == {"seed-torch": 2, "strong": 1}[name]
    for k, g in plain.gradients().items():
        np.testing.assert_allclose(fused.gradients()[k], g, rtol=1e-9, atol=1e-11, err_msg=k)


def test_dropout_float32_mask_is_the_thresholded_draws_scaled():
    # the fast float32 path builds the mask in the draws' memory; it must be exactly keep * 1/(1-rate)
    # from the same draws (so runs with dropout keep their bits), in CHWN order for images
    from pipeline.nn.layers import Dropout

    x = np.random.default_rng(0).random((6, 3, 5, 4), dtype=np.float32)
    layer = Dropout(0.4, rng=np.random.default_rng(9))
    y = layer.forward(x, training=True)
    draws = np.random.default_rng(9).random((3, 5, 4, 6), dtype=np.float32)  # (C, H, W, N)
    want = ((draws >= np.float32(0.4)) * np.float32(1 / 0.6)).astype(np.float32).transpose(3, 0, 1, 2)
    np.testing.assert_array_equal(layer._mask, want)
    np.testing.assert_array_equal(y, x * want)
    np.testing.assert_array_equal(layer.backward(np.ones_like(x)), want)


def test_dense_input_gradient_keeps_the_layout_of_a_flattened_chwn_input():
    # after Flatten of CHWN maps the dense input is a transposed view; dx comes back in that layout
    from pipeline.nn.layers import Dense

    rng = np.random.default_rng(3)
    layer = Dense(12, 5, rng=rng)
    layer.needs_input_grad = True
    xc = rng.random((12, 7), dtype=np.float32)  # (D, N) memory
    layer.forward(xc.T, training=True)
    dout = rng.random((7, 5), dtype=np.float32)
    dx = layer.backward(dout)
    assert dx.shape == (7, 12) and dx.T.flags.c_contiguous
    np.testing.assert_allclose(dx, dout @ layer.params["W"].T, rtol=1e-6)
    layer.forward(np.ascontiguousarray(xc.T), training=True)  # an (N, D) input keeps (N, D) memory
    assert layer.backward(dout).flags.c_contiguous

def test_known_architectures():
    simple = build_model(preset_spec("simple"))
    # book's SimpleConvNet: 30*1*5*5+30, 30*12*12*100+100, 100*10+10
    assert simple.num_params() == 780 + 432_100 + 1_010
    assert [s for s in simple.shapes] == [(30, 24, 24), (30, 24, 24), (30, 12, 12), (4320,), (100,), (100,), (10,)]
    deep = build_model(preset_spec("deep"))
    assert deep.shapes[deep.kinds.index("flatten")] == (64 * 4 * 4,)
    torch_seed = build_model(preset_spec("seed-torch"))
    assert torch_seed.shapes[torch_seed.kinds.index("flatten")] == (64 * 3 * 3,)


def test_summary_table_lists_layers_shapes_and_totals():
    m = build_model(preset_spec("seed-keras"))
    text = m.summary()
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["Layer", "(type)", "Output"]
    assert "0.conv (Conv2D)" in text and "(None, 32, 28, 28)" in text and "320" in lines[2]
    assert "2.batchnorm (BatchNorm)" in text
    assert f"Trainable params: {m.num_params():,}" in text
    assert f"Non-trainable params: {sum(v.size for v in m.buffers().values()):,}" in text
    assert len([l for l in lines if "(" in l and ")" in l and l[0].isdigit()]) == len(m.layers)


def test_unknown_preset_lists_valid_names():
    with pytest.raises(ValueError) as err:
        preset_spec("resnet")
    for name in PRESETS:
        assert name in str(err.value)


@pytest.mark.parametrize("spec,match", [
    ([{"type": "conv", "filters": 4}], "missing required keys"),
    ([{"type": "convolution", "filters": 4, "kernel": 3}], "unknown layer type"),
    ([{"type": "dense", "units": 10, "size": 3}], "unknown keys"),
    ([{"type": "conv", "filters": 4, "kernel": 3, "init": "zeros"}], "unknown init"),
    ([{"type": "conv", "filters": 4, "kernel": 3, "stride": 0}], "stride must be an integer"),
    ([{"type": "dense", "units": 10}], "add a flatten layer"),
    ([{"type": "conv", "filters": 4, "kernel": 30}, {"type": "flatten"}, {"type": "dense", "units": 10}], "shrinks"),
    ([{"type": "conv", "filters": 4, "kernel": 3}], "must end in a dense layer"),
    ([{"type": "flatten"}, {"type": "dropout", "rate": 1.5}, {"type": "dense", "units": 2}], "rate must be in"),
    ([], "non-empty list"),
])
def test_bad_specs_fail_with_clear_messages(spec, match):
    with pytest.raises(ValueError, match=match):
        build_model(spec, (1, 28, 28), np.random.default_rng(0))


def test_bad_input_shape_is_reported():
    m = build_model(preset_spec("simple"))
    with pytest.raises(ValueError, match=r"expects inputs of shape \(N, 1, 28, 28\)"):
        m.forward(np.zeros((2, 28, 28, 1), np.float32))


def test_training_is_deterministic_bit_for_bit():
    # same seed -> same parameters after Adam steps, including dropout draws and BLAS threading
    results = []
    for _ in range(2):
        m = build_model(preset_spec("deep"), (1, 28, 28), np.random.default_rng(42))
        train_steps(m, 3, batch=16)
        results.append(m.state_dict())
    for k in results[0]["params"]:
        np.testing.assert_array_equal(results[0]["params"][k], results[1]["params"][k])
    other = build_model(preset_spec("deep"), (1, 28, 28), np.random.default_rng(43))
    assert not np.array_equal(other.first_conv_weights(), build_model(preset_spec("deep"), rng=np.random.default_rng(42)).first_conv_weights())


def test_training_is_bit_identical_across_processes_with_threaded_blas():
    # Two fresh processes with 2 OpenBLAS threads: BLAS threading must not change results
    # between runs (a *different* thread count may change the last bits: sums split differently).
    code = (
        "import numpy as np\n"
        "from pipeline.nn import Adam, SoftmaxCrossEntropy, build_model, preset_spec\n"
        "from pipeline.nn import sha256_arrays\n"
        "m = build_model(preset_spec('seed-torch'), (1, 28, 28), np.random.default_rng(0))\n"
        "rng, ce, opt = np.random.default_rng(1), SoftmaxCrossEntropy(), Adam()\n"
        "for _ in range(2):\n"
        "    x, y = rng.random((100, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 100)\n"
        "    ce.forward(m.forward(x, True), y); m.backward(ce.backward()); opt.step(m.parameters(), m.gradients())\n"
        "print(sha256_arrays(m.parameters()))\n"
    )
    import os
    from pathlib import Path

    env = dict(os.environ, OPENBLAS_NUM_THREADS="2")
    repo = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = repo + os.pathsep + env.get("PYTHONPATH", "")
    hashes = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env=env, cwd=repo).stdout.strip() for _ in range(2)}
    assert len(hashes) == 1 and len(next(iter(hashes))) == 64


def test_training_reduces_loss_on_a_learnable_task():
    rng = np.random.default_rng(0)
    m = build_model(preset_spec("simple"), (1, 28, 28), np.random.default_rng(0))
    # class k = a bright 4x4 square at a k-dependent position
    y = rng.integers(0, 10, 400)
    x = rng.random((400, 1, 28, 28), dtype=np.float32) * 0.2
    for i, k in enumerate(y):
        r, c = divmod(int(k), 5)
        x[i, 0, 4 + 10 * r:8 + 10 * r, 2 + 5 * c:6 + 5 * c] += 1
    ce, opt = SoftmaxCrossEntropy(), Adam(1e-3)
    for epoch in range(3):
        for s in range(0, 400, 50):
            ce.forward(m.forward(x[s:s + 50], True), y[s:s + 50])
            m.backward(ce.backward())
            opt.step(m.parameters(), m.gradients())
    assert (m.predict(x) == y).mean() > 0.9


def test_assigning_model_rng_drives_dropout():
    spec = [{"type": "flatten"}, {"type": "dropout", "rate": 0.5}, {"type": "dense", "units": 10}]
    x = np.ones((8, 1, 4, 4), np.float32)
    a = build_model(spec, input_shape=(1, 4, 4), rng=np.random.default_rng(0))
    b = build_model(spec, input_shape=(1, 4, 4), rng=np.random.default_rng(0))
    a.rng, b.rng = np.random.default_rng(7), np.random.default_rng(7)
    assert np.array_equal(a.forward(x, training=True), b.forward(x, training=True))
    b.rng = np.random.default_rng(8)
    assert not np.array_equal(a.forward(x, training=True), b.forward(x, training=True))
    # the draws came from the assigned Generator, not the one the model was built with
    c = build_model(spec, input_shape=(1, 4, 4), rng=np.random.default_rng(0))
    c.rng = np.random.default_rng(7)
    state = c.rng.bit_generator.state
    c.forward(x, training=True)
    assert c.rng.bit_generator.state != state


def test_state_dict_roundtrip_and_save_load(tmp_path):
    m = build_model(preset_spec("seed-keras"), (1, 28, 28), np.random.default_rng(0))
    train_steps(m, 2, batch=4)  # moves BatchNorm running stats away from their defaults
    path = tmp_path / "model.pkl"
    store.write_pickle(path, model_state(m))  # how the training stage saves it (as its "model" artifact)
    loaded = model_from_state(safe_pickle.loads(path.read_bytes()))  # plain data: the restricted unpickler takes it
    x = np.random.default_rng(5).random((4, 1, 28, 28), dtype=np.float32)
    np.testing.assert_array_equal(loaded.forward(x), m.forward(x))
    for k, v in m.buffers().items():
        np.testing.assert_array_equal(loaded.buffers()[k], v)
    # the pickle holds only builtins + ndarrays: it loads with this package made unimportable
    code = ("import sys, pickle; sys.modules['pipeline'] = None; "
            f"d = pickle.load(open({str(path)!r}, 'rb')); "
            "print(d['format'], sorted(d)[0], d['params']['0.conv.W'].shape, len(d['buffers']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["mnist-pipeline/model/v1", "buffers", "(32,", "1,", "3,", "3)", "8"]


def test_load_rejects_foreign_pickles_and_mismatched_states(tmp_path):
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(pickle.dumps({"weights": 1}))
    with pytest.raises(ValueError, match="not a saved model"):
        model_from_state(safe_pickle.loads(bad.read_bytes()))
    with pytest.raises(ValueError, match="not a saved model"):
        model_from_state([1, 2])
    simple = build_model(preset_spec("simple"))
    with pytest.raises(ValueError, match="different model spec"):
        simple.load_state_dict(build_model(preset_spec("lenet5")).state_dict())
    state = simple.state_dict()
    state["params"]["4.dense.W"] = state["params"]["4.dense.W"][:10]
    with pytest.raises(ValueError, match="saved shape"):
        simple.load_state_dict(state)


def test_feature_maps_and_first_conv_weights():
    m = build_model(preset_spec("simple"))
    x = np.random.default_rng(0).random((2, 1, 28, 28), dtype=np.float32)
    fm = m.feature_maps(x, 0)
    assert fm.shape == (2, 30, 24, 24) and fm.flags.c_contiguous
    W = m.first_conv_weights()
    assert W.shape == (30, 1, 5, 5)
    # feature map = the correlation of the image with each filter, checked at one pixel
    assert fm[1, 7, 3, 4] == pytest.approx(float(np.sum(x[1, 0, 3:8, 4:9] * W[7, 0])), rel=1e-5)
    W[:] = 0  # a copy: the model is untouched
    assert np.any(m.first_conv_weights() != 0)


def test_large_inference_batches_run_in_slices_with_identical_results():
    m = build_model(preset_spec("lenet5"))
    x = np.random.default_rng(3).random((m.MAX_EVAL_BATCH + 7, 1, 28, 28), dtype=np.float32)
    whole = m.forward(x)
    assert whole.shape == (len(x), 10)
    parts = np.concatenate([m.forward(x[:100]), m.forward(x[100:])])
    np.testing.assert_allclose(whole, parts, rtol=1e-5, atol=1e-6)
    m.forward(x)
    with pytest.raises(RuntimeError, match="inference forward of more than"):
        m.backward(np.ones((len(x), 10), np.float32))


def test_parameters_and_gradients_share_keys_and_live_arrays():
    m = build_model(preset_spec("lenet5"))
    params, grads = m.parameters(), m.gradients()
    assert list(params) == list(grads) and list(params)[0] == "0.conv.W"
    params["0.conv.W"][0, 0, 0, 0] = 123.0
    assert m.first_conv_weights()[0, 0, 0, 0] == 123.0


# ------------------------------------------------------------------ loss


def test_softmax_and_cross_entropy_values():
    logits = np.array([[1.0, 2.0, 3.0], [1000.0, 0.0, -1000.0]])
    p = softmax(logits)
    np.testing.assert_allclose(p[0], np.exp([1, 2, 3]) / np.exp([1, 2, 3]).sum())
    np.testing.assert_allclose(p[1], [1, 0, 0])  # no overflow
    ce = SoftmaxCrossEntropy()
    loss = ce.forward(logits, np.array([2, 0]))
    assert loss == pytest.approx((-math.log(p[0, 2]) + 0.0) / 2)
    smooth = SoftmaxCrossEntropy(label_smoothing=0.3).forward(logits[:1], np.array([2]))
    logp = np.log(p[0])
    assert smooth == pytest.approx(-(0.7 * logp[2] + 0.1 * logp.sum()))
    with pytest.raises(ValueError, match="labels must lie in"):
        ce.forward(logits, np.array([0, 3]))


# ------------------------------------------------------------------ optimizers and schedules


def test_sgd_momentum_and_nesterov_follow_their_formulas():
    p0, g0, g1 = np.array([1.0, -2.0]), np.array([0.5, 0.25]), np.array([-1.0, 2.0])
    for nesterov in (False, True):
        p = {"w": p0.copy()}
        opt = SGD(0.1, momentum=0.9, nesterov=nesterov, weight_decay=0.01)
        opt.step(p, {"w": g0})
        d0 = g0 + 0.01 * p0
        step0 = d0 + 0.9 * d0 if nesterov else d0
        np.testing.assert_allclose(p["w"], p0 - 0.1 * step0)
        p1 = p["w"].copy()
        opt.step(p, {"w": g1})
        d1 = g1 + 0.01 * p1
        buf = 0.9 * d0 + d1
        step1 = d1 + 0.9 * buf if nesterov else buf
        np.testing.assert_allclose(p["w"], p1 - 0.1 * step1)


def test_adam_first_step_is_lr_times_sign_and_decoupled_decay():
    p = {"w": np.array([1.0, -1.0, 3.0])}
    Adam(0.01).step(p, {"w": np.array([0.3, -5.0, 1e-3])})
    np.testing.assert_allclose(p["w"], [0.99, -0.99, 3.0 - 0.01 * 1e-3 / (1e-3 + 1e-8)], rtol=1e-9)
    q = {"w": np.array([2.0])}
    Adam(0.1, weight_decay=0.5, decoupled=True).step(q, {"w": np.array([0.0])})
    np.testing.assert_allclose(q["w"], [2.0 * (1 - 0.05)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_in_chunks_gives_the_reference_update_bit_for_bit(dtype, monkeypatch):
    # Adam updates in cache-sized chunks with reused scratch: the same operations in the same
    # order as the whole-array reference, so the same bits (the trained-parameter hashes rely on it),
    # for arrays longer than a chunk, shorter than one, and non-contiguous ones
    monkeypatch.setattr(Adam, "CHUNK", 16)  # "long" (350 weights > 16 chunks) runs in chunks, the others whole
    rng = np.random.default_rng(3)
    shapes = {"long": (7, 50), "short": (5,), "conv": (4, 3, 3, 3)}
    params = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
    params["strided"] = rng.standard_normal((9, 6)).astype(dtype).T  # a transposed view
    ref = {k: v.copy() for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(x) for k, x in params.items()}
    opt = Adam(2e-3)
    for t in range(1, 4):
        grads = {k: rng.standard_normal(x.shape).astype(dtype) for k, x in params.items()}
        opt.step(params, grads)
        for k in ref:
            adam_update_ref(ref[k], grads[k], m[k], v[k], t, lr=2e-3)
    for k in ref:
        np.testing.assert_array_equal(params[k], ref[k], err_msg=k)
        np.testing.assert_array_equal(opt.m[k], m[k], err_msg=k)
        np.testing.assert_array_equal(opt.v[k], v[k], err_msg=k)
        assert params[k].dtype == dtype


@pytest.mark.parametrize("make", [lambda: Adam(0.01), lambda: SGD(0.05, momentum=0.9, nesterov=True)])
def test_optimizer_resume_is_exact(make):
    rng = np.random.default_rng(0)
    grads = [{"w": rng.standard_normal(5)} for _ in range(6)]
    a, pa = make(), {"w": np.ones(5)}
    for g in grads:
        a.step(pa, g)
    b, pb = make(), {"w": np.ones(5)}
    for g in grads[:3]:
        b.step(pb, g)
    state = pickle.loads(pickle.dumps(b.state_dict()))
    c, pc = make(), {"w": pb["w"].copy()}
    c.load_state_dict(state)
    for g in grads[3:]:
        c.step(pc, g)
    np.testing.assert_array_equal(pc["w"], pa["w"])


def test_schedules():
    step = make_schedule("step", 0.1, 10, step_size=3, gamma=0.5)
    assert [step(e) for e in (0, 2, 3, 6, 9)] == pytest.approx([0.1, 0.1, 0.05, 0.025, 0.0125])
    cos = make_schedule("cosine", 0.1, 11, min_lr=0.01)
    assert cos(0) == pytest.approx(0.1) and cos(10) == pytest.approx(0.01) and cos(5) == pytest.approx(0.055)
    assert all(cos(e) >= cos(e + 1) for e in range(10))
    warm = make_schedule("cosine", 0.1, 10, warmup=2)
    assert [warm(0), warm(1), warm(2)] == pytest.approx([0.05, 0.1, 0.1])
    assert make_schedule("constant", 0.3, 5)(4) == 0.3
    with pytest.raises(ValueError, match="unknown schedule"):
        make_schedule("linear", 0.1, 5)
    with pytest.raises(ValueError, match="not \\['gamma_'\\]"):
        make_schedule("step", 0.1, 5, gamma_=0.1)


# ------------------------------------------------------------------ the engine stands alone


def test_engine_imports_nothing_else_of_the_pipeline():
    # every import statement in pipeline/nn, module level or inside functions, stays inside pipeline.nn
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "pipeline" / "nn"
    files = sorted(root.rglob("*.py"))
    assert len(files) > 10
    outside = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            outside += [f"{path.name}: {n}" for n in names
                        if n.split(".")[0] == "pipeline" and not (n == "pipeline.nn" or n.startswith("pipeline.nn."))]
            if isinstance(node, ast.ImportFrom) and node.module == "pipeline":
                outside.append(f"{path.name}: from pipeline import ...")
    assert outside == []


def test_sha256_arrays_hashes_the_arrays_bytes_without_copying_them():
    # the digest names trained parameters in every record: it must stay the sha256 of
    # (name, dtype, shape, bytes) in name order, exactly as when it used arr.tobytes()
    import hashlib

    from pipeline.nn import sha256_arrays

    rng = np.random.default_rng(3)
    arrays = {"b": rng.integers(0, 9, 7), "a": rng.random((3, 4), dtype=np.float32).T, "c": np.float64(2.5)}
    h = hashlib.sha256()
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        for part in (name.encode(), str(arr.dtype).encode(), str(arr.shape).encode(), arr.tobytes()):
            h.update(part)
    assert sha256_arrays(arrays) == h.hexdigest()
