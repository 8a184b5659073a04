"""Convolution by the FFT (stride 1): a product of spectra per frequency instead of windows.

By the convolution theorem a stride-1 cross-correlation is, at every 2-D frequency, a
matrix product over channels of the input's and the kernel's spectra:
``Y(f) = conj(Wf(f)) @ X(f)``, (F, C) @ (C, N). With an FFT of the (padded) input's size
the circular correlation equals the linear one at every valid output position, so no
extra padding is needed; the two gradients are the same kind of product:
``dX(f) = Wf(f)^T @ dY(f)`` (a full convolution, which fits that size exactly) and
``dW(f) = conj(dY(f)) @ X(f)^T`` (summed over the batch).

Why: the work per (input channel, output channel) pair is one product per frequency,
H*(W//2+1), instead of kh*kw per output position, 10-20x fewer multiplications for 5x5
kernels; a step then costs FFTs and small complex GEMMs. Whether that pays for a
layer is decided in :mod:`pipeline.nn.fusion` (:func:`pipeline.nn.fusion.prefer_spectral`).
The results equal im2col's to float32 rounding (relative 1e-6), not bit for bit.

Memory is CHWN (:mod:`.layout`); the epilogue (2x2 max-pool, bias, ReLU) is im2col's
(:func:`.im2col.pool_bias_relu`). The slow reference is the window loop of
:func:`.im2col.conv2d_forward_ref` and :func:`.im2col.conv2d_backward_ref` composed with the
reference ReLU and pool (:func:`.phase.conv_block_forward_ref`): no transforms at all.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import scipy.fft

from pipeline.nn.kernels.im2col import pool_bias_relu, pool_bias_relu_backward
from pipeline.nn.kernels.layout import from_chwn, to_chwn, workspace
from pipeline.nn.kernels import parallel


def _spectrum(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The 2-D real FFT over the leading (spatial) axes of ``a`` (h, w, A, B), zero-padded at the
    end to ``size`` = (H, W): (H, W//2+1, A, B) complex. Row by row first, so padded rows cost
    nothing; the column pass then runs in place."""
    rows = scipy.fft.rfft(a, n=size[1], axis=1, workers=parallel.THREADS)
    return scipy.fft.fft(rows, n=size[0], axis=0, overwrite_x=rows.shape[0] == size[0], workers=parallel.THREADS)


def _signal(spectrum: np.ndarray, size: tuple[int, int], rows: slice, cols: slice) -> np.ndarray:
    """The inverse of :func:`_spectrum`, only at ``rows`` and ``cols`` of the (H, W) signal:
    (len(rows), len(cols), A, B) real, a view. ``spectrum`` (H, W//2+1, A, B) is overwritten."""
    columns = scipy.fft.ifft(spectrum, axis=0, overwrite_x=True, workers=parallel.THREADS)[rows]
    return scipy.fft.irfft(columns, n=size[1], axis=1, workers=parallel.THREADS)[:, cols]


def _spatial_first(a: np.ndarray, ws: dict | None, key: str, pad: int = 0) -> np.ndarray:
    """(A, h, w, B) CHWN memory -> (h + 2*pad, w + 2*pad, A, B) with ``a`` inside a zero border.

    Spatial axes first: the FFTs then run over the leading axes (many long lines at once) and
    their output (H, Wq, A, B) is already one (A, B) matrix per frequency, with no transpose.
    A scratch array of ``ws`` (its border stays zero: only the interior is ever written).
    """
    A, h, w, B = a.shape
    out = workspace(ws, key, (h + 2 * pad, w + 2 * pad, A, B), a.dtype, zero=True)
    out[pad:pad + h, pad:pad + w] = a.transpose(1, 2, 0, 3)
    return out


