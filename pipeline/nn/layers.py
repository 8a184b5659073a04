"""Layers of the NumPy CNN engine.

Protocol (every layer):
  params  : dict[str, ndarray]  trainable arrays (float32 in a model; float64 for gradient checks)
  grads   : dict[str, ndarray]  same keys, filled by backward()
  buffers : dict[str, ndarray]  non-trainable state (BatchNorm running statistics), often empty
  forward(x, training) -> y     caches what backward needs
  backward(dout) -> dx          fills grads; returns None when ``needs_input_grad`` is False
  output_shape(input_shape)     per-sample shape, no batch dimension

Images are NCHW. Four-dimensional activations travel as (N, C, H, W) arrays in
whatever memory layout the kernel that produced them wrote (CHWN or CNHW, see
pipeline/nn/kernels/layout.py); every layer accepts any layout and elementwise
layers keep the one they get.
The dtype of a layer is the dtype of its parameters; inputs are not cast here
(the model casts once at the entrance).
"""
from __future__ import annotations

import math

import numpy as np

from pipeline.nn import kernels as K

INITS = ("he", "he_uniform", "glorot", "glorot_normal")


def init_weights(shape: tuple, fan_in: int, fan_out: int, scheme: str,
                 rng: np.random.Generator, dtype=np.float32) -> np.ndarray:
    """Random weights of ``shape``.

    he: N(0, 2/fan_in) (ReLU nets); he_uniform: U(+-sqrt(6/fan_in));
    glorot: U(+-sqrt(6/(fan_in+fan_out))) (Keras default); glorot_normal: N(0, 2/(fan_in+fan_out)).
    Drawn in float32 from ``rng`` so the same seed gives bit-identical weights.
    """
    if scheme == "he":
        w = rng.standard_normal(shape, dtype=np.float32) * np.float32(math.sqrt(2.0 / fan_in))
    elif scheme == "he_uniform":
        a = math.sqrt(6.0 / fan_in)
        w = rng.uniform(-a, a, shape).astype(np.float32)
    elif scheme == "glorot":
        a = math.sqrt(6.0 / (fan_in + fan_out))
        w = rng.uniform(-a, a, shape).astype(np.float32)
    elif scheme == "glorot_normal":
        w = rng.standard_normal(shape, dtype=np.float32) * np.float32(math.sqrt(2.0 / (fan_in + fan_out)))
    else:
        raise ValueError(f"unknown init {scheme!r}; use one of {', '.join(INITS)}")
    return w.astype(dtype)


class Layer:
    """Base: no parameters, no buffers, identity shape."""

    needs_input_grad = True  # Sequential clears it on the first layer: the image gradient is never used

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}

    def output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def backward(self, dout: np.ndarray) -> np.ndarray | None:  # pragma: no cover
        raise NotImplementedError


