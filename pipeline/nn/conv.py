"""Convolution and max-pooling kernels: fast im2col/GEMM versions and slow references.

Public kernels take and return arrays with NCHW *semantics*: ``x[n, c, h, w]``.
Internally the fast kernels keep activations in **CNHW memory order** (channel
outermost) and hand back ``(N, C, H, W)`` views of that memory. Why: with the
channel first, im2col becomes ``kh*kw`` copies of whole shifted image planes
(long contiguous runs), the weights ``(F, C, kh, kw)`` reshape to the GEMM
operand ``(F, C*kh*kw)`` without a copy, the GEMM result ``(F, N*OH*OW)`` *is*
the CNHW output (no transpose), and per-channel sums (bias, BatchNorm) run over
contiguous rows. Any layout is accepted: :func:`to_cnhw` copies only when the
memory is not already CNHW.

Each fast kernel has a slow, obviously correct reference (``*_ref``, loops
over output positions) that the tests compare against.
"""
from __future__ import annotations

from typing import Any

import numpy as np

# ---------------------------------------------------------------- layout helpers


def to_cnhw(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) array of any layout -> C-contiguous (C, N, H, W); no copy if already CNHW in memory."""
    return np.ascontiguousarray(x.transpose(1, 0, 2, 3))


def from_cnhw(xc: np.ndarray) -> np.ndarray:
    """(C, N, H, W) array -> its (N, C, H, W) view (no copy)."""
    return xc.transpose(1, 0, 2, 3)


def conv_output_size(size: int, kernel: int, stride: int, pad: int) -> int:
    """Output length along one axis of a convolution or pooling (floor mode)."""
    return (size + 2 * pad - kernel) // stride + 1


def _workspace(ws: dict | None, key: str, shape: tuple, dtype, zero: bool = False) -> np.ndarray:
    """A scratch array from ``ws`` reused across calls of the same shape.

    Why: a fresh 64 MB im2col buffer per step is mmapped and page-faulted each
    time; reusing it keeps the memory warm. Scratch never escapes a kernel.
    ``zero=True`` zeroes it only when newly allocated (padding borders stay zero
    because only the interior is ever written).
    """
    if ws is None:
        return np.zeros(shape, dtype) if zero else np.empty(shape, dtype)
    arr = ws.get(key)
    if arr is None or arr.shape != shape or arr.dtype != dtype:
        arr = np.zeros(shape, dtype) if zero else np.empty(shape, dtype)
        ws[key] = arr
    return arr


# ---------------------------------------------------------------- im2col / col2im


def im2col(xc: np.ndarray, kh: int, kw: int, stride: int = 1, pad: int = 0,
           ws: dict | None = None) -> np.ndarray:
    """Unfold a CNHW image batch into convolution columns.

    xc : ndarray of shape (C, N, H, W), C-contiguous.
    Returns cols of shape (C, kh, kw, N, OH, OW) (C-contiguous), where
    ``cols[c, i, j, n, oh, ow] = xpad[c, n, oh*stride + i, ow*stride + j]``;
    reshaped to (C*kh*kw, N*OH*OW) it is the right GEMM operand.
    """
    C, N, H, W = xc.shape
    OH = conv_output_size(H, kh, stride, pad)
    OW = conv_output_size(W, kw, stride, pad)
    if pad:
        xp = _workspace(ws, "xpad", (C, N, H + 2 * pad, W + 2 * pad), xc.dtype, zero=True)
        xp[:, :, pad:pad + H, pad:pad + W] = xc
    else:
        xp = xc
    cols = _workspace(ws, "cols", (C, kh, kw, N, OH, OW), xc.dtype)
    # kh*kw plane copies: each moves (C, N, OH, OW) with OW-long runs.
    for i in range(kh):
        for j in range(kw):
            cols[:, i, j] = xp[:, :, i:i + stride * OH:stride, j:j + stride * OW:stride]
    return cols


def col2im(dcols: np.ndarray, x_shape: tuple, stride: int = 1, pad: int = 0,
           ws: dict | None = None) -> np.ndarray:
    """Adjoint of :func:`im2col`: fold columns back, summing overlaps.

    dcols : ndarray of shape (C, kh, kw, N, OH, OW).
    x_shape : (C, N, H, W) of the unpadded input.
    Returns dx of shape (C, N, H, W) (a fresh array).
    """
    C, kh, kw, N, OH, OW = dcols.shape
    _, _, H, W = x_shape
    if pad:
        dxp = _workspace(ws, "dxpad", (C, N, H + 2 * pad, W + 2 * pad), dcols.dtype)
        dxp.fill(0)
    else:
        dxp = np.zeros((C, N, H, W), dcols.dtype)
    # kh*kw vectorised slice-adds replace the book's np.add.at / Python loops.
    for i in range(kh):
        for j in range(kw):
            dxp[:, :, i:i + stride * OH:stride, j:j + stride * OW:stride] += dcols[:, i, j]
    if pad:
        return dxp[:, :, pad:pad + H, pad:pad + W].copy()
    return dxp


# ---------------------------------------------------------------- convolution


def conv2d_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int = 1, pad: int = 0,
                   ws: dict | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """2-D cross-correlation (what deep learning calls convolution).

    x : (N, C, H, W); W : (F, C, kh, kw); b : (F,).
    Returns out of shape (N, F, OH, OW) (a view of CNHW memory) and the cache
    that :func:`conv2d_backward` needs.
    """
    F, C, kh, kw = W.shape
    if x.ndim != 4 or x.shape[1] != C:
        raise ValueError(f"conv2d: input shape {x.shape} does not match weights {W.shape} (need (N, {C}, H, W))")
    xc = to_cnhw(x)
    _, N, H, Wd = xc.shape
    cols = im2col(xc, kh, kw, stride, pad, ws)
    OH, OW = cols.shape[4], cols.shape[5]
    out = np.matmul(W.reshape(F, -1), cols.reshape(C * kh * kw, -1))  # (F, N*OH*OW)
    out += b[:, None]
    cache = {"cols": cols, "W": W, "x_shape": xc.shape, "stride": stride, "pad": pad}
    return from_cnhw(out.reshape(F, N, OH, OW)), cache


def conv2d_backward(dout: np.ndarray, cache: dict[str, Any], need_dx: bool = True,
                    ws: dict | None = None) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients of :func:`conv2d_forward`.

    dout : (N, F, OH, OW). Returns (dx (N, C, H, W) or None when ``need_dx`` is
    False, dW (F, C, kh, kw), db (F,)).
    """
    W, cols = cache["W"], cache["cols"]
    F = W.shape[0]
    dc = to_cnhw(dout).reshape(F, -1)  # (F, N*OH*OW)
    db = dc.sum(axis=1)
    K = cols.shape[0] * cols.shape[1] * cols.shape[2]
    dW = np.matmul(dc, cols.reshape(K, -1).T).reshape(W.shape)
    if not need_dx:
        return None, dW, db
    dcols = _workspace(ws, "dcols", cols.shape, cols.dtype)
    np.matmul(W.reshape(F, -1).T, dc, out=dcols.reshape(K, -1))
    dxc = col2im(dcols, cache["x_shape"], cache["stride"], cache["pad"], ws)
    return from_cnhw(dxc), dW, db