def conv_fft_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int = 1, pad: int = 0,
                     ws: dict | None = None, relu: bool = False, pool: bool = False
                     ) -> tuple[np.ndarray, dict[str, Any]]:
    """Stride-1 cross-correlation by FFT, optionally followed by a 2x2/stride-2 max-pool and ReLU.

    x : (N, C, H, W), any layout; W : (F, C, kh, kw); b : (F,). Returns out (N, F, OH, OW),
    or (N, F, OH//2, OW//2) with ``pool``, a view of CHWN memory, and the cache
    :func:`conv_fft_backward` needs: the input's spectrum (H'*Wq, C, N) complex, one (C, N)
    matrix per frequency (H' = H + 2*pad, Wq = (W + 2*pad)//2 + 1), and the kernel's.
    """
    F, C, kh, kw = W.shape
    if stride != 1:
        raise ValueError(f"the FFT convolution needs stride 1, got {stride}")
    if x.ndim != 4 or x.shape[1] != C:
        raise ValueError(f"conv_fft: input shape {x.shape} does not match weights {W.shape} (need (N, {C}, H, W))")
    N, _, H, Wd = x.shape
    size = (H + 2 * pad, Wd + 2 * pad)
    OH, OW = size[0] - kh + 1, size[1] - kw + 1
    X = _spectrum(_spatial_first(to_chwn(x), ws, "x", pad), size).reshape(-1, C, N)   # (Fq, C, N)
    Wconj = np.conj(_spectrum(W.transpose(2, 3, 0, 1), size)).reshape(-1, F, C)            # (Fq, F, C)
    Y = np.matmul(Wconj, X)                                                                # (Fq, F, N)
    Z = _signal(Y.reshape(size[0], -1, F, N), size, slice(0, OH), slice(0, OW))            # (OH, OW, F, N)
    Z = np.ascontiguousarray(Z.transpose(2, 0, 1, 3))                                      # (F, OH, OW, N)
    cache = {"X": X, "Wconj": Wconj, "W": W, "x_shape": (C, H, Wd, N), "pad": pad}
    out = pool_bias_relu(Z, b, relu, pool, cache)
    return from_chwn(out), cache


def conv_fft_backward(dout: np.ndarray, cache: dict[str, Any], need_dx: bool = True,
                      ws: dict | None = None) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients of :func:`conv_fft_forward`: dout has the shape of its output (any layout).
    Returns (dx (N, C, H, W), a view of CHWN memory, or None when ``need_dx`` is False;
    dW (F, C, kh, kw); db (F,))."""
    W, X, pad = cache["W"], cache["X"], cache["pad"]
    F, C, kh, kw = W.shape
    _, H, Wd, N = cache["x_shape"]
    size = (H + 2 * pad, Wd + 2 * pad)
    dz, db = pool_bias_relu_backward(dout, cache, ws)                                     # (F, OH, OW, N)
    dZ = _spectrum(_spatial_first(dz, ws, "dz"), size).reshape(-1, F, N)   # (Fq, F, N)
    # conj(dZ) @ X^T, the spectrum of the correlation of x with dz, as conj(dZ @ conj(X)^T):
    # conjugating X (C rows per frequency) and the (F, C) products rather than dZ (F rows, F > C here)
    dWf = np.conj(np.matmul(dZ, np.conj(X).transpose(0, 2, 1)))                          # (Fq, F, C)
    dW = _signal(dWf.reshape(size[0], -1, F, C), size, slice(0, kh), slice(0, kw))       # (kh, kw, F, C)
    dW = np.ascontiguousarray(dW.transpose(2, 3, 0, 1))
    if not need_dx:
        return None, dW, db
    dX = np.matmul(np.conj(cache["Wconj"]).transpose(0, 2, 1), dZ)                       # (Fq, C, N)
    dx = _signal(dX.reshape(size[0], -1, C, N), size, slice(pad, pad + H), slice(pad, pad + Wd))
    return from_chwn(np.ascontiguousarray(dx.transpose(2, 0, 1, 3))), dW, db
