"""Memory layouts of 4-D activations, output sizes, and reusable scratch arrays.

Every kernel takes and returns arrays with NCHW *semantics* (``x[n, c, h, w]``),
but the memory behind them is whatever suits the kernel that wrote it. This is
the one rule for what travels between layers:

* a layer receives an (N, C, H, W) array in any memory layout and returns an
  (N, C, H, W) *view* of the memory its kernel wrote;
* the im2col convolution (:mod:`.im2col`) and max-pooling (:mod:`.pooling`) write
  **CHWN** memory (batch innermost), the phase-plane conv block (:mod:`.phase`)
  writes **CNHW** memory;
* each kernel converts its input with :func:`to_chwn` or :func:`to_cnhw`, which
  copy only when the memory is not already in the order the kernel needs;
  elementwise layers (ReLU, Dropout, BatchNorm) keep the layout they get.

Why batch-innermost memory: NumPy pays per inner loop, and with N innermost a
shifted window ``x[c, i:i+OH, j:j+OW, :]`` is a run of OW*N contiguous floats.
"""
from __future__ import annotations

import numpy as np


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


def workspace(ws: dict | None, key: str, shape: tuple, dtype, zero: bool = False) -> np.ndarray:
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
