"""The fusion planner: which layers run together as one kernel, and which kernel.

A conv followed by a ReLU and/or a 2x2/stride-2 max-pool runs as one
:class:`FusedConv` step; :func:`prefer_block` picks, per layer, the phase-plane
block kernel or a GEMM kernel, :func:`prefer_spectral`, per training call, the FFT
kernel, and :func:`prefer_rows`, per call, the row-blocked GEMM kernel or the
whole-batch one (all with ReLU and pool fused). The maths is the same either way
(tests compare fused and unfused models); the layers stay as built, so feature maps
and the per-layer protocol are unaffected.
"""
from __future__ import annotations

from pipeline.nn import kernels as K
from pipeline.nn.kernels import parallel
from pipeline.nn.layers import Conv2D, Layer


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


# Which training steps run row-blocked, by the size of the whole-batch column matrix.
# Measured (1 thread, batch 100, forward + backward, medians of interleaved repeats):
# convs that keep or grow their size (3x3 pad 1: seed-keras, deep) take 0.7-0.9x the time
# from 11 MB up (their input gradient is a blocked correlation, no col2im at all), 0.95-0.99x
# at 7 MB (deep's 32->64 conv on 8x8), about 1.0-1.1x at 3 MB, where the whole matrix stays
# in cache anyway (the first convs, which need no input gradient). Convs that shrink their
# input (5x5 valid) fold their input gradient either way; timed alone, layer by layer, they
# gained only from 32 MB up, but in whole training steps (where the previous layers have
# evicted the cache; /work/notes/study7, two models alternating in one process, 1 thread)
# the blocks won from 6 MB: lenet5 0.88x (its 6->16 conv, 6 MB), twoconv 0.94x (16->32,
# 10 MB), seed-torch 0.98x (its first conv, 6 MB). Strided convs (their dx by phases, no fold):
# kaggle's 5x5/2 convs 0.81x (32->32 on 24x24, 46 MB) and 0.95x (64->64 on 8x8, 10 MB)
# (benchmarks/engine_layers.py, 3 rounds alternating with the whole-batch kernel, /work/notes/study10).
ROWS_MIN_BYTES = 4 << 20


def prefer_rows(C: int, kh: int, kw: int, H: int, W: int, stride: int, pad: int, N: int, itemsize: int,
                training: bool) -> bool:
    """Whether conv_rows_* (row-blocked) runs this call rather than conv2d_* (whole batch).

    Input (N, C, H, W), kernel kh x kw. Only with single-threaded BLAS: the row-blocked
    kernel makes one GEMM call per block, and with 2 OpenBLAS threads each call wakes the
    other thread, which on a busy machine can wait a scheduler slice; measured on this
    2-core machine under load (load average 4): 2-4x slower training steps and inference.
    With one thread, inference always takes it (its forward pass is faster at every size
    and computes the same dot products; the last bits can differ only where OpenBLAS picks
    another inner kernel for a small block).
    """
    if parallel.THREADS > 1:
        return False
    if not training:
        return True
    OH, OW = K.conv_output_size(H, kh, stride, pad), K.conv_output_size(W, kw, stride, pad)
    return C * kh * kw * OH * OW * N * itemsize >= ROWS_MIN_BYTES


# Multiply-adds per image of a conv's GEMM from which the FFT kernel trains it (5x5 kernels and
# larger). Measured (1 thread, batch 100, forward + backward with fused ReLU/pool, medians of 15,
# against the kernel the GEMM rules pick): 0.60x for strong's 32->64 conv on 12x12 (3.3 M), 0.76x
# for seed-torch's 16->32 on 24x24 (5.1 M), 0.78x for its 32->64 on 10x10 (1.8 M); 1.24x for the
# default twoconv's 16->32 on 12x12 (0.8 M), which stays on GEMM (its trained bits unchanged), as
# do all 3x3 convs (0.9-1.4x: nine products per output leave little for the transforms to save).
SPECTRAL_MIN_MACS = 1_500_000


