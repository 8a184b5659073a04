"""Softmax and the softmax cross-entropy loss."""
from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of logits (N, K) -> probabilities (N, K), same dtype; max-shifted for stability."""
    z = logits - logits.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of logits (N, K) -> (N, K), computed without forming tiny probabilities."""
    z = logits - logits.max(axis=1, keepdims=True)
    z -= np.log(np.exp(z).sum(axis=1, keepdims=True))
    return z


class SoftmaxCrossEntropy:
    """Mean cross-entropy of softmax(logits) against integer labels.

    With ``label_smoothing`` s the target is (1 - s) * one_hot + s / K (torch's definition).
    forward(logits (N, K), labels int (N,)) -> float; backward() -> dlogits (N, K) = (p - target) / N.
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)
        self._cache = None

    def _targets(self, labels: np.ndarray, N: int, K: int, dtype) -> np.ndarray:
        t = np.full((N, K), self.label_smoothing / K, dtype=dtype)
        t[np.arange(N), labels] += dtype.type(1.0 - self.label_smoothing)
        return t

    def forward(self, logits: np.ndarray, labels: np.ndarray) -> float:
        if logits.ndim != 2:
            raise ValueError(f"logits must be (N, K), got shape {logits.shape}")
        labels = np.asarray(labels)
        N, K = logits.shape
        if labels.shape != (N,) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be integers of shape ({N},), got {labels.dtype} {labels.shape}")
        if N and (labels.min() < 0 or labels.max() >= K):
            raise ValueError(f"labels must lie in [0, {K}), got range [{labels.min()}, {labels.max()}]")
        logp = log_softmax(logits)
        if self.label_smoothing:
            target = self._targets(labels, N, K, logits.dtype)
            loss = -float(np.einsum("nk,nk->", target, logp, dtype=np.float64)) / N
        else:
            target = None
            loss = -float(logp[np.arange(N), labels].sum(dtype=np.float64)) / N
        self._cache = (logp, labels, target)
        return loss

    def backward(self) -> np.ndarray:
        if self._cache is None:
            raise RuntimeError("call forward() before backward()")
        logp, labels, target = self._cache
        N = logp.shape[0]
        d = np.exp(logp)
        if target is None:
            d[np.arange(N), labels] -= 1
        else:
            d -= target
        d /= d.dtype.type(N)
        return d
