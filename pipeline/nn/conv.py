"""Convolution and max-pooling kernels: fast im2col/GEMM versions and slow references.

Public kernels take and return arrays with NCHW *semantics*: ``x[n, c, h, w]``.
Internally the im2col kernels keep activations in **CHWN memory order** (batch
innermost) and hand back ``(N, C, H, W)`` views of that memory. Why: NumPy pays
per inner loop, and with the batch innermost every shifted window
``x[c, i:i+OH, j:j+OW, :]`` is a run of OW*N contiguous floats, so im2col and
col2im are kh*kw long copies/adds (no short rows), the 2x2 pool phases are runs
of N, the weights ``(F, C, kh, kw)`` reshape to the GEMM operand
``(F, C*kh*kw)`` without a copy, the GEMM result ``(F, OH*OW*N)`` *is* the CHWN
output (no transpose), and per-channel sums (bias, BatchNorm) run over
contiguous rows. Any layout is accepted: :func:`to_chwn` copies only when the
memory is not already CHWN.

Each fast kernel has a slow, obviously correct reference (``*_ref``, loops
over output positions) that the tests compare against.
"""
from __future__ import annotations

from typing import Any

import numpy as np

# ---------------------------------------------------------------- layout helpers


def to_chwn(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) array of any layout -> C-contiguous (C, H, W, N); no copy if already CHWN in memory."""
    return np.ascontiguousarray(x.transpose(1, 2, 3, 0))


def from_chwn(xc: np.ndarray) -> np.ndarray:
    """(C, H, W, N) array -> its (N, C, H, W) view (no copy)."""
    return xc.transpose(3, 0, 1, 2)


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
        xp = _workspace(ws, "xpad", (C, H + 2 * pad, W + 2 * pad, N), xc.dtype, zero=True)
        xp[:, pad:pad + H, pad:pad + W] = xc
    else:
        xp = xc
    cols = _workspace(ws, "cols", (C, kh, kw, OH, OW, N), xc.dtype)
    # kh*kw window copies; with stride 1 each is C runs of OW*N floats
    for i in range(kh):
        for j in range(kw):
            cols[:, i, j] = xp[:, i:i + stride * OH:stride, j:j + stride * OW:stride]
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
    # kh*kw vectorised slice-adds replace the book's np.add.at / Python loops.
    for i in range(kh):
        for j in range(kw):
            dxp[:, i:i + stride * OH:stride, j:j + stride * OW:stride] += dcols[:, i, j]
    if pad:
        return dxp[:, pad:pad + H, pad:pad + W].copy()
    return dxp


# ---------------------------------------------------------------- convolution


def _weight_grad(dz: np.ndarray, cols: np.ndarray, shape: tuple) -> np.ndarray:
    """dW = dz @ cols.T, for dz (F, P) and cols (K, P); returns shape (F, C, kh, kw).

    Computed as (cols @ dz.T).T: OpenBLAS runs this long-reduction GEMM about
    15-50% faster with the big operand on the left (measured on 2 cores for the
    conv layers of simple and seed-torch); the (K, F) result is tiny to transpose.
    """
    return np.ascontiguousarray(np.matmul(cols, dz.T).T).reshape(shape)


_PHASES = ((0, 0), (0, 1), (1, 0), (1, 1))  # 2x2 window positions in row-major order


def route_to_first_max(windows: list[np.ndarray], m: np.ndarray, grad: np.ndarray,
                       outs: list[np.ndarray], accumulate: bool = False) -> None:
    """Max-pool backward over the window positions of a pool.

    windows : the pool's input at each window position, in row-major window order,
    each of the shape of ``m`` (the pooled maximum) and ``grad`` (its gradient).
    Writes ``grad`` into ``outs[p]`` where position p holds the *first* maximum and
    0 elsewhere (torch's rule), so ties on flat background never duplicate gradient.
    With ``accumulate`` it adds instead (overlapping windows share input pixels).
    """
    taken = np.empty(m.shape, bool)
    hit = np.empty(m.shape, bool)
    last = len(windows) - 1
    for p, (window, out) in enumerate(zip(windows, outs)):
        np.equal(window, m, out=hit)
        if p == 0:
            taken[...] = hit
        else:
            hit &= ~taken
            if p < last:
                taken |= hit
        if accumulate:
            out += grad * hit
        else:
            np.multiply(grad, hit, out=out)


def conv2d_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int = 1, pad: int = 0,
                   ws: dict | None = None, relu: bool = False, pool: bool = False
                   ) -> tuple[np.ndarray, dict[str, Any]]:
    """2-D cross-correlation (what deep learning calls convolution), optionally
    followed by ReLU and by a 2x2/stride-2 max-pool (floor mode).

    x : (N, C, H, W); W : (F, C, kh, kw); b : (F,).
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
    cache = {"cols": cols, "W": W, "x_shape": xc.shape, "stride": stride, "pad": pad,
             "relu": relu, "pool": pool, "OH": OH, "OW": OW}
    if pool:
        PH, PW = OH // 2, OW // 2
        if PH < 1 or PW < 1:
            raise ValueError(f"maxpool: conv output {OH}x{OW} is smaller than the 2x2 window")
        # (F, PH, 2, PW, 2, N) view of the cropped output: each phase is runs of N
        Z6 = Z.reshape(F, OH, OW, N)[:, :2 * PH, :2 * PW].reshape(F, PH, 2, PW, 2, N)
        m = np.maximum(Z6[:, :, 0, :, 0], Z6[:, :, 0, :, 1])
        np.maximum(m, Z6[:, :, 1, :, 0], out=m)
        np.maximum(m, Z6[:, :, 1, :, 1], out=m)
        out = m + b[:, None, None, None]
        cache.update(Z6=Z6, m=m)
    else:
        out = Z.reshape(F, OH, OW, N)
        out += b[:, None, None, None]
    if relu:
        np.maximum(out, 0, out=out)
    cache["out"] = out
    return from_chwn(out), cache


def conv2d_backward(dout: np.ndarray, cache: dict[str, Any], need_dx: bool = True,
                    ws: dict | None = None) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients of :func:`conv2d_forward`.

    dout has the shape of its output. Returns (dx (N, C, H, W) or None when
    ``need_dx`` is False, dW (F, C, kh, kw), db (F,)). The pool gradient goes to
    the first maximum in row-major window order (torch's rule), so ties (flat
    background regions of MNIST) never duplicate gradient.
    """
    W, cols = cache["W"], cache["cols"]
    F = W.shape[0]
    dc = to_chwn(dout)  # (F, PH, PW, N) or (F, OH, OW, N)
    if cache["relu"]:
        dc = dc * (cache["out"] > 0)
    db = dc.reshape(F, -1).sum(axis=1)
    if cache["pool"]:
        Z6, m = cache["Z6"], cache["m"]
        OH, OW, N = cache["OH"], cache["OW"], cache["x_shape"][3]
        PH, PW = OH // 2, OW // 2
        # a cropped last row/column (odd OH or OW) is never written: it stays zero
        full = _workspace(ws, "dZ", (F, OH, OW, N), dc.dtype, zero=True)
        d6 = full[:, :2 * PH, :2 * PW].reshape(F, PH, 2, PW, 2, N)
        route_to_first_max([Z6[:, :, pi, :, pj] for pi, pj in _PHASES], m, dc,
                           [d6[:, :, pi, :, pj] for pi, pj in _PHASES])
        dc = full
    dc = dc.reshape(F, -1)
    K = cols.shape[0] * cols.shape[1] * cols.shape[2]
    dW = _weight_grad(dc, cols.reshape(K, -1), W.shape)
    if not need_dx:
        return None, dW, db
    dcols = _workspace(ws, "dcols", cols.shape, cols.dtype)
    np.matmul(W.reshape(F, -1).T, dc, out=dcols.reshape(K, -1))
    dxc = col2im(dcols, cache["x_shape"], cache["stride"], cache["pad"], ws)
    return from_chwn(dxc), dW, db


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

    x : (N, C, H, W). Returns out (N, C, OH, OW) (a view of CHWN memory) and a cache.
    Computed as the elementwise max of the size*size strided sub-grids (runs of
    N in CHWN memory), which is exact and avoids any window copy.
    """
    stride = size if stride is None else stride
    xc = to_chwn(x)
    C, H, W, N = xc.shape
    OH, OW = conv_output_size(H, size, stride, 0), conv_output_size(W, size, stride, 0)
    if OH < 1 or OW < 1:
        raise ValueError(f"maxpool: input {H}x{W} is smaller than the {size}x{size} window")
    slices = list(_pool_slices(size, stride, OH, OW))
    sh, sw = slices[0]
    out = xc[:, sh, sw].copy()
    for sh, sw in slices[1:]:
        np.maximum(out, xc[:, sh, sw], out=out)
    cache = {"xc": xc, "out": out, "size": size, "stride": stride}
    return from_chwn(out), cache


def maxpool_backward(dout: np.ndarray, cache: dict[str, Any]) -> np.ndarray:
    """Gradient of :func:`maxpool_forward`: each window's gradient goes to its
    *first* maximal element in row-major order (torch's tie rule), so ties
    (such as all-zero windows after ReLU) never duplicate gradient.

    dout : (N, C, OH, OW). Returns dx (N, C, H, W) (a view of CHWN memory).
    """
    xc, out, size, stride = cache["xc"], cache["out"], cache["size"], cache["stride"]
    C, OH, OW, N = out.shape
    dc = to_chwn(dout)
    overlapping = stride < size
    covers = stride == size and xc.shape[1] == OH * stride and xc.shape[2] == OW * stride
    dx = np.empty_like(xc) if covers else np.zeros_like(xc)
    slices = list(_pool_slices(size, stride, OH, OW))
    route_to_first_max([xc[:, sh, sw] for sh, sw in slices], out, dc,
                       [dx[:, sh, sw] for sh, sw in slices], accumulate=overlapping)
    return from_chwn(dx)


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


# ---------------------------------------------------------------- fused stride-1 conv block
#
# The fast path for every stride-1 convolution, optionally fused with the ReLU
# and the 2x2/stride-2 max-pool that follow it. NumPy pays per inner loop, so the
# plain im2col above (runs of OW elements) and strided pooling (stride-2 runs of
# OW/2) are dominated by loop overhead. Two layout tricks make every large copy a
# long contiguous run instead:
#
# 1. Full-width rows ("implicit padding"): output position (oh, ow) of kernel
#    offset (i, j) reads flat input index (oh + i) * W + (ow + j). Computing the
#    output for *all* W columns of a row (the last kw-1 are garbage, later
#    dropped) turns each im2col entry into one flat slice of length OH*W per
#    image, and col2im into flat slice-adds.
# 2. Pool phases (P = 2): the input is split once into its P*P phase planes
#    xph[c, a, b, n, r, q] = x[c, n, 2r + a, 2q + b]. Output pixel
#    (2r + pi, 2q + pj) of kernel offset (i, j) then reads phase plane
#    ((pi + i) % 2, (pj + j) % 2) at (r + (pi + i) // 2, q + (pj + j) // 2): again
#    a flat slice. The GEMM result comes out phase-major, (F, 4, N, PH, W2), so
#    the max-pool is the max of 4 contiguous blocks and its backward writes 4
#    contiguous blocks; no strided pass over the big activation remains.
#
# Conv -> ReLU -> max-pool equals conv -> max-pool -> ReLU exactly (both are
# monotone), and the bias commutes with the max, so both are applied to the 4x
# smaller pooled array. Garbage columns of the gradient are kept at exactly
# zero, so they contribute nothing to dW or dx.


def _block_geometry(x_shape, W_shape, pad, pool):
    C, N, H, Wd = x_shape
    F, _, kh, kw = W_shape
    Hp, Wp = H + 2 * pad, Wd + 2 * pad
    OH, OW = Hp - kh + 1, Wp - kw + 1
    if OH < 1 or OW < 1:
        raise ValueError(f"conv: kernel {kh}x{kw} does not fit the padded input {Hp}x{Wp}")
    P = 2 if pool else 1
    if pool and (OH < 2 or OW < 2):
        raise ValueError(f"maxpool: conv output {OH}x{OW} is smaller than the 2x2 window")
    H2, W2 = -(-Hp // P), -(-Wp // P)            # phase-plane size (ceil)
    R, V = (OH // 2, OW // 2) if pool else (OH, OW)  # rows per phase, valid columns
    plane = N * H2 * W2
    tail = ((kh - 1) // P + 1) * W2 + kw        # slack so garbage-column slices stay in bounds
    return dict(C=C, N=N, H=H, W=Wd, F=F, kh=kh, kw=kw, pad=pad, Hp=Hp, Wp=Wp, P=P,
                H2=H2, W2=W2, R=R, V=V, plane=plane, tail=tail)


def _phase_pairs(xph: np.ndarray, dense: np.ndarray, g: dict):
    """Yield (phase-plane view, dense view) pairs that cover the unpadded input once.

    xph : (C, P, P, plane + tail) phase planes; dense : (C, N, H, W).
    Padded row P*r + a of the input lives in plane row r of phase a, and holds
    input row P*r + a - pad (likewise for columns), so each pair is one strided copy.
    """
    P, pad, H2, W2 = g["P"], g["pad"], g["H2"], g["W2"]
    C, N = dense.shape[:2]
    for a in range(P):
        for bb in range(P):
            plane = xph[:, a, bb, :g["plane"]].reshape(C, N, H2, W2)
            r0 = max(0, -(-(pad - a) // P))
            q0 = max(0, -(-(pad - bb) // P))
            view = dense[:, :, P * r0 + a - pad::P, P * q0 + bb - pad::P]
            yield plane[:, :, r0:r0 + view.shape[2], q0:q0 + view.shape[3]], view


def _phase_slices(g):
    """(i, j, pi, pj, a, b, flat offset) for every kernel offset and pool phase."""
    P, W2 = g["P"], g["W2"]
    for i in range(g["kh"]):
        for j in range(g["kw"]):
            for pi in range(P):
                for pj in range(P):
                    a, da = (pi + i) % P, (pi + i) // P
                    b, db = (pj + j) % P, (pj + j) // P
                    yield i, j, pi, pj, a, b, da * W2 + db


def _window(flat, g, off):
    """(C, N, R*W2) view of phase plane rows starting at flat offset ``off``."""
    return flat[:, off:off + g["plane"]].reshape(g["C"], g["N"], g["H2"] * g["W2"])[:, :, :g["R"] * g["W2"]]


def conv_block_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray, pad: int = 0, relu: bool = False,
                       pool: bool = False, ws: dict | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Stride-1 convolution, then optionally ReLU, then optionally 2x2/stride-2 max-pool.

    x : (N, C, H, W); W : (F, C, kh, kw); b : (F,).
    Returns out (N, F, OH, OW), or (N, F, OH//2, OW//2) with ``pool`` (a view of
    CNHW memory), and the cache for :func:`conv_block_backward`.
    Same values as conv2d_forward -> ReLU -> maxpool_forward.
    """
    F, C, kh, kw = W.shape
    if x.ndim != 4 or x.shape[1] != C:
        raise ValueError(f"conv2d: input shape {x.shape} does not match weights {W.shape} (need (N, {C}, H, W))")
    xc = to_cnhw(x)
    g = _block_geometry(xc.shape, W.shape, pad, pool)
    P, N, W2, R, V = g["P"], g["N"], g["W2"], g["R"], g["V"]
    dt = xc.dtype
    # phase planes (C, P, P, plane + tail); regions never written stay zero (padding, slack)
    xph = _workspace(ws, "xph", (C, P, P, g["plane"] + g["tail"]), dt, zero=True)
    for plane, dense in _phase_pairs(xph, xc, g):
        plane[...] = dense
    cols = _workspace(ws, "cols", (C, kh, kw, P, P, N, R * W2), dt)
    for i, j, pi, pj, a, bb, off in _phase_slices(g):
        cols[:, i, j, pi, pj] = _window(xph[:, a, bb], g, off)
    K = C * kh * kw
    Z = np.matmul(W.reshape(F, K), cols.reshape(K, -1))  # (F, P*P*N*R*W2)
    if pool:
        Z4 = Z.reshape(F, 4, N, R, W2)
        m = Z4[:, 0].copy()
        for p in range(1, 4):
            np.maximum(m, Z4[:, p], out=m)
        zv = m[..., :V]
    else:
        m = None
        zv = Z.reshape(F, N, R, W2)[..., :V]
    out = np.add(zv, b[:, None, None, None])  # (F, N, R, V) contiguous
    if relu:
        np.maximum(out, 0, out=out)
    cache = {"g": g, "cols": cols, "Z": Z, "m": m, "out": out, "W": W, "relu": relu, "pool": pool}
    return from_cnhw(out), cache


def conv_block_backward(dout: np.ndarray, cache: dict[str, Any], need_dx: bool = True,
                        ws: dict | None = None) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients of :func:`conv_block_forward`. dout has the shape of its output.

    Returns (dx (N, C, H, W) or None, dW (F, C, kh, kw), db (F,)). The pool
    gradient goes to the first maximum in row-major window order (torch's rule).
    """
    g, cols, Z, m, out, W = (cache[k] for k in ("g", "cols", "Z", "m", "out", "W"))
    F, C, kh, kw = W.shape
    P, N, R, V, W2 = g["P"], g["N"], g["R"], g["V"], g["W2"]
    dt = cols.dtype
    dc = to_cnhw(dout)  # (F, N, R, V)
    # Upstream gradient at full row width W2: the garbage columns [V:] are never
    # written and stay zero, so every pass below runs over contiguous memory.
    gfull = _workspace(ws, "gfull", (F, N, R, W2), dt, zero=True)
    if cache["relu"]:
        np.multiply(dc, cache["out"] > 0, out=gfull[..., :V])
    else:
        gfull[..., :V] = dc
    gf = gfull.reshape(F, -1)
    db = gf.sum(axis=1)
    if cache["pool"]:
        dZ = _workspace(ws, "dZ", (F, 4, gf.shape[1]), dt)
        Z4, mf = Z.reshape(F, 4, -1), m.reshape(F, -1)
        # phases are in window order (0,0), (0,1), (1,0), (1,1)
        route_to_first_max([Z4[:, p] for p in range(4)], mf, gf, [dZ[:, p] for p in range(4)])
    else:
        dZ = gfull
    K = C * kh * kw
    dZ2 = dZ.reshape(F, -1)
    dW = _weight_grad(dZ2, cols.reshape(K, -1), W.shape)
    if not need_dx:
        return None, dW, db
    dcols = _workspace(ws, "dcols", cols.shape, dt)
    np.matmul(W.reshape(F, K).T, dZ2, out=dcols.reshape(K, -1))
    dxph = _workspace(ws, "dxph", (C, P, P, g["plane"] + g["tail"]), dt)
    dxph.fill(0)
    for i, j, pi, pj, a, bb, off in _phase_slices(g):
        _window(dxph[:, a, bb], g, off)[...] += dcols[:, i, j, pi, pj]
    # gather phase planes back to (C, N, H, W), dropping the padding
    dx = np.empty((C, N, g["H"], g["W"]), dt)
    for plane, dense in _phase_pairs(dxph, dx, g):
        dense[...] = plane
    return from_cnhw(dx), dW, db


def prefer_block(C: int, kh: int, kw: int, pool: bool) -> bool:
    """Whether conv_block_* beats conv2d_* (with its fused ReLU/pool) for this stride-1 layer.

    Measured (single thread, batch 100, fused ReLU both sides): the block wins
    ~3x on a pooled layer with few input channels (C*kh*kw <= 32, e.g. the first
    conv of `simple`): there the conv output is larger than the im2col matrix,
    and the block pools it in phase-major order straight out of the GEMM
    instead of transposing it. Elsewhere its garbage columns (full-width rows:
    7-67% more GEMM work) cost more than they save.
    """
    return pool and C * kh * kw <= 32