class Conv2D(Layer):
    """Convolution. x (N, C, H, W) -> (N, F, OH, OW); W (F, C, kh, kw), b (F,)."""

    def __init__(self, in_channels: int, filters: int, kernel: int | tuple = 3, stride: int = 1,
                 pad: int = 0, init: str = "he", rng: np.random.Generator | None = None,
                 dtype=np.float32) -> None:
        super().__init__()
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
        self.stride, self.pad = int(stride), int(pad)
        rng = rng if rng is not None else np.random.default_rng(0)
        fan_in, fan_out = in_channels * kh * kw, filters * kh * kw
        self.params = {"W": init_weights((filters, in_channels, kh, kw), fan_in, fan_out, init, rng, dtype),
                       "b": np.zeros(filters, dtype)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self._ws: dict = {}  # reused im2col scratch
        self._cache = None

    def output_shape(self, input_shape: tuple) -> tuple:
        C, H, W = input_shape
        F, Cw, kh, kw = self.params["W"].shape
        if C != Cw:
            raise ValueError(f"conv expects {Cw} input channels, got {C}")
        return (F, K.conv_output_size(H, kh, self.stride, self.pad),
                K.conv_output_size(W, kw, self.stride, self.pad))

    def forward(self, x, training=False):
        out, self._cache = K.conv2d_forward(x, self.params["W"], self.params["b"],
                                            self.stride, self.pad, self._ws)
        return out

    def backward(self, dout):
        dx, dW, db = K.conv2d_backward(dout, self._cache, self.needs_input_grad, self._ws)
        self.grads["W"][...] = dW
        self.grads["b"][...] = db
        return dx


class ReLU(Layer):
    """max(x, 0); the gradient passes where the output is positive."""

    def forward(self, x, training=False):
        self._out = np.maximum(x, 0)
        return self._out

    def backward(self, dout):
        # multiply by the boolean mask: one pass, layout preserved
        return dout * (self._out > 0)


class MaxPool2D(Layer):
    """Max pooling, square window, floor mode. (N, C, H, W) -> (N, C, OH, OW)."""

    def __init__(self, size: int = 2, stride: int | None = None) -> None:
        super().__init__()
        self.size = int(size)
        self.stride = self.size if stride is None else int(stride)

    def output_shape(self, input_shape):
        C, H, W = input_shape
        return (C, K.conv_output_size(H, self.size, self.stride, 0),
                K.conv_output_size(W, self.size, self.stride, 0))

    def forward(self, x, training=False):
        out, self._cache = K.maxpool_forward(x, self.size, self.stride)
        return out

    def backward(self, dout):
        return K.maxpool_backward(dout, self._cache)


class Flatten(Layer):
    """(N, C, H, W) -> (N, C*H*W) in NCHW order (torch's order, so weights port directly)."""

    def output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)

    def forward(self, x, training=False):
        self._shape = x.shape
        # a CHWN-memory input gives a transposed (N, C*H*W) view, no copy: Dense's
        # GEMM takes it as a transposed operand
        if x.ndim == 4 and x.transpose(1, 2, 3, 0).flags.c_contiguous:
            return x.transpose(1, 2, 3, 0).reshape(-1, x.shape[0]).T
        return x.reshape(x.shape[0], -1)

    def backward(self, dout):
        return dout.reshape(self._shape)


class Dense(Layer):
    """Affine. x (N, D) -> x @ W + b (N, U); W (D, U), b (U,)."""

    def __init__(self, in_features: int, units: int, init: str = "he",
                 rng: np.random.Generator | None = None, dtype=np.float32) -> None:
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng(0)
        self.params = {"W": init_weights((in_features, units), in_features, units, init, rng, dtype),
                       "b": np.zeros(units, dtype)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}

    def output_shape(self, input_shape):
        if len(input_shape) != 1 or input_shape[0] != self.params["W"].shape[0]:
            raise ValueError(f"dense expects ({self.params['W'].shape[0]},) inputs, got {tuple(input_shape)}"
                             " (add a flatten layer before it?)")
        return (self.params["W"].shape[1],)

    def forward(self, x, training=False):
        self._x = x
        out = x @ self.params["W"]
        out += self.params["b"]
        return out

    def backward(self, dout):
        np.matmul(self._x.T, dout, out=self.grads["W"])
        np.sum(dout, axis=0, out=self.grads["b"])
        if not self.needs_input_grad:
            return None
        if self._x.T.flags.c_contiguous:
            # the input was a transposed view of (D, N) memory (Flatten of CHWN maps): give dx in
            # that layout too, (W @ dout.T).T, so the layers before need no transposing copy
            return (self.params["W"] @ dout.T).T
        return dout @ self.params["W"].T