def conv2d_forward_ref(x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int = 1,
                       pad: int = 0) -> np.ndarray:
    """Slow reference: loop over output positions, dot each window with each filter."""
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
    """Slow reference gradients: each output position scatters into its window."""
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


# ---------------------------------------------------------------- max pooling


def _pool_slices(size: int, stride: int, OH: int, OW: int):
    """The (i, j, slice_h, slice_w) of each window offset, in row-major window order."""
    for i in range(size):
        for j in range(size):
            yield slice(i, i + stride * OH, stride), slice(j, j + stride * OW, stride)


def maxpool_forward(x: np.ndarray, size: int = 2, stride: int | None = None
                    ) -> tuple[np.ndarray, dict[str, Any]]:
    """Max pooling with a square window, no padding, floor mode (like torch's default).

    x : (N, C, H, W). Returns out (N, C, OH, OW) (a view of CNHW memory) and a cache.
    Computed as the elementwise max of the size*size strided sub-grids, which is
    exact and avoids any window copy.
    """
    stride = size if stride is None else stride
    xc = to_cnhw(x)
    C, N, H, W = xc.shape
    OH, OW = conv_output_size(H, size, stride, 0), conv_output_size(W, size, stride, 0)
    if OH < 1 or OW < 1:
        raise ValueError(f"maxpool: input {H}x{W} is smaller than the {size}x{size} window")
    slices = list(_pool_slices(size, stride, OH, OW))
    sh, sw = slices[0]
    out = xc[:, :, sh, sw].copy()
    for sh, sw in slices[1:]:
        np.maximum(out, xc[:, :, sh, sw], out=out)
    cache = {"xc": xc, "out": out, "size": size, "stride": stride}
    return from_cnhw(out), cache


