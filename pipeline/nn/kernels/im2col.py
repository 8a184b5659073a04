"""Convolution as im2col + one GEMM (any stride and padding), with ReLU and a 2x2
max-pool optionally fused in, and the slow references it is tested against.

Memory: activations are kept in CHWN order (batch innermost, see :mod:`.layout`)
and the kernels hand back (N, C, H, W) views of that memory. With the batch
innermost, im2col and col2im are kh*kw long copies/adds (no short rows), the
weights (F, C, kh, kw) reshape to the GEMM operand (F, C*kh*kw) without a copy,
the GEMM result (F, OH*OW*N) *is* the CHWN output (no transpose), and per-channel
sums (bias, BatchNorm) run over contiguous rows.

Threads: the window copies of im2col and the slice-adds of col2im are split over
the cores (:mod:`.parallel`) when large; each thread owns its window offsets or
its channels, so the results are the same bits whatever the thread count.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.nn.kernels.layout import conv_output_size, from_chwn, to_chwn, workspace
from pipeline.nn.kernels.parallel import split_run
from pipeline.nn.kernels.pooling import WINDOW_2X2, route_to_first_max


def im2col(xc: np.ndarray, kh: int, kw: int, stride: int = 1, pad: int = 0,
           ws: dict | None = None) -> np.ndarray:
    """Unfold a CHWN image batch into convolution columns.

    xc : ndarray of shape (C, H, W, N), C-contiguous.
    Returns cols of shape (C, kh, kw, OH, OW, N) (C-contiguous), where
    ``cols[c, i, j, oh, ow, n] = xpad[c, oh*stride + i, ow*stride + j, n]``;
    reshaped to (C*kh*kw, OH*OW*N) it is the right GEMM operand.
    """
    C, H, W, N = xc.shape
    OH = conv_output_size(H, kh, stride, pad)
    OW = conv_output_size(W, kw, stride, pad)
    if pad:
        xp = workspace(ws, "xpad", (C, H + 2 * pad, W + 2 * pad, N), xc.dtype, zero=True)
        xp[:, pad:pad + H, pad:pad + W] = xc
    else:
        xp = xc
    cols = workspace(ws, "cols", (C, kh, kw, OH, OW, N), xc.dtype)

    def copy(lo: int, hi: int) -> None:
        # kh*kw window copies; with stride 1 each is C runs of OW*N floats
        for o in range(lo, hi):
            i, j = divmod(o, kw)
            cols[:, i, j] = xp[:, i:i + stride * OH:stride, j:j + stride * OW:stride]

    split_run(copy, kh * kw, cols.size)  # each thread its own window offsets
    return cols


def col2im(dcols: np.ndarray, x_shape: tuple, stride: int = 1, pad: int = 0,
           ws: dict | None = None) -> np.ndarray:
    """Adjoint of :func:`im2col`: fold columns back, summing overlaps.

    dcols : ndarray of shape (C, kh, kw, OH, OW, N).
    x_shape : (C, H, W, N) of the unpadded input.
    Returns dx of shape (C, H, W, N) (a fresh array).
    """
    C, kh, kw, OH, OW, N = dcols.shape
    _, H, W, _ = x_shape
    dxp = np.zeros((C, H + 2 * pad, W + 2 * pad, N), dcols.dtype)

    def fold(lo: int, hi: int) -> None:
        # kh*kw vectorised slice-adds replace the book's np.add.at / Python loops; the
        # windows overlap, so threads split the channels and each adds in the same order
        for i in range(kh):
            for j in range(kw):
                dxp[lo:hi, i:i + stride * OH:stride, j:j + stride * OW:stride] += dcols[lo:hi, i, j]

    split_run(fold, C, dcols.size)
    if pad:
        return dxp[:, pad:pad + H, pad:pad + W].copy()
    return dxp


def weight_grad(dz: np.ndarray, cols: np.ndarray, shape: tuple) -> np.ndarray:
    """dW = dz @ cols.T, for dz (F, P) and cols (K, P); returns shape (F, C, kh, kw).

    Computed as (cols @ dz.T).T: OpenBLAS runs this long-reduction GEMM about
    15-50% faster with the big operand on the left (measured on 2 cores for the
    conv layers of simple and seed-torch); the (K, F) result is tiny to transpose.
    Shared with the phase-plane kernel.
    """
    return np.ascontiguousarray(np.matmul(cols, dz.T).T).reshape(shape)


def pool_bias_relu(Z: np.ndarray, b: np.ndarray, relu: bool, pool: bool, cache: dict[str, Any]) -> np.ndarray:
    """A convolution's epilogue: Z (F, OH, OW, N) CHWN, the products without bias, then
    an optional 2x2/stride-2 max-pool (floor mode), the bias and an optional ReLU.

    Returns (F, OH, OW, N), or (F, OH//2, OW//2, N) with ``pool`` (fresh memory with the pool;
    else Z itself, written in place); records in ``cache`` what :func:`pool_bias_relu_backward`
    needs. ReLU and the bias are applied after the max: they commute with it, and the pooled
    array is 4x smaller. Shared by every GEMM- and FFT-based convolution kernel.
    """
    F, OH, OW, N = Z.shape
    cache.update(relu=relu, pool=pool, OH=OH, OW=OW)
    if pool:
        PH, PW = OH // 2, OW // 2
        if PH < 1 or PW < 1:
            raise ValueError(f"maxpool: conv output {OH}x{OW} is smaller than the 2x2 window")
        # (F, PH, 2, PW, 2, N) view of the cropped output: each phase is runs of N
        Z6 = Z[:, :2 * PH, :2 * PW].reshape(F, PH, 2, PW, 2, N)
        m = np.maximum(Z6[:, :, 0, :, 0], Z6[:, :, 0, :, 1])
        np.maximum(m, Z6[:, :, 1, :, 0], out=m)
        np.maximum(m, Z6[:, :, 1, :, 1], out=m)
        out = m + b[:, None, None, None]
        cache.update(Z6=Z6, m=m)
    else:
        out = Z
        out += b[:, None, None, None]
    if relu:
        np.maximum(out, 0, out=out)
    cache["out"] = out
    return out


def pool_bias_relu_backward(dout: np.ndarray, cache: dict[str, Any], ws: dict | None = None
                            ) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of :func:`pool_bias_relu`: dout has the shape of its output (any layout).
    Returns (dZ (F, OH, OW, N) CHWN, db (F,)). The pool gradient goes to the first maximum
    in row-major window order (torch's rule), so ties (flat background regions of MNIST)
    never duplicate gradient; a cropped last row/column (odd OH or OW) gets zero.
    """
    dc = to_chwn(dout)  # (F, PH, PW, N) or (F, OH, OW, N)
    F = dc.shape[0]
    if cache["relu"]:
        dc = dc * (cache["out"] > 0)
    db = dc.reshape(F, -1).sum(axis=1)
    if cache["pool"]:
        Z6, m = cache["Z6"], cache["m"]
        OH, OW, N = cache["OH"], cache["OW"], dc.shape[3]
        PH, PW = OH // 2, OW // 2
        full = workspace(ws, "dZ", (F, OH, OW, N), dc.dtype, zero=True)
        d6 = full[:, :2 * PH, :2 * PW].reshape(F, PH, 2, PW, 2, N)
        route_to_first_max([Z6[:, :, pi, :, pj] for pi, pj in WINDOW_2X2], m, dc,
                           [d6[:, :, pi, :, pj] for pi, pj in WINDOW_2X2])
        dc = full
    return dc, db


