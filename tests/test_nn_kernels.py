"""Fast kernels (im2col GEMM convolution, its row-blocked form, the FFT convolution, strided
max-pooling, the phase-plane conv block) against slow, obvious references."""
from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.nn import kernels as K
from pipeline.nn.fusion import prefer_block, prefer_rows, prefer_spectral

# (N, C, H, W, F, kh, kw, stride, pad): odd sizes, non-square images and kernels, stride 2/3, pad 1-2
CONV_CASES = [
    (2, 1, 7, 7, 3, 3, 3, 1, 0),
    (3, 2, 9, 6, 4, 3, 3, 2, 1),
    (2, 3, 8, 11, 2, 5, 5, 1, 2),
    (1, 4, 10, 9, 5, 2, 3, 2, 0),
    (2, 2, 11, 7, 3, 3, 2, 3, 1),
    (4, 1, 28, 28, 6, 5, 5, 1, 0),
    (2, 3, 6, 5, 2, 1, 1, 1, 0),
    (2, 2, 5, 6, 3, 4, 4, 2, 2),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "N{}C{}H{}W{}F{}k{}x{}s{}p{}".format(*c))
def test_conv_forward_and_backward_match_reference(case):
    N, C, H, W, F, kh, kw, s, p = case
    rng = np.random.default_rng(hash(case) % 2**32)
    x = rng.standard_normal((N, C, H, W))
    Wt = rng.standard_normal((F, C, kh, kw))
    b = rng.standard_normal(F)
    out, cache = K.conv2d_forward(x, Wt, b, s, p)
    ref = K.conv2d_forward_ref(x, Wt, b, s, p)
    assert out.shape == ref.shape == (N, F, K.conv_output_size(H, kh, s, p), K.conv_output_size(W, kw, s, p))
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)

    dout = rng.standard_normal(out.shape)
    dx, dW, db = K.conv2d_backward(dout, cache)
    rdx, rdW, rdb = K.conv2d_backward_ref(dout, x, Wt, s, p)
    np.testing.assert_allclose(dx, rdx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dW, rdW, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, rdb, rtol=1e-12, atol=1e-12)
    # the skip-dx path gives the same weight gradients
    none, dW2, db2 = K.conv2d_backward(dout, cache, need_dx=False)
    assert none is None
    np.testing.assert_array_equal(dW2, dW)


