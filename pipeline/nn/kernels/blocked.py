"""Convolution as im2col + GEMM in blocks of output rows, each block's columns multiplied and
its bias, ReLU and 2x2 max-pool applied while they are in cache; and its slow reference.

Why: the whole-batch kernel (:mod:`.im2col`) writes the whole column matrix (90 MB per
batch of 100 for seed-keras's 32->32 3x3 conv on 28x28), OpenBLAS reads it back from
memory, and the bias, ReLU and pool passes stream the whole output again. Cut into blocks
of a few MB, the GEMM reads columns that were just written (measured 60 -> 85 GFLOPS on
one core) and the epilogue runs on a block that is still in cache.

Each block is built in one reused scratch block, so the whole matrix never exists (which
also keeps the process small); :func:`conv_rows_backward` rebuilds the blocks. The forward
pass computes the same dot products as the whole-batch kernel (OpenBLAS may use another
inner kernel for a small block, so the last bits can differ); the backward pass sums dW,
db and dx block by block. :func:`pipeline.nn.fusion.prefer_rows` decides which kernel runs.

Memory: activations in CHWN order (see :mod:`.layout`); the output and dx are (N, C, H, W)
views of CHWN memory. The padded input is kept for the backward pass (in ``ws``, or the input
itself without padding: as for every layer's cached input, it must not change in between).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from pipeline.nn.kernels.im2col import conv2d_backward_ref, conv2d_forward_ref
from pipeline.nn.kernels.layout import conv_output_size, from_chwn, to_chwn, workspace
from pipeline.nn.kernels.pooling import (WINDOW_2X2, maxpool_backward_ref, maxpool_forward_ref,
                                         route_to_first_max)

# Bytes of one column block. Measured (1 thread, batch 100): for seed-keras's 32->32 3x3
# conv on 28x28 one output row per block (3.2 MB of columns) was the fastest of 1, 2, 4, 7
# and 14 rows, and faster than half or quarter rows (the whole batch at once: 30% slower);
# deep's smaller convs ran best with 1-4 MB blocks (8 MB: 10-20% slower).
BLOCK_BYTES = 2 << 20


def rows_per_block(K: int, OW: int, N: int, itemsize: int, OH: int) -> int:
    """Output rows per block: as many as fit in BLOCK_BYTES of columns (K, rows*OW*N), at least 1, at most OH."""
    return min(OH, max(1, BLOCK_BYTES // (K * OW * N * itemsize)))


def _fill(cols: np.ndarray, xp: np.ndarray, r0: int, r1: int, stride: int) -> np.ndarray:
    """Columns of output rows r0..r1 into ``cols`` (C, kh, kw, rows, OW, N) from xp (C, Hp, Wp, N).

    ``cols[c, i, j, r, ow, n] = xp[c, (r0 + r)*stride + i, ow*stride + j, n]`` for r < r1 - r0.
    Returns the (C*kh*kw, (r1-r0)*OW*N) GEMM operand, a view of ``cols``.
    """
    C, kh, kw, _, OW, N = cols.shape
    blk = cols[:, :, :, :r1 - r0]
    sC, sH, sW, sN = xp.strides
    strides = (sC, sH, sW, sH * stride, sW * stride, sN)
    # all kh*kw windows as one strided view, copied in one call (kh*kw separate slice copies
    # measured 1.4-1.8x slower: NumPy pays per call); inner runs of OW*N floats. A view made
    # straight on the buffer costs 1.6 us against as_strided's 7 (the extent is bounds-checked).
    if xp.flags.c_contiguous:
        windows = np.ndarray(blk.shape, xp.dtype, buffer=xp, offset=r0 * stride * sH, strides=strides)
    else:
        windows = as_strided(xp[:, r0 * stride:], shape=blk.shape, strides=strides, writeable=False)
    np.copyto(blk, windows)
    return blk.reshape(C * kh * kw, -1)


def conv_rows_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int = 1, pad: int = 0,
                      ws: dict | None = None, relu: bool = False, pool: bool = False
                      ) -> tuple[np.ndarray, dict[str, Any]]:
    """Convolution, optionally followed by ReLU and a 2x2/stride-2 max-pool (floor mode).

    x : (N, C, H, W), any layout; W : (F, C, kh, kw); b : (F,).
    Returns out (N, F, OH, OW), or (N, F, OH//2, OW//2) with ``pool`` (a view of CHWN
    memory), and the cache for :func:`conv_rows_backward`. The same dot products, bias, max
    and ReLU as :func:`.im2col.conv2d_forward` (bias and ReLU after the max, as there).
    """
    F, C, kh, kw = W.shape
    if x.ndim != 4 or x.shape[1] != C:
        raise ValueError(f"conv2d: input shape {x.shape} does not match weights {W.shape} (need (N, {C}, H, W))")
    xc = to_chwn(x)
    _, H, Wd, N = xc.shape
    OH, OW = conv_output_size(H, kh, stride, pad), conv_output_size(Wd, kw, stride, pad)
    if OH < 1 or OW < 1:
        raise ValueError(f"conv: kernel {kh}x{kw} does not fit the padded input {H + 2 * pad}x{Wd + 2 * pad}")
    PH, PW = OH // 2, OW // 2
    if pool and (PH < 1 or PW < 1):
        raise ValueError(f"maxpool: conv output {OH}x{OW} is smaller than the 2x2 window")
    if pad:
        xp = workspace(ws, "xpad", (C, H + 2 * pad, Wd + 2 * pad, N), xc.dtype, zero=True)
        xp[:, pad:pad + H, pad:pad + Wd] = xc  # the border stays zero: only the interior is written
    else:
        xp = xc
    K = C * kh * kw
    dt = np.result_type(xc, W)
    rows = rows_per_block(K, OW, N, dt.itemsize, OH)
    cols = workspace(ws, "cols_block", (C, kh, kw, rows, OW, N), dt)
    W2 = W.reshape(F, K)
    Z = np.empty((F, OH, OW, N), dt)
    bias = b[:, None, None, None]
    if pool:
        m = np.empty((F, PH, PW, N), dt)
        out = np.empty((F, PH, PW, N), dt)
        pooled = 0  # pooled rows done
    else:
        out = Z
    for r0 in range(0, OH, rows):
        r1 = min(OH, r0 + rows)
        zb = Z[:, r0:r1]
        np.matmul(W2, _fill(cols, xp, r0, r1, stride), out=zb.reshape(F, -1))
        # the epilogue while the block is in cache: bias and ReLU (after the max, which they
        # commute with, on the 4x smaller pooled rows) on every 2x2 window now complete
        if pool:
            p0, p1 = pooled, min(PH, r1 // 2)
            if p1 > p0:
                z6 = Z[:, 2 * p0:2 * p1, :2 * PW].reshape(F, p1 - p0, 2, PW, 2, N)
                mb, ob = m[:, p0:p1], out[:, p0:p1]
                np.maximum(z6[:, :, 0, :, 0], z6[:, :, 0, :, 1], out=mb)
                np.maximum(mb, z6[:, :, 1, :, 0], out=mb)
                np.maximum(mb, z6[:, :, 1, :, 1], out=mb)
                np.add(mb, bias, out=ob)
                if relu:
                    np.maximum(ob, 0, out=ob)
                pooled = p1
        else:
            zb += bias
            if relu:
                np.maximum(zb, 0, out=zb)
    cache = {"W": W, "xc": xc, "xp": xp, "x_shape": xc.shape, "stride": stride, "pad": pad, "relu": relu,
             "pool": pool, "OH": OH, "OW": OW, "rows": rows, "out": out}
    if pool:
        cache.update(Z6=Z[:, :2 * PH, :2 * PW].reshape(F, PH, 2, PW, 2, N), m=m)
    return from_chwn(out), cache


def _dz_rows(dc: np.ndarray, cache: dict[str, Any], r0: int, r1: int, dz: np.ndarray) -> np.ndarray:
    """dZ of conv output rows r0..r1 into ``dz`` (F, r1-r0, OW, N), any strided view.

    dc : the gradient of the forward output (F, PH, PW, N) or (F, OH, OW, N), CHWN.
    The ReLU mask, then the pool routing to the first maximum of each window (torch's rule).
    Returns the block's gradient at the bias (its sum over all but axis 0 is db's share).
    Cells in no pool window (a cropped odd last row or column) are not written.
    """
    out = cache["out"]
    if cache["pool"]:
        p0, p1 = r0 // 2, r1 // 2
        g = dc[:, p0:p1]
        if cache["relu"]:
            g = g * (out[:, p0:p1] > 0)
        F, _, OW, N = dz.shape
        z6 = cache["Z6"][:, p0:p1]
        d6 = dz[:, :2 * (p1 - p0), :2 * (OW // 2)].reshape(F, p1 - p0, 2, OW // 2, 2, N)
        route_to_first_max([z6[:, :, pi, :, pj] for pi, pj in WINDOW_2X2], cache["m"][:, p0:p1], g,
                           [d6[:, :, pi, :, pj] for pi, pj in WINDOW_2X2])
        return g
    if cache["relu"]:
        np.multiply(dc[:, r0:r1], out[:, r0:r1] > 0, out=dz)
    else:
        dz[...] = dc[:, r0:r1]
    return dz


def conv_rows_backward(dout: np.ndarray, cache: dict[str, Any], need_dx: bool = True,
                       ws: dict | None = None) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients of :func:`conv_rows_forward`; dout has the shape of its output (any layout).

    Returns (dx (N, C, H, W), a view of CHWN memory, or None when ``need_dx`` is False;
    dW (F, C, kh, kw); db (F,)). dZ comes block by block (ReLU mask, pool routing).

    A conv that keeps or grows its size (stride 1, pad <= k-1) takes its input gradient as
    the correlation of dZ, zero-padded by k-1-pad, with the kernel flipped and its channel
    axes swapped, blocked like the forward pass: copies into a cache-resident block instead
    of col2im's k*k read-modify-write passes. The same columns of dZ give dW, correlated
    with the input (``dW[f, c, i, j] = sum cols[f, k-1-i, k-1-j, y, x, n] * x[c, y, x, n]``),
    so the input's columns are never rebuilt (seed-keras's 32->32 conv: 20% faster than the
    whole-batch backward). A stride-1 conv that shrinks its input (the correlation would do
    more GEMM work) goes to :func:`_shrinking_backward`, a strided one to
    :func:`_strided_backward` (a correlation per phase of the input). With no dx wanted, the
    input's columns are rebuilt per block for dW.
    """
    W, xp, stride, pad, rows = cache["W"], cache["xp"], cache["stride"], cache["pad"], cache["rows"]
    F, C, kh, kw = W.shape
    _, H, Wd, N = cache["x_shape"]
    OH, OW = cache["OH"], cache["OW"]
    K = C * kh * kw
    dc = to_chwn(dout)  # (F, PH, PW, N) or (F, OH, OW, N)
    dt = dc.dtype
    q_h, q_w = kh - 1 - pad, kw - 1 - pad
    correlate = need_dx and stride == 1 and q_h >= 0 and q_w >= 0 and H * Wd <= OH * OW
    # dZ in full, zero where no pool window reaches (those cells are never written); when
    # correlating, inside the zero border the correlation needs
    phases = need_dx and stride > 1
    if correlate:
        dzp = workspace(ws, "dzpad", (F, OH + 2 * q_h, OW + 2 * q_w, N), dt, zero=True)
        dZ = dzp[:, q_h:q_h + OH, q_w:q_w + OW]
    elif phases:
        (lo_h, hi_h), (lo_w, hi_w) = _phase_padding(kh, pad, stride, H, OH), _phase_padding(kw, pad, stride, Wd, OW)
        dzp = workspace(ws, "dzpad", (F, lo_h + OH + hi_h, lo_w + OW + hi_w, N), dt, zero=True)
        dZ = dzp[:, lo_h:lo_h + OH, lo_w:lo_w + OW]
    else:
        dZ = workspace(ws, "dZ", (F, OH, OW, N), dt, zero=True)
    db = np.zeros(F, dt)
    step = max(2, rows - rows % 2) if cache["pool"] else rows  # whole 2x2 windows
    for r0 in range(0, OH, step):
        r1 = min(OH, r0 + step)
        db += _dz_rows(dc, cache, r0, r1, dZ[:, r0:r1]).sum(axis=(1, 2, 3))
    if correlate:
        xc, KF = cache["xc"], F * kh * kw
        Wflip = np.ascontiguousarray(W[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)).reshape(C, KF)
        dx = np.empty((C, H, Wd, N), dt)
        dWf = np.zeros((KF, C), dt)  # dW with the kernel flipped, (F, kh, kw) x C
        part = np.empty((KF, C), dt)
        rows_dx = rows_per_block(KF, Wd, N, dt.itemsize, H)
        dcols = workspace(ws, "dcols_block", (F, kh, kw, rows_dx, Wd, N), dt)
        for r0 in range(0, H, rows_dx):
            r1 = min(H, r0 + rows_dx)
            blk = _fill(dcols, dzp, r0, r1, 1)  # (F*kh*kw, (r1-r0)*W*N)
            np.matmul(Wflip, blk, out=dx[:, r0:r1].reshape(C, -1))
            np.matmul(blk, xc[:, r0:r1].reshape(C, -1).T, out=part)  # long reduction: big operand left
            dWf += part
        dW = np.ascontiguousarray(dWf.reshape(F, kh, kw, C)[:, ::-1, ::-1].transpose(0, 3, 1, 2))
        return from_chwn(dx), dW, db
    if phases:
        return _strided_backward(dzp, (lo_h, lo_w), cache, ws, db)
    if need_dx:
        return _shrinking_backward(dZ, cache, ws, db)
    # no dx: dW alone, from the input's columns rebuilt per block
    cols = workspace(ws, "cols_block", (C, kh, kw, rows, OW, N), dt)
    dWt = np.zeros((K, F), dt)  # dW transposed: the long-reduction GEMM runs faster with cols on the left
    part = np.empty((K, F), dt)
    for r0 in range(0, OH, rows):
        r1 = min(OH, r0 + rows)
        np.matmul(_fill(cols, xp, r0, r1, stride), dZ[:, r0:r1].reshape(F, -1).T, out=part)
        dWt += part
    return None, np.ascontiguousarray(dWt.T).reshape(W.shape), db