def conv2d_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int = 1, pad: int = 0,
                   ws: dict | None = None, relu: bool = False, pool: bool = False
                   ) -> tuple[np.ndarray, dict[str, Any]]:
    """2-D cross-correlation (what deep learning calls convolution), optionally
    followed by ReLU and by a 2x2/stride-2 max-pool (floor mode).

    x : (N, C, H, W), any layout; W : (F, C, kh, kw); b : (F,).
    Returns out of shape (N, F, OH, OW), or (N, F, OH//2, OW//2) with ``pool``
    (a view of CHWN memory), and the cache that :func:`conv2d_backward` needs.
    ReLU and the bias are applied after the max: they commute with it, and the
    pooled array is 4x smaller.
    """
    F, C, kh, kw = W.shape
    if x.ndim != 4 or x.shape[1] != C:
        raise ValueError(f"conv2d: input shape {x.shape} does not match weights {W.shape} (need (N, {C}, H, W))")
    xc = to_chwn(x)
    N = xc.shape[3]
    cols = im2col(xc, kh, kw, stride, pad, ws)
    OH, OW = cols.shape[3], cols.shape[4]
    Z = np.matmul(W.reshape(F, -1), cols.reshape(C * kh * kw, -1))  # (F, OH*OW*N)
    cache = {"cols": cols, "W": W, "x_shape": xc.shape, "stride": stride, "pad": pad}
    out = pool_bias_relu(Z.reshape(F, OH, OW, N), b, relu, pool, cache)
    return from_chwn(out), cache