class Dropout(Layer):
    """Inverted dropout: in training, zero each unit with probability ``rate`` and
    scale the survivors by 1/(1-rate), so inference is the identity.
    Draws come from the model's Generator, never global state."""

    def __init__(self, rate: float = 0.5, rng: np.random.Generator | None = None) -> None:
        super().__init__()
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
        self.rate = float(rate)
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self._mask = None

    def forward(self, x, training=False):
        if not training or self.rate == 0.0:
            self._mask = None
            return x
        # Draw in memory order (CHWN for images) so the mask multiply streams.
        shape = (x.shape[1], x.shape[2], x.shape[3], x.shape[0]) if x.ndim == 4 else x.shape
        draws = self.rng.random(shape, dtype=np.float32)
        keep = draws >= np.float32(self.rate)
        scale = x.dtype.type(1.0 / (1.0 - self.rate))
        if x.dtype == np.float32:
            # the scaled mask in the draws' own memory: a bool -> float32 copy and an in-place
            # scale run 2-3x faster than bool * scalar, whose every element is cast through a buffer
            np.copyto(draws, keep)
            draws *= scale
            mask = draws
        else:
            mask = np.multiply(keep, scale, dtype=x.dtype)
        self._mask = K.from_chwn(mask) if x.ndim == 4 else mask
        return x * self._mask

    def backward(self, dout):
        return dout if self._mask is None else dout * self._mask


