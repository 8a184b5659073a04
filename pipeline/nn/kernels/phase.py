"""The phase-plane conv block: stride-1 convolution fused with ReLU and a 2x2/stride-2
max-pool, and its slow reference (the same maths composed from the reference kernels).

NumPy pays per inner loop, so the plain im2col kernel (runs of OW elements) and
strided pooling (stride-2 runs of OW/2) are dominated by loop overhead on small
layers. Two layout tricks make every large copy a long contiguous run instead:

1. Full-width rows ("implicit padding"): output position (oh, ow) of kernel
   offset (i, j) reads flat input index (oh + i) * W + (ow + j). Computing the
   output for *all* W columns of a row (the last kw-1 are garbage, later
   dropped) turns each im2col entry into one flat slice of length OH*W per
   image, and col2im into flat slice-adds.
2. Pool phases (P = 2): the input is split once into its P*P phase planes
   xph[c, a, b, n, r, q] = x[c, n, 2r + a, 2q + b]. Output pixel
   (2r + pi, 2q + pj) of kernel offset (i, j) then reads phase plane
   ((pi + i) % 2, (pj + j) % 2) at (r + (pi + i) // 2, q + (pj + j) // 2): again
   a flat slice. The GEMM result comes out phase-major, (F, 4, N, PH, W2), so
   the max-pool is the max of 4 contiguous blocks and its backward writes 4
   contiguous blocks; no strided pass over the big activation remains.

Conv -> ReLU -> max-pool equals conv -> max-pool -> ReLU exactly (both are
monotone), and the bias commutes with the max, so both are applied to the 4x
smaller pooled array. Garbage columns of the gradient are kept at exactly
zero, so they contribute nothing to dW or dx.

Memory: input in any layout, converted to CNHW (see :mod:`.layout`); the output
and dx are (N, C, H, W) views of CNHW memory.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.nn.kernels.im2col import conv2d_backward_ref, conv2d_forward_ref, weight_grad
from pipeline.nn.kernels.layout import from_cnhw, to_cnhw, workspace
from pipeline.nn.kernels.pooling import maxpool_backward_ref, maxpool_forward_ref, route_to_first_max


def _block_geometry(x_shape, W_shape, pad, pool):
    """Sizes of the phase planes for a CNHW input x_shape (C, N, H, W) and weights (F, C, kh, kw)."""
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

    x : (N, C, H, W), any layout; W : (F, C, kh, kw); b : (F,).
    Returns out (N, F, OH, OW), or (N, F, OH//2, OW//2) with ``pool`` (a view of
    CNHW memory), and the cache for :func:`conv_block_backward`.
    Same values as :func:`conv_block_forward_ref`.
    """
    F, C, kh, kw = W.shape
    if x.ndim != 4 or x.shape[1] != C:
        raise ValueError(f"conv2d: input shape {x.shape} does not match weights {W.shape} (need (N, {C}, H, W))")
    xc = to_cnhw(x)
    g = _block_geometry(xc.shape, W.shape, pad, pool)
    P, N, W2, R, V = g["P"], g["N"], g["W2"], g["R"], g["V"]
    dt = xc.dtype
    # phase planes (C, P, P, plane + tail); regions never written stay zero (padding, slack)
    xph = workspace(ws, "xph", (C, P, P, g["plane"] + g["tail"]), dt, zero=True)
    for plane, dense in _phase_pairs(xph, xc, g):
        plane[...] = dense
    cols = workspace(ws, "cols", (C, kh, kw, P, P, N, R * W2), dt)
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
    """Gradients of :func:`conv_block_forward`. dout has the shape of its output (any layout).

    Returns (dx (N, C, H, W), a view of CNHW memory, or None; dW (F, C, kh, kw); db (F,)).
    The pool gradient goes to the first maximum in row-major window order (torch's rule).
    """
    g, cols, Z, m, out, W = (cache[k] for k in ("g", "cols", "Z", "m", "out", "W"))
    F, C, kh, kw = W.shape
    P, N, R, V, W2 = g["P"], g["N"], g["R"], g["V"], g["W2"]
    dt = cols.dtype
    dc = to_cnhw(dout)  # (F, N, R, V)
    # Upstream gradient at full row width W2: the garbage columns [V:] are never
    # written and stay zero, so every pass below runs over contiguous memory.
    gfull = workspace(ws, "gfull", (F, N, R, W2), dt, zero=True)
    if cache["relu"]:
        np.multiply(dc, cache["out"] > 0, out=gfull[..., :V])
    else:
        gfull[..., :V] = dc
    gf = gfull.reshape(F, -1)
    db = gf.sum(axis=1)
    if cache["pool"]:
        dZ = workspace(ws, "dZ", (F, 4, gf.shape[1]), dt)
        Z4, mf = Z.reshape(F, 4, -1), m.reshape(F, -1)
        # phases are in window order (0,0), (0,1), (1,0), (1,1): pooling.WINDOW_2X2
        route_to_first_max([Z4[:, p] for p in range(4)], mf, gf, [dZ[:, p] for p in range(4)])
    else:
        dZ = gfull
    K = C * kh * kw
    dZ2 = dZ.reshape(F, -1)
    dW = weight_grad(dZ2, cols.reshape(K, -1), W.shape)
    if not need_dx:
        return None, dW, db
    dcols = workspace(ws, "dcols", cols.shape, dt)
    np.matmul(W.reshape(F, K).T, dZ2, out=dcols.reshape(K, -1))
    dxph = workspace(ws, "dxph", (C, P, P, g["plane"] + g["tail"]), dt)
    dxph.fill(0)
    for i, j, pi, pj, a, bb, off in _phase_slices(g):
        _window(dxph[:, a, bb], g, off)[...] += dcols[:, i, j, pi, pj]
    # gather phase planes back to (C, N, H, W), dropping the padding
    dx = np.empty((C, N, g["H"], g["W"]), dt)
    for plane, dense in _phase_pairs(dxph, dx, g):
        dense[...] = plane
    return from_cnhw(dx), dW, db


def conv_block_forward_ref(x: np.ndarray, W: np.ndarray, b: np.ndarray, pad: int = 0, relu: bool = False,
                           pool: bool = False) -> np.ndarray:
    """Slow reference of :func:`conv_block_forward`: reference conv, then ReLU, then reference 2x2 max-pool.

    x (N, C, H, W), W (F, C, kh, kw), b (F,) -> (N, F, OH, OW), or (N, F, OH//2, OW//2) with ``pool``.
    """
    conv = conv2d_forward_ref(x, W, b, 1, pad)
    act = np.maximum(conv, 0) if relu else conv
    return maxpool_forward_ref(act, 2, 2) if pool else act


def conv_block_backward_ref(dout: np.ndarray, x: np.ndarray, W: np.ndarray, b: np.ndarray, pad: int = 0,
                            relu: bool = False, pool: bool = False
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slow reference gradients of :func:`conv_block_forward`, by the chain rule through the references.

    dout has the shape of the forward output; returns (dx, dW, db) of the shapes of x, W and b.
    """
    conv = conv2d_forward_ref(x, W, b, 1, pad)
    act = np.maximum(conv, 0) if relu else conv
    d = maxpool_backward_ref(dout, act, 2, 2) if pool else dout
    d = d * (conv > 0) if relu else d
    return conv2d_backward_ref(d, x, W, 1, pad)
