"""An exponential moving average (EMA) of a model's weights, updated after every optimizer step.

The average of the last few thousand steps' weights generalises better than the weights of the
last step, which the last mini-batches pushed around; it costs two vector operations per array
and step, and no gradient. After update t (1, 2, ...) every floating-point array a becomes

    a <- a + (1 - d_t) * (v - a),    d_t = min(decay, (1 + t) / (10 + t))

(v: the array's value after the step; torch's ``lerp_`` form, as in
``torch.optim.swa_utils.get_ema_multi_avg_fn``). The warm-up of d_t (TensorFlow's
``ExponentialMovingAverage`` with ``num_updates``) lets the average forget the random
initial weights within tens of steps, so it is usable after the first epoch too; from
t = (10 * decay - 1) / (1 - decay) on (8,990 steps for 0.999), d_t is ``decay``. Arrays that are
not floating point (counters) are copied, not averaged.

What to average is the caller's choice: :func:`pipeline.nn.train.train` passes the parameters
and the BatchNorm running statistics together, so the averaged weights are scored with
statistics that moved with them (see its docstring).
"""
from __future__ import annotations

from typing import Any

import numpy as np

WARMUP = 10  # d_t = min(decay, (1 + t) / (WARMUP + t))


class ExponentialMovingAverage:
    """EMA of a dict of arrays (name -> ndarray, any shapes); ``average`` holds the averaged copies."""

    def __init__(self, decay: float, arrays: dict[str, np.ndarray]) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the EMA decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.t = 0
        self.average = {name: np.array(a, copy=True) for name, a in arrays.items()}

    def decay_at(self, t: int) -> float:
        """d_t, the weight of the old average in update ``t`` (1-based)."""
        return min(self.decay, (1.0 + t) / (WARMUP + t))

    def update(self, arrays: dict[str, np.ndarray]) -> None:
        """Move the average towards ``arrays`` (the same names and shapes as at construction)."""
        self.t += 1
        weight = 1.0 - self.decay_at(self.t)
        for name, avg in self.average.items():
            value = arrays[name]
            if np.issubdtype(avg.dtype, np.floating):
                step = value - avg
                step *= avg.dtype.type(weight)
                avg += step
            else:
                np.copyto(avg, value)

    def state_dict(self) -> dict[str, Any]:
        """Plain dict (decay, t, average as array copies): goes into a training checkpoint."""
        return {"decay": self.decay, "t": self.t, "average": {k: v.copy() for k, v in self.average.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` gave (names and shapes must match this average's)."""
        saved = state["average"]
        if set(saved) != set(self.average):
            raise ValueError(f"EMA state names differ: missing {sorted(set(self.average) - set(saved))}, "
                             f"unexpected {sorted(set(saved) - set(self.average))}")
        for name, avg in self.average.items():
            if np.shape(saved[name]) != avg.shape:
                raise ValueError(f"EMA state {name}: saved shape {np.shape(saved[name])} != {avg.shape}")
            np.copyto(avg, saved[name])
        self.decay, self.t = float(state["decay"]), int(state["t"])
