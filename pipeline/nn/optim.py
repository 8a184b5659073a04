"""Optimizers (SGD with momentum/Nesterov, Adam) and learning-rate schedules, and the
names a user may choose them by (:data:`OPTIMIZERS`, :data:`SCHEDULES`).

Both optimizers follow torch.optim's update rules exactly, so a run can be
compared step for step with PyTorch. ``step(params, grads)`` updates the
parameter arrays in place (the model's live arrays); state is kept per name.
This module imports only NumPy: the task layer imports the choice lists from it.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

OPTIMIZERS = ("adam", "sgd")  # sgd = SGD with Nesterov momentum (see make_optimizer)
SCHEDULES = ("constant", "step", "cosine")


def _copy_arrays(d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.array(v, copy=True) for k, v in d.items()}


class SGD:
    """SGD: g += wd * p (L2); with momentum mu: buf = mu * buf + g, and the step uses
    buf (classical) or g + mu * buf (Nesterov); p -= lr * step."""

    def __init__(self, lr: float, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0) -> None:
        if lr <= 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD needs lr > 0, momentum >= 0, weight_decay >= 0 (got {lr}, {momentum}, {weight_decay})")
        if nesterov and momentum == 0:
            raise ValueError("Nesterov momentum needs momentum > 0")
        self.lr, self.momentum, self.nesterov, self.weight_decay = float(lr), float(momentum), bool(nesterov), float(weight_decay)
        self.velocity: dict[str, np.ndarray] = {}
        self.t = 0

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        self.t += 1
        for name, p in params.items():
            g = grads[name]
            dt = p.dtype.type
            if self.weight_decay:
                g = g + dt(self.weight_decay) * p
            if self.momentum:
                buf = self.velocity.get(name)
                if buf is None:
                    buf = self.velocity[name] = np.array(g, copy=True)  # torch: first buf = g
                else:
                    buf *= dt(self.momentum)
                    buf += g
                g = g + dt(self.momentum) * buf if self.nesterov else buf
            p -= dt(self.lr) * g

    def state_dict(self) -> dict:
        return {"type": "SGD", "lr": self.lr, "momentum": self.momentum, "nesterov": self.nesterov,
                "weight_decay": self.weight_decay, "t": self.t, "velocity": _copy_arrays(self.velocity)}

    def load_state_dict(self, d: dict) -> None:
        if d.get("type") != "SGD":
            raise ValueError(f"optimizer state is for {d.get('type')!r}, not SGD")
        self.lr, self.momentum, self.nesterov = float(d["lr"]), float(d["momentum"]), bool(d["nesterov"])
        self.weight_decay, self.t = float(d["weight_decay"]), int(d["t"])
        self.velocity = _copy_arrays(d["velocity"])


class Adam:
    """Adam (torch.optim.Adam's arithmetic). Weight decay is L2 by default
    (g += wd * p, like torch.optim.Adam); ``decoupled=True`` gives AdamW
    (p *= 1 - lr * wd before the step, like torch.optim.AdamW)."""

    def __init__(self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.0, decoupled: bool = False) -> None:
        if lr <= 0 or not 0 <= beta1 < 1 or not 0 <= beta2 < 1 or eps <= 0 or weight_decay < 0:
            raise ValueError("Adam needs lr > 0, 0 <= beta1, beta2 < 1, eps > 0, weight_decay >= 0")
        self.lr, self.beta1, self.beta2, self.eps = float(lr), float(beta1), float(beta2), float(eps)
        self.weight_decay, self.decoupled = float(weight_decay), bool(decoupled)
        self.m: dict[str, np.ndarray] = {}
        self.v: dict[str, np.ndarray] = {}
        self.t = 0

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        self.t += 1
        bc1 = 1.0 - self.beta1 ** self.t
        bc2 = 1.0 - self.beta2 ** self.t
        for name, p in params.items():
            g = grads[name]
            dt = p.dtype.type
            if self.weight_decay:
                if self.decoupled:
                    p *= dt(1.0 - self.lr * self.weight_decay)
                else:
                    g = g + dt(self.weight_decay) * p
            m = self.m.get(name)
            if m is None:
                m = self.m[name] = np.zeros_like(p)
                self.v[name] = np.zeros_like(p)
            v = self.v[name]
            m *= dt(self.beta1)
            m += dt(1.0 - self.beta1) * g
            v *= dt(self.beta2)
            v += dt(1.0 - self.beta2) * (g * g)
            # torch: denom = sqrt(v) / sqrt(bc2) + eps; p -= lr / bc1 * m / denom
            denom = np.sqrt(v)
            denom /= dt(math.sqrt(bc2))
            denom += dt(self.eps)
            upd = m / denom
            upd *= dt(self.lr / bc1)
            p -= upd

    def state_dict(self) -> dict:
        return {"type": "Adam", "lr": self.lr, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps,
                "weight_decay": self.weight_decay, "decoupled": self.decoupled, "t": self.t,
                "m": _copy_arrays(self.m), "v": _copy_arrays(self.v)}

    def load_state_dict(self, d: dict) -> None:
        if d.get("type") != "Adam":
            raise ValueError(f"optimizer state is for {d.get('type')!r}, not Adam")
        self.lr, self.beta1, self.beta2, self.eps = float(d["lr"]), float(d["beta1"]), float(d["beta2"]), float(d["eps"])
        self.weight_decay, self.decoupled, self.t = float(d["weight_decay"]), bool(d["decoupled"]), int(d["t"])
        self.m, self.v = _copy_arrays(d["m"]), _copy_arrays(d["v"])


def make_optimizer(name: str, lr: float, momentum: float = 0.9, weight_decay: float = 0.0):
    """The optimizer called ``name`` (one of OPTIMIZERS): Adam, or SGD with Nesterov ``momentum``."""
    if name == "adam":
        return Adam(lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return SGD(lr=lr, momentum=momentum, nesterov=True, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; use one of {', '.join(OPTIMIZERS)}")


def make_schedule(name: str, base_lr: float, total_epochs: int, **kw) -> Callable[[int], float]:
    """A function epoch (0-based) -> learning rate.

    constant: base_lr.
    step: base_lr * gamma ** (epoch // step_size); kw step_size (default max(1, total_epochs // 3)), gamma (0.1).
    cosine: optional linear warmup over ``warmup`` epochs (default 0) from base_lr/warmup up to base_lr,
            then min_lr + (base_lr - min_lr) * (1 + cos(pi * t)) / 2 with t going 0 -> 1 over the rest.
    """
    allowed = {"constant": set(), "step": {"step_size", "gamma"}, "cosine": {"min_lr", "warmup"}}
    if name not in allowed:
        raise ValueError(f"unknown schedule {name!r}; use one of {', '.join(SCHEDULES)}")
    extra = set(kw) - allowed[name]
    if extra:
        raise ValueError(f"schedule {name!r} takes {sorted(allowed[name]) or 'no options'}, not {sorted(extra)}")
    if base_lr <= 0 or total_epochs < 1:
        raise ValueError(f"need base_lr > 0 and total_epochs >= 1 (got {base_lr}, {total_epochs})")
    if name == "constant":
        return lambda epoch: float(base_lr)
    if name == "step":
        step_size = int(kw.get("step_size", max(1, total_epochs // 3)))
        gamma = float(kw.get("gamma", 0.1))
        if step_size < 1 or not 0 < gamma <= 1:
            raise ValueError(f"step schedule needs step_size >= 1 and 0 < gamma <= 1 (got {step_size}, {gamma})")
        return lambda epoch: float(base_lr * gamma ** (epoch // step_size))
    min_lr = float(kw.get("min_lr", 0.0))
    warmup = int(kw.get("warmup", 0))
    if not 0 <= min_lr <= base_lr or not 0 <= warmup < total_epochs:
        raise ValueError(f"cosine schedule needs 0 <= min_lr <= base_lr and 0 <= warmup < total_epochs "
                         f"(got min_lr={min_lr}, warmup={warmup})")

    def cosine(epoch: int) -> float:
        if epoch < warmup:
            return float(base_lr * (epoch + 1) / warmup)
        span = max(1, total_epochs - warmup - 1)
        t = min(1.0, (epoch - warmup) / span)
        return float(min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * t)))

    return cosine
