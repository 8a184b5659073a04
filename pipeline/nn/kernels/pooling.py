"""Max-pooling: the strided fast kernel, first-maximum gradient routing, and slow references.

The fast kernel works on CHWN memory (see :mod:`.layout`): the pool is the
elementwise max of the size*size strided sub-grids, each a set of runs of N
contiguous floats, so no window is ever copied. Its output is an (N, C, OH, OW)
view of CHWN memory.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.nn.kernels.layout import conv_output_size, from_chwn, to_chwn

WINDOW_2X2 = ((0, 0), (0, 1), (1, 0), (1, 1))  # positions in a 2x2 window, row-major (torch's tie order)
# Pooled elements per group of channels in maxpool_backward (256 KB of float32): the routing's
# masks and remainders stay in cache between its passes. Measured on seed-keras's 28x28x32
# pool, 1 thread: 4.5 ms against 5.8 for one call over all channels. (Grouping the forward
# pass, which streams its input once anyway, measured slower.)
GROUP_ITEMS = 1 << 16


def route_to_first_max(windows: list[np.ndarray], m: np.ndarray, grad: np.ndarray,
                       outs: list[np.ndarray], accumulate: bool = False) -> None:
    """Max-pool backward over the window positions of a pool.

    windows : the pool's input at each window position, in row-major window order,
    each of the shape of ``m`` (the pooled maximum) and ``grad`` (its gradient).
    Writes ``grad`` into ``outs[p]`` where position p holds the *first* maximum and
    0 elsewhere (torch's rule), so ties on flat background never duplicate gradient.
    With ``accumulate`` it adds instead (overlapping windows share input pixels).
    Shared by this module's max-pool and the fused conv+pool kernels.
    """
    hit = np.empty(m.shape, bool)
    if accumulate:
        taken = np.empty(m.shape, bool)
        last = len(windows) - 1
        for p, (window, out) in enumerate(zip(windows, outs)):
            np.equal(window, m, out=hit)
            if p == 0:
                taken[...] = hit
            else:
                hit &= ~taken
                if p < last:
                    taken |= hit
            out += grad * hit
        return
    # Hand the gradient out position by position and keep what is left: rem * hit is exactly
    # rem or 0, so rem - out leaves exactly 0 where a position took it. The max is one of the
    # positions, so what is left after all but the last is exactly the last position's share.
    # Three passes per position instead of five (measured 25% faster on seed-keras's pool).
    rem = None  # the gradient not handed out yet (``grad`` itself is never modified)
    for window, out in zip(windows[:-1], outs[:-1]):
        np.equal(window, m, out=hit)
        src = grad if rem is None else rem
        np.multiply(src, hit, out=out)
        rem = np.subtract(src, out, out=rem)  # allocated on the first position, then reused
    outs[-1][...] = grad if rem is None else rem


def _pool_slices(size: int, stride: int, OH: int, OW: int):
    """The (slice_h, slice_w) of each window offset, in row-major window order."""
    for i in range(size):
        for j in range(size):
            yield slice(i, i + stride * OH, stride), slice(j, j + stride * OW, stride)


def maxpool_forward(x: np.ndarray, size: int = 2, stride: int | None = None
                    ) -> tuple[np.ndarray, dict[str, Any]]:
    """Max pooling with a square window, no padding, floor mode (like torch's default).

    x : (N, C, H, W), any layout. Returns out (N, C, OH, OW) (a view of CHWN
    memory) and the cache :func:`maxpool_backward` needs.
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
    # a few channels at a time, so the routing's masks and remainders stay in cache between its
    # passes (elementwise work: the same bits as one call over all channels)
    group = max(1, GROUP_ITEMS // max(1, OH * OW * N))
    for c0 in range(0, C, group):
        ch = slice(c0, c0 + group)
        route_to_first_max([xc[ch, sh, sw] for sh, sw in slices], out[ch], dc[ch],
                           [dx[ch, sh, sw] for sh, sw in slices], accumulate=overlapping)
    return from_chwn(dx)


def maxpool_forward_ref(x: np.ndarray, size: int = 2, stride: int | None = None) -> np.ndarray:
    """Slow reference: the max of each window, position by position. x (N, C, H, W) -> (N, C, OH, OW)."""
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
    """Slow reference gradient: route each output's gradient to the first argmax of its window.

    dout (N, C, OH, OW), x (N, C, H, W) -> dx (N, C, H, W).
    """
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