def maxpool_backward(dout: np.ndarray, cache: dict[str, Any]) -> np.ndarray:
    """Gradient of :func:`maxpool_forward`: each window's gradient goes to its
    *first* maximal element in row-major order (torch's tie rule), so ties
    (such as all-zero windows after ReLU) never duplicate gradient.

    dout : (N, C, OH, OW). Returns dx (N, C, H, W) (a view of CNHW memory).
    """
    xc, out, size, stride = cache["xc"], cache["out"], cache["size"], cache["stride"]
    C, N, OH, OW = out.shape
    dc = to_cnhw(dout)
    overlapping = stride < size
    covers = (not overlapping and xc.shape[2] == OH * stride and xc.shape[3] == OW * stride
              and stride == size)
    dx = np.empty_like(xc) if covers else np.zeros_like(xc)
    taken = np.zeros(out.shape, dtype=bool)
    hit = np.empty(out.shape, dtype=bool)
    slices = list(_pool_slices(size, stride, OH, OW))
    for k, (sh, sw) in enumerate(slices):
        np.equal(xc[:, :, sh, sw], out, out=hit)
        if k:
            hit &= ~taken
        if k < len(slices) - 1:
            taken |= hit
        if overlapping:
            dx[:, :, sh, sw] += dc * hit
        else:
            np.multiply(dc, hit, out=dx[:, :, sh, sw])
    return from_cnhw(dx)


def maxpool_forward_ref(x: np.ndarray, size: int = 2, stride: int | None = None) -> np.ndarray:
    """Slow reference: the max of each window, position by position."""
    stride = size if stride is None else stride
    N, C, H, W = x.shape
    OH, OW = conv_output_size(H, size, stride, 0), conv_output_size(W, size, stride, 0)
    out = np.empty((N, C, OH, OW), x.dtype)
    for oh in range(OH):
        for ow in range(OW):
            win = x[:, :, oh * stride:oh * stride + size, ow * stride:ow * stride + size]
            out[:, :, oh, ow] = win.max(axis=(2, 3))
    return out


def maxpool_backward_ref(dout: np.ndarray, x: np.ndarray, size: int = 2,
                         stride: int | None = None) -> np.ndarray:
    """Slow reference gradient: route each output's gradient to the first argmax of its window."""
    stride = size if stride is None else stride
    N, C, H, W = x.shape
    _, _, OH, OW = dout.shape
    dx = np.zeros_like(x)
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                for ow in range(OW):
                    win = x[n, c, oh * stride:oh * stride + size, ow * stride:ow * stride + size]
                    i, j = np.unravel_index(np.argmax(win), win.shape)
                    dx[n, c, oh * stride + i, ow * stride + j] += dout[n, c, oh, ow]
    return dx
