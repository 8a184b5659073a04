"""The fusion planner: which layers run together as one kernel, and which kernel.

A conv followed by a ReLU and/or a 2x2/stride-2 max-pool runs as one
:class:`FusedConv` step; :func:`prefer_block` picks, per layer, the phase-plane
block kernel or the im2col GEMM kernel (both with ReLU and pool fused). The
maths is the same either way (tests compare fused and unfused models); the
layers stay as built, so feature maps and the per-layer protocol are unaffected.
"""
from __future__ import annotations

from pipeline.nn import kernels as K
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


class FusedConv:
    """An execution step, not a spec layer: a Conv2D together with the ReLU
    and/or 2x2/stride-2 max-pool right after it, run as one kernel. It shares
    the conv layer's params and grads, so optimizers and state dicts see no
    difference. ``block`` picks the phase-plane kernel (kernels.phase, stride 1
    only) over the im2col GEMM one (kernels.im2col).
    x (N, C, H, W) -> (N, F, OH, OW), or (N, F, OH//2, OW//2) with ``pool``."""

    def __init__(self, conv: Conv2D, relu: bool, pool: bool, block: bool) -> None:
        if block and conv.stride != 1:
            raise ValueError("the block kernel needs stride 1")
        self.conv, self.relu, self.pool, self.block = conv, relu, pool, block
        self.params, self.grads = conv.params, conv.grads
        self._ws: dict = {}  # own scratch: a direct conv.forward() (feature maps) must not clobber it

    def forward(self, x, training=False):
        c = self.conv
        if self.block:
            out, self._cache = K.conv_block_forward(x, c.params["W"], c.params["b"], c.pad,
                                                    self.relu, self.pool, self._ws)
        else:
            out, self._cache = K.conv2d_forward(x, c.params["W"], c.params["b"], c.stride, c.pad,
                                                self._ws, self.relu, self.pool)
        return out

    def backward(self, dout):
        c = self.conv
        bwd = K.conv_block_backward if self.block else K.conv2d_backward
        dx, dW, db = bwd(dout, self._cache, c.needs_input_grad, self._ws)
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