def conv2d_backward(dout: np.ndarray, cache: dict[str, Any], need_dx: bool = True,
                    ws: dict | None = None) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients of :func:`conv2d_forward`.

    dout has the shape of its output (any layout). Returns (dx (N, C, H, W), a view
    of CHWN memory, or None when ``need_dx`` is False; dW (F, C, kh, kw); db (F,)).
    The pool gradient goes to the first maximum in row-major window order (torch's
    rule), so ties (flat background regions of MNIST) never duplicate gradient.
    """
    W, cols = cache["W"], cache["cols"]
    F = W.shape[0]
    dc, db = pool_bias_relu_backward(dout, cache, ws)
    dc = dc.reshape(F, -1)
    K = cols.shape[0] * cols.shape[1] * cols.shape[2]
    dW = weight_grad(dc, cols.reshape(K, -1), W.shape)
    if not need_dx:
        return None, dW, db
    if full_correlation_pays(W.shape, cache["x_shape"], cache["stride"], cache["pad"]):
        dxc = dx_full_correlation(dc.reshape(F, cache["OH"], cache["OW"], -1), W, cache["pad"],
                                  None if ws is None else ws.setdefault("dx", {}))
        return from_chwn(dxc), dW, db
    dcols = workspace(ws, "dcols", cols.shape, cols.dtype)
    np.matmul(W.reshape(F, -1).T, dc, out=dcols.reshape(K, -1))
    dxc = col2im(dcols, cache["x_shape"], cache["stride"], cache["pad"], ws)
    return from_chwn(dxc), dW, db


def full_correlation_pays(W_shape: tuple, x_shape: tuple, stride: int, pad: int) -> bool:
    """Whether :func:`dx_full_correlation` applies and does less GEMM work than W.T @ dz + col2im.

    It needs stride 1, a square kernel and pad <= k-1, and it multiplies over the input's
    H*W positions instead of the output's OH*OW: so only for convs that grow their input
    (deep's 3x3 conv with pad 2, 14x14 -> 16x16: 1.5x faster measured). For same-size convs
    it measured slower (its own im2col costs more than col2im saves), and valid convs such
    as the default `twoconv`'s never take it (their arithmetic stays as it was).
    """
    _, _, kh, kw = W_shape
    _, H, Wd, _ = x_shape
    OH, OW = conv_output_size(H, kh, stride, pad), conv_output_size(Wd, kw, stride, pad)
    return stride == 1 and kh == kw and pad <= kh - 1 and H * Wd < OH * OW


def dx_full_correlation(dz: np.ndarray, W: np.ndarray, pad: int, ws: dict | None = None) -> np.ndarray:
    """Input gradient of a stride-1 conv as a convolution: dz (F, OH, OW, N) CHWN, zero-padded
    by k-1-pad, correlated with the kernel flipped in space and with in/out channels swapped.

    Returns dx (C, H, W, N), a fresh CHWN array. It is one im2col (window copies) and one GEMM,
    where the transposed GEMM needs a dcols matrix and col2im's k*k read-modify-write passes.
    """
    F, C, kh, kw = W.shape
    cols = im2col(dz, kh, kw, 1, kh - 1 - pad, ws)  # (F, kh, kw, H, W, N)
    Wflip = np.ascontiguousarray(W[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)).reshape(C, F * kh * kw)
    H, Wd, N = cols.shape[3:]
    return np.matmul(Wflip, cols.reshape(F * kh * kw, -1)).reshape(C, H, Wd, N)


def conv2d_forward_ref(x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int = 1,
                       pad: int = 0) -> np.ndarray:
    """Slow reference: loop over output positions, dot each window with each filter.

    x (N, C, H, W), W (F, C, kh, kw), b (F,) -> (N, F, OH, OW).
    """
    N, C, H, Wd = x.shape
    F, _, kh, kw = W.shape
    OH, OW = conv_output_size(H, kh, stride, pad), conv_output_size(Wd, kw, stride, pad)
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((N, F, OH, OW), dtype=np.result_type(x, W))
    for oh in range(OH):
        for ow in range(OW):
            window = xp[:, :, oh * stride:oh * stride + kh, ow * stride:ow * stride + kw]
            out[:, :, oh, ow] = np.einsum("nchw,fchw->nf", window, W) + b
    return out


def conv2d_backward_ref(dout: np.ndarray, x: np.ndarray, W: np.ndarray, stride: int = 1,
                        pad: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slow reference gradients: each output position scatters into its window.

    dout (N, F, OH, OW), x (N, C, H, W), W (F, C, kh, kw) -> (dx, dW, db) of the shapes of x, W, (F,).
    """
    N, C, H, Wd = x.shape
    F, _, kh, kw = W.shape
    _, _, OH, OW = dout.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dxp = np.zeros_like(xp)
    dW = np.zeros_like(W)
    for oh in range(OH):
        for ow in range(OW):
            hs, ws_ = oh * stride, ow * stride
            window = xp[:, :, hs:hs + kh, ws_:ws_ + kw]
            g = dout[:, :, oh, ow]  # (N, F)
            dW += np.einsum("nf,nchw->fchw", g, window)
            dxp[:, :, hs:hs + kh, ws_:ws_ + kw] += np.einsum("nf,fchw->nchw", g, W)
    db = dout.sum(axis=(0, 2, 3))
    return dxp[:, :, pad:pad + H, pad:pad + Wd], dW, db