def prefer_spectral(C: int, F: int, kh: int, kw: int, H: int, W: int, stride: int, pad: int,
                    training: bool) -> bool:
    """Whether a training call of this conv (input (N, C, H, W), F filters of kh x kw) runs on
    :mod:`.kernels.spectral`. Inference stays on GEMM: the FFT's gain is mostly in the backward
    pass (its forward pass measured 0.74-1.07x against GEMM's)."""
    if not training or stride != 1 or kh * kw < 25:
        return False
    OH, OW = K.conv_output_size(H, kh, stride, pad), K.conv_output_size(W, kw, stride, pad)
    return C * F * kh * kw * OH * OW >= SPECTRAL_MIN_MACS


# (forward, backward) of the kernels with the common signature, by the names FusedConv.kernel gives
KERNELS = {"fft": (K.conv_fft_forward, K.conv_fft_backward),
           "rows": (K.conv_rows_forward, K.conv_rows_backward),
           "whole": (K.conv2d_forward, K.conv2d_backward)}


class FusedConv:
    """An execution step, not a spec layer: a Conv2D together with the ReLU
    and/or 2x2/stride-2 max-pool right after it, run as one kernel. It shares
    the conv layer's params and grads, so optimizers and state dicts see no
    difference. ``block`` picks the phase-plane kernel (kernels.phase, stride 1
    only) over a GEMM one; each call then takes the FFT kernel (kernels.spectral) by
    :func:`prefer_spectral`, else the row-blocked GEMM kernel (kernels.blocked) or the
    whole-batch one (kernels.im2col) by :func:`prefer_rows`,
    and its backward pass the matching gradient kernel.
    x (N, C, H, W) -> (N, F, OH, OW), or (N, F, OH//2, OW//2) with ``pool``."""

    def __init__(self, conv: Conv2D, relu: bool, pool: bool, block: bool) -> None:
        if block and conv.stride != 1:
            raise ValueError("the block kernel needs stride 1")
        self.conv, self.relu, self.pool, self.block = conv, relu, pool, block
        self.params, self.grads = conv.params, conv.grads
        self._ws: dict = {}  # own scratch: a direct conv.forward() (feature maps) must not clobber it

    def kernel(self, x_shape: tuple, training: bool) -> str:
        """The kernel a call on an input of shape (N, C, H, W) takes: "phase", "fft", "rows" or "whole"."""
        c = self.conv
        if self.block:
            return "phase"
        F, C, kh, kw = c.params["W"].shape
        N, _, H, W = x_shape
        if prefer_spectral(C, F, kh, kw, H, W, c.stride, c.pad, training):
            return "fft"
        return "rows" if prefer_rows(C, kh, kw, H, W, c.stride, c.pad, N, c.params["W"].itemsize, training) else "whole"

    def forward(self, x, training=False):
        c = self.conv
        W = c.params["W"]
        name = self.kernel(x.shape, training)
        if name == "phase":
            out, self._cache = K.conv_block_forward(x, W, c.params["b"], c.pad, self.relu, self.pool, self._ws)
            self._bwd = K.conv_block_backward
            return out
        fwd, self._bwd = KERNELS[name]
        out, self._cache = fwd(x, W, c.params["b"], c.stride, c.pad, self._ws, self.relu, self.pool)
        return out

    def backward(self, dout):
        c = self.conv
        dx, dW, db = self._bwd(dout, self._cache, c.needs_input_grad, self._ws)
        c.grads["W"][...] = dW
        c.grads["b"][...] = db
        return dx


def plan(layers: list[Layer], kinds: list[str]) -> list:
    """The steps forward/backward run: ``layers`` (with their spec ``kinds``), except that
    a conv followed by ReLU and/or a 2x2/stride-2 max-pool becomes one FusedConv."""
    steps, i, n = [], 0, len(layers)
    while i < n:
        layer = layers[i]
        if kinds[i] == "conv":
            j, relu, pool = i + 1, False, False
            while j < n and j <= i + 2:
                nxt = layers[j]
                if kinds[j] == "relu" and not relu:
                    relu = True
                elif kinds[j] == "maxpool" and not pool and nxt.size == 2 and nxt.stride == 2:
                    pool = True
                else:
                    break
                j += 1
            if relu or pool:
                _, C, kh, kw = layer.params["W"].shape
                block = layer.stride == 1 and prefer_block(C, kh, kw, pool)
                steps.append(FusedConv(layer, relu, pool, block))
                i = j
                continue
        steps.append(layer)
        i += 1
    return steps