@pytest.mark.parametrize("relu,pool", [(True, False), (False, True), (True, True)])
@pytest.mark.parametrize("case", CONV_CASES[:6], ids=lambda c: "N{}C{}H{}W{}F{}k{}x{}s{}p{}".format(*c))
def test_conv_with_fused_relu_and_pool_matches_reference_composition(case, relu, pool):
    N, C, H, W, F, kh, kw, s, p = case
    rng = np.random.default_rng(sum(case) + 3 * relu + pool)
    x = rng.standard_normal((N, C, H, W))
    Wt = rng.standard_normal((F, C, kh, kw))
    b = rng.standard_normal(F)
    conv = K.conv2d_forward_ref(x, Wt, b, s, p)
    act = np.maximum(conv, 0) if relu else conv
    ref = K.maxpool_forward_ref(act, 2, 2) if pool else act
    out, cache = K.conv2d_forward(x, Wt, b, s, p, {}, relu, pool)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    dout = rng.standard_normal(out.shape)
    dx, dW, db = K.conv2d_backward(dout, cache)
    d = K.maxpool_backward_ref(dout, act, 2, 2) if pool else dout
    d = d * (conv > 0) if relu else d
    rdx, rdW, rdb = K.conv2d_backward_ref(d, x, Wt, s, p)
    np.testing.assert_allclose(dx, rdx, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(dW, rdW, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(db, rdb, rtol=1e-11, atol=1e-11)


def test_conv_float32_matches_float64_reference_and_accepts_any_layout():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((5, 3, 13, 12)).astype(np.float32)
    Wt = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    ws: dict = {}
    out, _ = K.conv2d_forward(x, Wt, b, 1, 1, ws)
    assert out.dtype == np.float32
    ref = K.conv2d_forward_ref(x.astype(np.float64), Wt.astype(np.float64), b.astype(np.float64), 1, 1)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
    # an NHWC-strided view of the same values gives the same result; the workspace is reused
    x_nhwc_view = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    out2, _ = K.conv2d_forward(x_nhwc_view, Wt, b, 1, 1, ws)
    np.testing.assert_array_equal(out2, out)


def test_im2col_and_col2im_are_adjoint():
    # <im2col(x), y> == <x, col2im(y)> for every stride/pad: col2im is exactly the transpose
    rng = np.random.default_rng(3)
    for (C, H, W, N, kh, kw, s, p) in [(2, 9, 8, 3, 3, 3, 2, 1), (1, 7, 7, 2, 5, 5, 1, 2), (3, 6, 9, 1, 2, 4, 3, 0)]:
        x = rng.standard_normal((C, H, W, N))  # CHWN memory order
        cols = K.im2col(x, kh, kw, s, p).copy()
        y = rng.standard_normal(cols.shape)
        lhs = float(np.sum(cols * y))
        rhs = float(np.sum(x * K.col2im(y, x.shape, s, p)))
        assert lhs == pytest.approx(rhs, rel=1e-12)
        # and each column entry is the padded pixel it claims to be
        xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
        for c, i, j, oh, ow, n in [tuple(v - 1 for v in cols.shape), (0, 0, 1, 1, 0, 0)]:
            assert cols[c, i, j, oh, ow, n] == xp[c, oh * s + i, ow * s + j, n]


POOL_CASES = [(2, 3, 8, 8, 2, 2), (2, 2, 7, 9, 2, 2), (1, 3, 9, 9, 3, 3), (2, 2, 7, 8, 3, 2), (3, 1, 6, 5, 2, 1)]


@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: "N{}C{}H{}W{}k{}s{}".format(*c))
def test_maxpool_matches_reference(case):
    N, C, H, W, size, stride = case
    rng = np.random.default_rng(sum(case))
    x = rng.standard_normal((N, C, H, W))
    out, cache = K.maxpool_forward(x, size, stride)
    np.testing.assert_array_equal(out, K.maxpool_forward_ref(x, size, stride))
    dout = rng.standard_normal(out.shape)
    np.testing.assert_allclose(K.maxpool_backward(dout, cache),
                               K.maxpool_backward_ref(dout, x, size, stride), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("group_items", [1, 100, 1 << 16], ids=["channel-by-channel", "two-channels", "one-group"])
@pytest.mark.parametrize("size,stride", [(2, 2), (3, 2)])
def test_maxpool_backward_in_channel_groups_matches_reference(size, stride, group_items, monkeypatch):
    # the backward routes a few channels at a time (GROUP_ITEMS pooled elements); every
    # grouping gives the reference's gradient, ties after ReLU included
    pooling = importlib.import_module("pipeline.nn.kernels.pooling")
    monkeypatch.setattr(pooling, "GROUP_ITEMS", group_items)
    rng = np.random.default_rng(12)
    x = np.maximum(rng.integers(-2, 3, (3, 5, 9, 8)).astype(np.float32), 0)
    out, cache = K.maxpool_forward(x, size, stride)
    np.testing.assert_array_equal(out, K.maxpool_forward_ref(x, size, stride))
    dout = rng.standard_normal(out.shape).astype(np.float32)
    np.testing.assert_allclose(K.maxpool_backward(dout, cache), K.maxpool_backward_ref(dout, x, size, stride),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("size,stride", [(2, 2), (3, 2)])
def test_maxpool_ties_route_gradient_to_first_maximum_only(size, stride):
    # after ReLU many windows are all zero: gradient must not be duplicated
    rng = np.random.default_rng(11)
    x = np.maximum(rng.integers(-2, 2, (2, 3, 9, 9)).astype(np.float32), 0)
    out, cache = K.maxpool_forward(x, size, stride)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    dx = K.maxpool_backward(dout, cache)
    np.testing.assert_allclose(dx, K.maxpool_backward_ref(dout, x, size, stride), rtol=1e-6)
    # total gradient is conserved (each output sends its gradient to exactly one input)
    assert float(dx.sum()) == pytest.approx(float(dout.sum()), rel=1e-5)


def test_pool_rejects_window_larger_than_input():
    with pytest.raises(ValueError, match="smaller than"):
        K.maxpool_forward(np.zeros((1, 1, 2, 2)), 3, 3)


def test_conv_rejects_channel_mismatch():
    with pytest.raises(ValueError, match="does not match weights"):
        K.conv2d_forward(np.zeros((1, 2, 5, 5)), np.zeros((3, 1, 3, 3)), np.zeros(3))



# the conv cases plus same-size and growing stride-1 convs (their dx is a blocked correlation)
# the conv cases, same-size and growing stride-1 convs (their dx is a blocked correlation), and
# strided ones whose dx goes by phases: kaggle's 5x5/2 "same" downsampling on even and odd sizes,
# a stride wider than the kernel, an input narrower than the stride
ROWS_CASES = CONV_CASES + [(3, 3, 9, 9, 4, 3, 3, 1, 2), (2, 3, 7, 9, 4, 3, 3, 1, 1), (2, 2, 6, 6, 3, 3, 3, 1, 1),
                           (2, 3, 12, 10, 4, 5, 5, 2, 2), (2, 2, 9, 11, 3, 5, 5, 2, 2), (2, 2, 9, 10, 3, 4, 4, 3, 1),
                           (1, 2, 2, 7, 3, 1, 2, 3, 0)]


@pytest.mark.parametrize("block_bytes", [64, 4 << 20])  # one output row per block / the whole image
@pytest.mark.parametrize("relu,pool", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("case", ROWS_CASES, ids=lambda c: "N{}C{}H{}W{}F{}k{}x{}s{}p{}".format(*c))
def test_row_blocked_conv_matches_reference(case, relu, pool, block_bytes, monkeypatch):
    blocked = importlib.import_module("pipeline.nn.kernels.blocked")
    monkeypatch.setattr(blocked, "BLOCK_BYTES", block_bytes)
    N, C, H, W, F, kh, kw, s, p = case
    rng = np.random.default_rng(sum(case) + 2 * relu + pool)
    x = rng.standard_normal((N, C, H, W))
    Wt = rng.standard_normal((F, C, kh, kw))
    b = rng.standard_normal(F)
    if pool and min(K.conv_output_size(H, kh, s, p), K.conv_output_size(W, kw, s, p)) < 2:
        with pytest.raises(ValueError, match="smaller than the 2x2 window"):
            K.conv_rows_forward(x, Wt, b, s, p, {}, relu, pool)
        return
    ref = K.conv_rows_forward_ref(x, Wt, b, s, p, relu, pool)
    dout = rng.standard_normal(ref.shape)
    rdx, rdW, rdb = K.conv_rows_backward_ref(dout, x, Wt, b, s, p, relu, pool)
    ws: dict = {}
    for _ in range(2):  # the second pass reuses the workspace buffers
        out, cache = K.conv_rows_forward(x, Wt, b, s, p, ws, relu, pool)
        np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
        dx, dW, db = K.conv_rows_backward(dout, cache, True, ws)
        np.testing.assert_allclose(dx, rdx, rtol=1e-11, atol=1e-11)
        np.testing.assert_allclose(dW, rdW, rtol=1e-11, atol=1e-11)
        np.testing.assert_allclose(db, rdb, rtol=1e-11, atol=1e-11)
        none, dW2, db2 = K.conv_rows_backward(dout, cache, False, ws)  # no dx: dW from the input's columns
        assert none is None
        np.testing.assert_allclose(dW2, rdW, rtol=1e-11, atol=1e-11)
        np.testing.assert_allclose(db2, rdb, rtol=1e-11, atol=1e-11)


def test_row_blocked_conv_in_float32_agrees_with_the_whole_batch_kernel():
    # what training runs: the same dot products, bias, max and ReLU as the whole-batch kernel
    # (blocks of one row and of several rows), and its gradients to float32 rounding
    rng = np.random.default_rng(15)
    x = np.maximum(rng.standard_normal((20, 8, 14, 14)), 0).astype(np.float32)
    Wt = (rng.standard_normal((16, 8, 3, 3)) * 0.2).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    whole, wcache = K.conv2d_forward(x, Wt, b, 1, 1, {}, True, True)
    rows, rcache = K.conv_rows_forward(x, Wt, b, 1, 1, {}, True, True)
    assert rows.dtype == np.float32 and rows.transpose(1, 2, 3, 0).flags.c_contiguous  # CHWN memory
    np.testing.assert_allclose(rows, whole, rtol=1e-6, atol=1e-6)
    dout = rng.standard_normal(whole.shape).astype(np.float32)
    for got, want in zip(K.conv_rows_backward(dout, rcache, True, {}), K.conv2d_backward(dout, wcache, True, {})):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_row_blocked_fill_builds_the_columns_im2col_builds():
    blocked = importlib.import_module("pipeline.nn.kernels.blocked")
    rng = np.random.default_rng(16)
    for (C, H, W, N, kh, kw, s, p) in [(2, 9, 8, 3, 3, 3, 2, 1), (1, 7, 7, 2, 5, 5, 1, 2), (3, 6, 9, 1, 2, 4, 3, 0)]:
        x = rng.standard_normal((C, H, W, N))
        cols = K.im2col(x, kh, kw, s, p).copy()  # (C, kh, kw, OH, OW, N)
        xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
        OH, OW = cols.shape[3:5]
        scratch = np.full((C, kh, kw, 2, OW, N), np.nan)
        for r0 in range(OH):
            r1 = min(OH, r0 + 2)
            got = blocked._fill(scratch, xp, r0, r1, s)
            np.testing.assert_array_equal(got, cols[:, :, :, r0:r1].reshape(C * kh * kw, -1))


def test_prefer_rows_for_inference_and_for_large_training_convs(monkeypatch):
    from pipeline.nn.kernels import parallel

    monkeypatch.setattr(parallel, "THREADS", 1)  # single-threaded BLAS only
    assert prefer_rows(16, 5, 5, 12, 12, 1, 0, 100, 4, training=False)  # inference: always
    assert prefer_rows(32, 3, 3, 28, 28, 1, 1, 100, 4, training=True)  # seed-keras's 32->32 conv: 86 MB
    assert prefer_rows(16, 3, 3, 14, 14, 1, 1, 100, 4, training=True)  # deep's 16->32 conv: 11 MB, same size
    assert prefer_rows(32, 3, 3, 8, 8, 1, 1, 100, 4, training=True)  # deep's 32->64 conv on 8x8: 7 MB
    assert not prefer_rows(1, 3, 3, 28, 28, 1, 1, 100, 4, training=True)  # 3 MB: stays in cache anyway
    assert prefer_rows(16, 5, 5, 24, 24, 1, 0, 100, 4, training=True)  # seed-torch's 2nd conv: 61 MB
    assert prefer_rows(16, 5, 5, 12, 12, 1, 0, 100, 4, training=True)  # the default twoconv's 2nd conv: 10 MB
    assert prefer_rows(6, 5, 5, 14, 14, 1, 0, 100, 4, training=True)  # lenet5's 2nd conv: 6 MB, shrinking
    assert not prefer_rows(6, 5, 5, 14, 14, 1, 0, 50, 4, training=True)  # ... at batch 50: 3 MB
    assert prefer_rows(32, 5, 5, 24, 24, 2, 2, 100, 4, training=True)  # kaggle's strided 32->32 conv: 46 MB
    assert not prefer_rows(32, 5, 5, 8, 8, 2, 2, 20, 4, training=True)  # ... on 8x8 at batch 20: 2 MB
    monkeypatch.setattr(parallel, "THREADS", 2)  # threaded BLAS: one GEMM call per block wakes the threads
    assert not prefer_rows(32, 3, 3, 28, 28, 1, 1, 100, 4, training=True)
    assert not prefer_rows(16, 5, 5, 12, 12, 1, 0, 100, 4, training=False)


# (N, C, H, W, F, kh, kw, pad): odd and non-square sizes, odd conv outputs (pool floor), pad 1-2
BLOCK_CASES = [
    (2, 1, 7, 7, 3, 3, 3, 0),
    (3, 2, 9, 6, 4, 3, 3, 1),
    (2, 3, 8, 11, 2, 5, 5, 2),
    (2, 2, 10, 9, 5, 2, 3, 0),
    (4, 1, 28, 28, 6, 5, 5, 0),
    (2, 3, 6, 5, 2, 1, 1, 0),
    (2, 2, 5, 6, 3, 4, 4, 2),
    (2, 4, 12, 12, 4, 5, 5, 0),
]
# the FFT kernel takes any stride-1 conv: the same cases (odd FFT lengths have no Nyquist column),
# and a kernel as large as its input
SPECTRAL_CASES = BLOCK_CASES + [(2, 2, 5, 5, 3, 5, 5, 0)]


def _check_against_fused_reference(forward, backward, x, Wt, b, p, relu, pool, rng, ws, fwd_tol, bwd_tol):
    """Run ``forward(ws)`` and ``backward(dout, cache, ws)`` of a fused conv kernel twice (the second
    pass reuses the workspace buffers) against the composition of the slow references, within
    ``fwd_tol`` and ``bwd_tol`` (relative and absolute); return the last (dout, cache, dW)."""
    ref = K.conv_block_forward_ref(x, Wt, b, p, relu, pool)
    for _ in range(2):
        out, cache = forward(ws)
        assert out.dtype == x.dtype
        np.testing.assert_allclose(out, ref, rtol=fwd_tol, atol=fwd_tol)
        dout = rng.standard_normal(out.shape)
        dx, dW, db = backward(dout, cache, ws)
        for got, want in zip((dx, dW, db), K.conv_block_backward_ref(dout, x, Wt, b, p, relu, pool)):
            np.testing.assert_allclose(got, want, rtol=bwd_tol, atol=bwd_tol)
    return dout, cache, dW


def _stride1_case(case: tuple, seed: int):
    """(rng, x (N, C, H, W), W (F, C, kh, kw), b (F,)) in float64 for a case of BLOCK_CASES' form."""
    N, C, H, W, F, kh, kw, _ = case
    rng = np.random.default_rng(seed)
    return rng, rng.standard_normal((N, C, H, W)), rng.standard_normal((F, C, kh, kw)), rng.standard_normal(F)


@pytest.mark.parametrize("relu,pool", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("case", SPECTRAL_CASES, ids=lambda c: "N{}C{}H{}W{}F{}k{}x{}p{}".format(*c))
def test_fft_conv_matches_reference_composition(case, relu, pool):
    N, C, H, W, F, kh, kw, p = case
    rng, x, Wt, b = _stride1_case(case, sum(case) + 5 * relu + pool)
    if pool and (H + 2 * p - kh + 1 < 2 or W + 2 * p - kw + 1 < 2):
        with pytest.raises(ValueError, match="smaller than the 2x2 window"):
            K.conv_fft_forward(x, Wt, b, 1, p, {}, relu, pool)
        return
    ws: dict = {}
    dout, cache, dW = _check_against_fused_reference(
        lambda ws_: K.conv_fft_forward(x, Wt, b, 1, p, ws_, relu, pool),
        lambda dout_, cache_, ws_: K.conv_fft_backward(dout_, cache_, True, ws_),
        x, Wt, b, p, relu, pool, rng, ws, fwd_tol=1e-10, bwd_tol=1e-10)
    none, dW2, _ = K.conv_fft_backward(dout, cache, need_dx=False, ws=ws)
    assert none is None
    np.testing.assert_array_equal(dW2, dW)


def test_fft_conv_in_float32_stays_float32_and_agrees_with_the_gemm_kernel():
    # seed-torch's second conv at a small batch: float32 throughout, within float32 rounding of im2col
    rng = np.random.default_rng(11)
    x = rng.standard_normal((6, 16, 24, 24)).astype(np.float32)
    Wt = (rng.standard_normal((32, 16, 5, 5)) * 0.05).astype(np.float32)
    b = rng.standard_normal(32).astype(np.float32)
    out, cache = K.conv_fft_forward(x, Wt, b, 1, 0, {}, True, True)
    ref, ref_cache = K.conv2d_forward(x, Wt, b, 1, 0, {}, True, True)
    assert out.dtype == np.float32 and out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    for got, want in zip(K.conv_fft_backward(dout, cache), K.conv2d_backward(dout, ref_cache)):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_fft_conv_rejects_strides_other_than_one():
    with pytest.raises(ValueError, match="stride 1"):
        K.conv_fft_forward(np.zeros((1, 1, 8, 8)), np.zeros((2, 1, 3, 3)), np.zeros(2), stride=2)


def test_prefer_spectral_for_large_5x5_training_convs_only():
    assert prefer_spectral(32, 64, 5, 5, 12, 12, 1, 0, training=True)  # strong's 2nd conv: 3.3 M MACs
    assert prefer_spectral(16, 32, 5, 5, 24, 24, 1, 0, training=True)  # seed-torch's 2nd: 5.1 M
    assert prefer_spectral(32, 64, 5, 5, 10, 10, 1, 0, training=True)  # seed-torch's 3rd: 1.8 M
    assert not prefer_spectral(16, 32, 5, 5, 12, 12, 1, 0, training=True)  # the default twoconv's 2nd
    assert not prefer_spectral(6, 16, 5, 5, 14, 14, 1, 0, training=True)  # lenet5's 2nd
    assert not prefer_spectral(64, 64, 3, 3, 14, 14, 1, 1, training=True)  # 3x3: never
    assert not prefer_spectral(32, 64, 5, 5, 12, 12, 2, 0, training=True)  # strided
    assert not prefer_spectral(32, 64, 5, 5, 12, 12, 1, 0, training=False)  # inference stays on GEMM


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("pool", [False, True])
@pytest.mark.parametrize("case", BLOCK_CASES, ids=lambda c: "N{}C{}H{}W{}F{}k{}x{}p{}".format(*c))
def test_fused_conv_block_matches_reference_composition(case, relu, pool):
    p = case[-1]
    rng, x, Wt, b = _stride1_case(case, sum(case) + 2 * relu + pool)
    _check_against_fused_reference(
        lambda ws_: K.conv_block_forward(x, Wt, b, p, relu, pool, ws_),
        lambda dout_, cache_, ws_: K.conv_block_backward(dout_, cache_, True, ws_),
        x, Wt, b, p, relu, pool, rng, {}, fwd_tol=1e-12, bwd_tol=1e-11)


@pytest.mark.parametrize("kernel", ["block", "gemm"])
def test_fused_pool_ties_follow_first_maximum(kernel):
    # flat regions make conv outputs exactly equal to the bias: whole windows tie,
    # as in MNIST's background; the gradient must go to the first maximum only
    rng = np.random.default_rng(4)
    x = np.zeros((2, 1, 9, 9))
    x[0, 0, 2:5, 3:7] = 1.0
    Wt = rng.standard_normal((3, 1, 3, 3))
    b = np.array([0.5, -0.5, 0.1])
    conv = K.conv2d_forward_ref(x, Wt, b, 1, 1)
    act = np.maximum(conv, 0)
    dout = rng.standard_normal((2, 3, 4, 4))
    if kernel == "block":
        out, cache = K.conv_block_forward(x, Wt, b, 1, True, True)
        dx, dW, db = K.conv_block_backward(dout, cache, True)
    else:
        out, cache = K.conv2d_forward(x, Wt, b, 1, 1, None, True, True)
        dx, dW, db = K.conv2d_backward(dout, cache, True)
    np.testing.assert_allclose(out, K.maxpool_forward_ref(act, 2, 2), rtol=1e-12, atol=1e-12)
    d = K.maxpool_backward_ref(dout, act, 2, 2) * (conv > 0)
    rdx, rdW, rdb = K.conv2d_backward_ref(d, x, Wt, 1, 1)
    np.testing.assert_allclose(dW, rdW, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, rdb, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, rdx, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("stride, pad, forward_ref, backward_ref, seed", [
    (1, 1, lambda x, W, b: K.conv_block_forward_ref(x, W, b, 1, True, True),
     lambda d, x, W, b: K.conv_block_backward_ref(d, x, W, b, 1, True, True), 12),
    (2, 1, lambda x, W, b: K.conv_rows_forward_ref(x, W, b, 2, 1, True, True),
     lambda d, x, W, b: K.conv_rows_backward_ref(d, x, W, b, 2, 1, True, True), 14),
], ids=["phase-plane block", "row-blocked"])
def test_fused_references_are_the_composition_of_the_reference_kernels(stride, pad, forward_ref, backward_ref, seed):
    # each fused kernel's reference must itself be the obvious chain: conv, then ReLU, then 2x2 max-pool
    rng = np.random.default_rng(seed)
    x, Wt, b = rng.standard_normal((2, 2, 9, 8)), rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3)
    conv = K.conv2d_forward_ref(x, Wt, b, stride, pad)
    act = np.maximum(conv, 0)
    pooled = K.maxpool_forward_ref(act, 2, 2)
    np.testing.assert_array_equal(forward_ref(x, Wt, b), pooled)
    dout = rng.standard_normal(pooled.shape)
    d = K.maxpool_backward_ref(dout, act, 2, 2) * (conv > 0)
    for got, want in zip(backward_ref(dout, x, Wt, b), K.conv2d_backward_ref(d, x, Wt, stride, pad)):
        np.testing.assert_array_equal(got, want)


def test_kernel_outputs_are_views_of_the_layout_each_kernel_documents():
    # what travels between layers: CHWN memory from im2col and pooling, CNHW from the phase-plane block
    rng = np.random.default_rng(13)
    x, Wt, b = rng.standard_normal((3, 2, 10, 10)), rng.standard_normal((4, 2, 3, 3)), rng.standard_normal(4)
    out, _ = K.conv2d_forward(x, Wt, b, 1, 0, None, True, True)
    assert out.transpose(1, 2, 3, 0).flags.c_contiguous
    pooled, _ = K.maxpool_forward(x, 2, 2)
    assert pooled.transpose(1, 2, 3, 0).flags.c_contiguous
    block, _ = K.conv_block_forward(x, Wt, b, 0, True, True)
    assert block.transpose(1, 0, 2, 3).flags.c_contiguous
    np.testing.assert_allclose(block, out, rtol=1e-12, atol=1e-12)


def test_prefer_block_only_for_pooled_layers_with_few_input_values():
    assert prefer_block(1, 5, 5, True)  # first conv of simple: C*kh*kw = 25
    assert not prefer_block(1, 5, 5, False)  # nothing to pool: the plain GEMM kernel
    assert not prefer_block(16, 5, 5, True)  # second conv of twoconv: 400 values per column


# (N, C, H, W, F, k, pad) of stride-1 convs that grow their input (pad > (k-1)/2): dx as a full correlation
GROWING_CASES = [(2, 3, 7, 6, 4, 3, 2), (2, 2, 6, 9, 3, 5, 4)]


@pytest.mark.parametrize("case", GROWING_CASES, ids=lambda c: "N{}C{}H{}W{}F{}k{}p{}".format(*c))
def test_full_correlation_input_gradient_matches_reference_and_transposed_gemm(case):
    N, C, H, W, F, k, p = case
    rng = np.random.default_rng(sum(case))
    x, Wt, b = rng.standard_normal((N, C, H, W)), rng.standard_normal((F, C, k, k)), rng.standard_normal(F)
    out, cache = K.conv2d_forward(x, Wt, b, 1, p)
    assert K.full_correlation_pays(Wt.shape, cache["x_shape"], 1, p)  # the backward below takes that path
    dout = rng.standard_normal(out.shape)
    dx, dW, db = K.conv2d_backward(dout, cache, True, {})
    rdx, rdW, rdb = K.conv2d_backward_ref(dout, x, Wt, 1, p)
    np.testing.assert_allclose(dx, rdx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dW, rdW, rtol=1e-12, atol=1e-12)
    # the same dx as the transposed GEMM + col2im it replaces
    dz = K.to_chwn(dout)
    dcols = np.matmul(Wt.reshape(F, -1).T, dz.reshape(F, -1)).reshape(C, k, k, *dz.shape[1:])
    np.testing.assert_allclose(K.dx_full_correlation(dz, Wt, p), K.col2im(dcols, (C, H, W, N), 1, p),
                               rtol=1e-12, atol=1e-12)


def test_full_correlation_only_where_it_saves_work():
    # deep's 14x14 -> 16x16 conv takes it; same-size and valid convs (the default twoconv's
    # second conv among them, whose trained bits must not change) keep the transposed GEMM
    assert K.full_correlation_pays((32, 32, 3, 3), (32, 14, 14, 100), 1, 2)
    assert not K.full_correlation_pays((32, 32, 3, 3), (32, 28, 28, 100), 1, 1)
    assert not K.full_correlation_pays((32, 16, 5, 5), (16, 12, 12, 100), 1, 0)
    assert not K.full_correlation_pays((4, 3, 3, 3), (3, 9, 9, 2), 2, 2)  # strided
    assert not K.full_correlation_pays((4, 3, 3, 3), (3, 9, 9, 2), 1, 3)  # pad > k - 1


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_split_kernels_give_the_same_bits_for_any_thread_count(monkeypatch, threads):
    # im2col and col2im split their loops over threads; each thread owns disjoint outputs,
    # so the result is bit-identical to the one-thread reference whatever the count
    from pipeline.nn.kernels import parallel

    rng = np.random.default_rng(21)
    x = rng.standard_normal((6, 17, 15, 40)).astype(np.float32)  # CHWN, big enough to be split
    im2col_module = importlib.import_module("pipeline.nn.kernels.im2col")
    monkeypatch.setattr(im2col_module, "split_run", parallel.split_run_ref)
    cols_ref = K.im2col(x, 5, 5, 1, 2).copy()
    back_ref = K.col2im(cols_ref, x.shape, 1, 2)
    monkeypatch.undo()
    monkeypatch.setattr(parallel, "THREADS", threads)
    monkeypatch.setattr(parallel, "MIN_ITEMS", 1)
    cols = K.im2col(x, 5, 5, 1, 2)
    np.testing.assert_array_equal(cols, cols_ref)
    np.testing.assert_array_equal(K.col2im(cols, x.shape, 1, 2), back_ref)


def test_split_run_covers_the_range_once_and_reraises():
    from pipeline.nn.kernels import parallel

    seen = np.zeros(11, int)

    def mark(lo, hi):
        seen[lo:hi] += 1

    parallel.split_run(mark, 11, parallel.MIN_ITEMS)
    np.testing.assert_array_equal(seen, 1)

    def boom(lo, hi):
        raise RuntimeError(f"part {lo}")

    with pytest.raises(RuntimeError, match="part"):
        parallel.split_run(boom, 4, parallel.MIN_ITEMS)


def test_processes_share_the_cores_and_the_limit_reaches_openblas(monkeypatch):
    from threadpoolctl import threadpool_info

    from pipeline.nn.kernels import parallel

    assert [parallel.threads_per_process(w, cores=2) for w in (1, 2, 3)] == [2, 1, 1]
    assert parallel.threads_per_process(2, cores=8) == 4 and parallel.threads_per_process(0, cores=4) == 4
    monkeypatch.setattr(parallel, "THREADS", 2)
    with parallel.limited_to(1):
        assert parallel.THREADS == 1
        assert {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"} == {1}
        x = np.arange(12.0).reshape(3, 4)
        np.testing.assert_array_equal(x @ x.T, np.einsum("ik,jk->ij", x, x))  # BLAS still works
    assert parallel.THREADS == 2  # restored


def test_split_run_works_in_a_forked_child_after_the_parent_used_its_threads(monkeypatch):
    # Luigi forks worker processes: a pool made in the parent must not be reused (its threads are gone)
    import multiprocessing

    from pipeline.nn.kernels import parallel

    monkeypatch.setattr(parallel, "THREADS", 2)
    seen = np.zeros(4, int)
    parallel.split_run(lambda lo, hi: seen.__setitem__(slice(lo, hi), 1), 4, parallel.MIN_ITEMS)
    assert seen.sum() == 4 and parallel._pool is not None
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=parallel.split_run, args=(lambda lo, hi: None, 4, parallel.MIN_ITEMS))
    child.start()
    child.join(timeout=30)
    if child.is_alive():  # hung on the parent's dead threads
        child.kill()
        child.join()
    assert child.exitcode == 0


def test_engine_layers_benchmark_times_every_step_of_the_plan():
    # benchmarks/engine_layers.py, run as documented: one line per step of kaggle's plan, each
    # strided conv named with its kernel, and a total that is the sum of the lines
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "benchmarks/engine_layers.py", "--preset", "kaggle", "--steps", "2",
                           "--warmup", "0", "--batch", "8"], cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    steps = lines[2:-1]
    assert len(steps) == 19  # 7 fused convs, 7 BatchNorms, 3 dropouts, flatten, dense
    assert sum(s.startswith("conv 32->32 5x5/2 +relu") for s in steps) == 1
    assert sum(s.startswith("BatchNorm") for s in steps) == 7
    times = [(float(s.split()[-3]), float(s.split()[-2])) for s in steps]
    total = lines[-1].split()
    assert total[0] == "total"
    assert float(total[1]) == pytest.approx(sum(f for f, _ in times), abs=0.05 + 0.005 * len(times))
    assert float(total[2]) == pytest.approx(sum(b for _, b in times), abs=0.05 + 0.005 * len(times))