def _phase_taps(k: int, pad: int, stride: int, a: int) -> tuple[int, int, int]:
    """The kernel taps that reach input phase ``a`` of a strided conv (along one axis).

    Input index ``y = stride*u + a`` is reached by taps ``i = r + stride*t`` (t = 0 .. T-1)
    from output index ``u + s - t``; returns (r, T, s). T is 0 when no tap reaches the phase
    (a kernel narrower than the stride).
    """
    r = (a + pad) % stride
    return r, max(0, -(-(k - r) // stride)), (a + pad - r) // stride


def _phase_padding(k: int, pad: int, stride: int, size: int, out: int) -> tuple[int, int]:
    """Zero rows (before, after) around dZ's ``out`` rows so every phase's correlation of
    :func:`_strided_backward` reads inside the buffer; ``size`` is the input's length."""
    lo = hi = 0
    for a in range(min(stride, size)):
        _, T, s = _phase_taps(k, pad, stride, a)
        if T:
            lo = max(lo, T - 1 - s)
            hi = max(hi, -(-(size - a) // stride) - 1 + s - (out - 1))
    return lo, hi


def _strided_backward(dzp: np.ndarray, lows: tuple[int, int], cache: dict[str, Any], ws: dict | None,
                      db: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dx and dW of a strided conv, from dZ (F, OH, OW, N) inside the zero border of ``dzp``
    (``lows`` = its top and left widths, :func:`_phase_padding`).

    Split the input into its stride x stride phases (``x[:, a::s, b::s]``): each phase is
    reached by a sub-kernel of W (taps a stride apart, :func:`_phase_taps`) from dZ at stride
    1, so its gradient is a plain correlation of dZ with that sub-kernel flipped, blocked as
    in :func:`conv_rows_backward`: one GEMM per block with the full channel reduction
    (F * taps), where the column fold does a GEMM with only F to reduce over, writes the whole
    (C*kh*kw, OH*OW*N) matrix and adds it back kh*kw times. The same columns of dZ, against the
    phase of the input, give that sub-kernel's dW. The same multiply-adds as the fold.
    """
    W, xc, stride = cache["W"], cache["xc"], cache["stride"]
    F, C, kh, kw = W.shape
    _, H, Wd, N = cache["x_shape"]
    pad = cache["pad"]
    dt = dzp.dtype
    dx = np.empty((C, H, Wd, N), dt)
    dW = np.zeros(W.shape, dt)  # taps that reach no input row or column (an input smaller than the stride) stay 0
    for a in range(min(stride, H)):
        ra, Ta, sa = _phase_taps(kh, pad, stride, a)
        for b in range(min(stride, Wd)):
            rb, Tb, sb = _phase_taps(kw, pad, stride, b)
            if not (Ta and Tb):  # no tap reaches this phase
                dx[:, a::stride, b::stride] = 0
                continue
            xph = np.ascontiguousarray(xc[:, a::stride, b::stride])  # (C, U, V, N)
            U, V = xph.shape[1:3]
            KF = F * Ta * Tb
            # flipped sub-kernel, channel axes swapped: column (f, t', t'') meets tap t = T-1-t'
            Wm = np.ascontiguousarray(W[:, :, ra::stride, rb::stride][:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
                                      ).reshape(C, KF)
            top, left = lows[0] + sa - (Ta - 1), lows[1] + sb - (Tb - 1)
            # _fill's strided view is not bounds-checked: the border must hold every window
            assert top >= 0 and left >= 0 and top + U + Ta - 1 <= dzp.shape[1] and left + V + Tb - 1 <= dzp.shape[2]
            src = dzp[:, top:, left:]
            rows = rows_per_block(KF, V, N, dt.itemsize, U)
            dcols = workspace(ws, f"dcols_phase{a}{b}", (F, Ta, Tb, rows, V, N), dt)
            dxph = workspace(ws, f"dx_phase{a}{b}", (C, U, V, N), dt)
            dWm = np.zeros((KF, C), dt)
            part = np.empty((KF, C), dt)
            for r0 in range(0, U, rows):
                r1 = min(U, r0 + rows)
                blk = _fill(dcols, src, r0, r1, 1)  # (F*Ta*Tb, (r1-r0)*V*N)
                np.matmul(Wm, blk, out=dxph[:, r0:r1].reshape(C, -1))
                np.matmul(blk, xph[:, r0:r1].reshape(C, -1).T, out=part)  # long reduction: big operand left
                dWm += part
            dx[:, a::stride, b::stride] = dxph
            dW[:, :, ra::stride, rb::stride] = dWm.reshape(F, Ta, Tb, C)[:, ::-1, ::-1].transpose(0, 3, 1, 2)
    return from_chwn(dx), dW, db


def _shrinking_backward(dZ: np.ndarray, cache: dict[str, Any], ws: dict | None, db: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dx and dW of a stride-1 conv that shrinks its input (5x5 valid), from dZ (F, OH, OW, N).

    Per block of output rows: dW += cols @ dZ.T on the input's columns rebuilt in cache; and
    for dx, the kw shifts of the block's dZ across every padded input column x
    (``wide[f, j', r, x] = dZ[f, r0 + r, x - (kw-1-j')]``, zero outside) give
    ``T[c, i, r, x] = sum_{f,j} W[f, c, i, j] dZ[f, r, x - j]`` in one GEMM, folded into dx
    by kh row-shifted adds instead of col2im's kh*kw: on seed-torch's 16->32 5x5 conv 20% more
    GEMM work (x runs over Wp, not OW) buys 4x less folding. (dW from the same shifts, one GEMM
    per kernel row on the input rows in place, measured 4-10% slower than rebuilding columns.)
    """
    W, xp, pad = cache["W"], cache["xp"], cache["pad"]
    F, C, kh, kw = W.shape
    _, H, Wd, N = cache["x_shape"]
    OH, OW, rows = cache["OH"], cache["OW"], cache["rows"]
    K = C * kh * kw
    dt = dZ.dtype
    Wp = xp.shape[2]  # = OW + kw - 1
    cols = workspace(ws, "cols_block", (C, kh, kw, rows, OW, N), dt)
    dWt = np.zeros((K, F), dt)  # dW transposed: the long-reduction GEMM runs faster with cols on the left
    part = np.empty((K, F), dt)
    Wt = np.ascontiguousarray(W[:, :, :, ::-1].transpose(1, 2, 0, 3)).reshape(C * kh, F * kw)
    wide = workspace(ws, "dz_wide", (F, rows, OW + 2 * (kw - 1), N), dt, zero=True)
    wcols = workspace(ws, "dcols_block", (F, 1, kw, rows, Wp, N), dt)
    T = workspace(ws, "dx_rows", (C, kh, rows, Wp, N), dt)
    dxp = np.zeros(xp.shape, dt)
    for r0 in range(0, OH, rows):
        r1 = min(OH, r0 + rows)
        n = r1 - r0
        np.matmul(_fill(cols, xp, r0, r1, 1), dZ[:, r0:r1].reshape(F, -1).T, out=part)
        dWt += part
        wide[:, :n, kw - 1:kw - 1 + OW] = dZ[:, r0:r1]  # the border stays zero
        Tb = T[:, :, :n]
        np.matmul(Wt, _fill(wcols, wide, 0, n, 1), out=Tb.reshape(C * kh, -1))
        for i in range(kh):
            dxp[:, r0 + i:r1 + i] += Tb[:, i]
    dW = np.ascontiguousarray(dWt.T).reshape(W.shape)
    return from_chwn(dxp[:, pad:pad + H, pad:pad + Wd]), dW, db


def conv_rows_forward_ref(x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int = 1, pad: int = 0,
                          relu: bool = False, pool: bool = False) -> np.ndarray:
    """Slow reference of :func:`conv_rows_forward`: reference conv, then ReLU, then reference 2x2 max-pool.

    x (N, C, H, W), W (F, C, kh, kw), b (F,) -> (N, F, OH, OW), or (N, F, OH//2, OW//2) with ``pool``.
    """
    conv = conv2d_forward_ref(x, W, b, stride, pad)
    act = np.maximum(conv, 0) if relu else conv
    return maxpool_forward_ref(act, 2, 2) if pool else act


def conv_rows_backward_ref(dout: np.ndarray, x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int = 1,
                           pad: int = 0, relu: bool = False, pool: bool = False
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slow reference gradients of :func:`conv_rows_forward`, by the chain rule through the references.

    dout has the shape of the forward output; returns (dx, dW, db) of the shapes of x, W and b.
    """
    conv = conv2d_forward_ref(x, W, b, stride, pad)
    act = np.maximum(conv, 0) if relu else conv
    d = maxpool_backward_ref(dout, act, 2, 2) if pool else dout
    d = d * (conv > 0) if relu else d
    return conv2d_backward_ref(d, x, W, stride, pad)