class BatchNorm(Layer):
    """Batch normalisation over channels: 4-D input (N, C, H, W) normalises each
    channel over (N, H, W); 2-D input (N, D) normalises each feature over N.
    gamma, beta (C,); running_mean, running_var (C,) buffers updated with torch's
    convention: r = (1 - momentum) * r + momentum * batch_stat, unbiased variance."""

    # Bytes of activations per chunk of channels whose input gradient is finished before the
    # next: the chunk's four passes then hit cache, not memory (kaggle's first BN, 32x26x26
    # maps: backward 4.3 -> 2.7 ms, benchmarks/engine_layers.py, /work/notes/study10). The forward pass measured slower chunked
    # (NumPy's per-call cost on 32 channels outweighed the cache) and stays whole.
    CHUNK_BYTES = 256 << 10

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-5,
                 dtype=np.float32) -> None:
        super().__init__()
        self.momentum, self.eps = float(momentum), float(eps)
        self.params = {"gamma": np.ones(num_features, dtype), "beta": np.zeros(num_features, dtype)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.buffers = {"running_mean": np.zeros(num_features, dtype),
                        "running_var": np.ones(num_features, dtype)}

    def output_shape(self, input_shape):
        C = input_shape[0]
        if C != self.params["gamma"].shape[0]:
            raise ValueError(f"batchnorm has {self.params['gamma'].shape[0]} features, input has {C}")
        return tuple(input_shape)

    @staticmethod
    def _rows(x):
        """Channel-major 2-D view: (C, M) rows, one per channel."""
        if x.ndim == 4:
            xc = K.to_chwn(x)
            return xc.reshape(xc.shape[0], -1), xc.shape
        return x.T, None

    @staticmethod
    def _unrows(y, cshape):
        return K.from_chwn(y.reshape(cshape)) if cshape is not None else y.T

    def forward(self, x, training=False):
        rows, cshape = self._rows(x)
        gamma, beta = self.params["gamma"], self.params["beta"]
        dt = gamma.dtype.type
        if training:
            M = rows.shape[1]
            mean = rows.mean(axis=1)
            xm = rows - mean[:, None]  # kept for backward: xhat = xm * inv, never stored
            var = np.einsum("cm,cm->c", xm, xm) / dt(M)
            inv = dt(1.0) / np.sqrt(var + dt(self.eps))
            y = xm * (gamma * inv)[:, None]  # = xhat * gamma, one pass instead of two
            y += beta[:, None]
            m = dt(self.momentum)
            self.buffers["running_mean"] *= dt(1.0) - m
            self.buffers["running_mean"] += m * mean
            self.buffers["running_var"] *= dt(1.0) - m
            self.buffers["running_var"] += m * var * dt(M / max(M - 1, 1))
            self._cache = (xm, inv, cshape)
        else:
            inv = dt(1.0) / np.sqrt(self.buffers["running_var"] + dt(self.eps))
            scale = gamma * inv
            shift = beta - self.buffers["running_mean"] * scale
            y = rows * scale[:, None]
            y += shift[:, None]
            self._cache = (None, (rows, inv), cshape)
        return self._unrows(y, cshape)

    def backward(self, dout):
        xm, inv, cshape = self._cache
        dy, _ = self._rows(dout)
        gamma = self.params["gamma"]
        if xm is None:  # eval-mode forward: a fixed per-channel affine map
            rows, inv = inv
            xhat = (rows - self.buffers["running_mean"][:, None]) * inv[:, None]
            np.sum(dy, axis=1, out=self.grads["beta"])
            self.grads["gamma"][...] = np.einsum("cm,cm->c", dy, xhat)
            return self._unrows(dy * (gamma * inv)[:, None], cshape) if self.needs_input_grad else None
        M = dy.shape[1]
        dbeta = dy.sum(axis=1)
        dgamma = np.einsum("cm,cm->c", dy, xm) * inv  # sum(dy * xhat) with xhat = xm * inv
        self.grads["beta"][...] = dbeta
        self.grads["gamma"][...] = dgamma
        if not self.needs_input_grad:
            return None
        dt = gamma.dtype.type
        # dx = gamma*inv/M * (M*dy - sum(dy) - xhat*sum(dy*xhat)), xhat = xm*inv, as per-channel
        # a*dy + b*xm + c
        a = gamma * inv
        b = -a * inv * dgamma / dt(M)
        c = -a * dbeta / dt(M)
        dx = np.empty_like(dy)
        # its four passes a few channels at a time, each chunk written while it is in cache
        # (elementwise: the same bits whatever the chunks)
        chunks = self._chunks(dy)
        scratch = np.empty_like(xm[chunks[0]])  # the first chunk is the largest
        for ch in chunks:
            tmp = scratch[:ch.stop - ch.start]
            np.multiply(dy[ch], a[ch, None], out=dx[ch])
            np.multiply(xm[ch], b[ch, None], out=tmp)
            dx[ch] += tmp
            dx[ch] += c[ch, None]
        return self._unrows(dx, cshape)

    def _chunks(self, rows: np.ndarray) -> list[slice]:
        """Channel slices of (C, M) rows, each about CHUNK_BYTES (at least one channel); one
        slice when the rows are not C-contiguous (a 2-D input's transposed view)."""
        C, M = rows.shape
        step = max(1, self.CHUNK_BYTES // (M * rows.itemsize)) if rows.flags.c_contiguous else C
        return [slice(c, min(C, c + step)) for c in range(0, C, step)]


def batchnorm_train_ref(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float,
                        dout: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Slow reference of :class:`BatchNorm` in training mode, the textbook chain rule step by step.

    x, dout : (N, C, H, W) or (N, D); gamma, beta : (C,). Returns (y, dx, dgamma, dbeta).
    """
    axes = (0, 2, 3) if x.ndim == 4 else (0,)
    shape = (1, -1, 1, 1) if x.ndim == 4 else (1, -1)
    M = x.size // x.shape[1]
    mean = x.mean(axis=axes).reshape(shape)
    var = ((x - mean) ** 2).mean(axis=axes).reshape(shape)
    xhat = (x - mean) / np.sqrt(var + eps)
    y = xhat * gamma.reshape(shape) + beta.reshape(shape)
    dbeta = dout.sum(axis=axes)
    dgamma = (dout * xhat).sum(axis=axes)
    dxhat = dout * gamma.reshape(shape)
    dvar = (dxhat * (x - mean) * -0.5 * (var + eps) ** -1.5).sum(axis=axes).reshape(shape)
    dmean = ((-dxhat / np.sqrt(var + eps)).sum(axis=axes).reshape(shape)
             + dvar * (-2 * (x - mean)).mean(axis=axes).reshape(shape))
    dx = dxhat / np.sqrt(var + eps) + dvar * 2 * (x - mean) / M + dmean / M
    return y, dx, dgamma, dbeta
