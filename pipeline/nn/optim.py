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
SCHEDULES = ("constant", "step", "cosine", "onecycle")
# Schedules whose function takes the 0-based global *step* (mini-batch) instead of the epoch.
PER_STEP_SCHEDULES = ("onecycle",)


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
        self._scratch: np.ndarray | None = None  # (2, size) reused by every update

    # Parameters longer than 16 chunks (1M weights) are updated a chunk at a time, so the
    # parameter, its gradient, m, v and the two scratch chunks (6 x 256 KB in float32) stay in
    # cache between the update's 13 elementwise operations; shorter ones in one go (the
    # per-chunk calls cost more than they save). Measured (1 thread): seed-keras's 1.6M-weight
    # dense layer 3.4 ms in chunks, 3.7 whole, 4.4 with fresh temporaries.
    CHUNK = 1 << 16

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
            consts = (dt(self.beta1), dt(1.0 - self.beta1), dt(self.beta2), dt(1.0 - self.beta2),
                      dt(math.sqrt(bc2)), dt(self.eps), dt(self.lr / bc1))
            self._update(p, g, m, v, consts)

    def _update(self, p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, consts: tuple) -> None:
        """One parameter's update in place, into reused scratch instead of temporaries: the same
        float32 operations in the same order as :func:`adam_update_ref`, so the same bits."""
        b1, c1, b2, c2, sb2, eps, lrb = consts
        n = p.size
        if n == 0:
            return
        step = n
        if n > 16 * self.CHUNK and all(x.flags.c_contiguous for x in (p, g, m, v)):
            p, g, m, v = (x.reshape(-1) for x in (p, g, m, v))  # views
            step = self.CHUNK
        scratch = self._scratch
        if scratch is None or scratch.dtype != p.dtype or scratch.shape[1] < step:
            scratch = self._scratch = np.empty((2, step), p.dtype)
        for s in range(0, n, step):
            if step == n:
                ps, gs, ms, vs = p, g, m, v
                a, d = scratch[0, :n].reshape(p.shape), scratch[1, :n].reshape(p.shape)
            else:
                e = s + step
                ps, gs, ms, vs = p[s:e], g[s:e], m[s:e], v[s:e]
                a, d = scratch[0, :len(ps)], scratch[1, :len(ps)]
            np.multiply(ms, b1, out=ms)        # m = b1 * m + (1 - b1) * g
            np.multiply(gs, c1, out=a)
            np.add(ms, a, out=ms)
            np.multiply(gs, gs, out=a)         # v = b2 * v + (1 - b2) * g * g
            np.multiply(a, c2, out=a)
            np.multiply(vs, b2, out=vs)
            np.add(vs, a, out=vs)
            np.sqrt(vs, out=d)                 # torch: denom = sqrt(v) / sqrt(bc2) + eps
            np.divide(d, sb2, out=d)
            np.add(d, eps, out=d)
            np.divide(ms, d, out=d)            # p -= lr / bc1 * m / denom
            np.multiply(d, lrb, out=d)
            np.subtract(ps, d, out=ps)

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


def adam_update_ref(p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, t: int, lr: float = 1e-3,
                    beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> None:
    """Slow, obvious reference of one :class:`Adam` update (no weight decay) of p, m, v in place:
    whole arrays with temporaries, in the dtype of p, torch.optim.Adam's arithmetic at step ``t`` (1-based)."""
    dt = p.dtype.type
    bc1, bc2 = 1.0 - beta1 ** t, 1.0 - beta2 ** t
    m *= dt(beta1)
    m += dt(1.0 - beta1) * g
    v *= dt(beta2)
    v += dt(1.0 - beta2) * (g * g)
    denom = np.sqrt(v)
    denom /= dt(math.sqrt(bc2))
    denom += dt(eps)
    upd = m / denom
    upd *= dt(lr / bc1)
    p -= upd


def make_optimizer(name: str, lr: float, momentum: float = 0.9, weight_decay: float = 0.0):
    """The optimizer called ``name`` (one of OPTIMIZERS): Adam, or SGD with Nesterov ``momentum``."""
    if name == "adam":
        return Adam(lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return SGD(lr=lr, momentum=momentum, nesterov=True, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; use one of {', '.join(OPTIMIZERS)}")


def make_schedule(name: str, base_lr: float, total_epochs: int, **kw) -> Callable[[int], float]:
    """A function epoch (0-based) -> learning rate; for the schedules in PER_STEP_SCHEDULES, a function
    global step (0-based mini-batch count since the start of training) -> learning rate.

    constant: base_lr.
    step: base_lr * gamma ** (epoch // step_size); kw step_size (default max(1, total_epochs // 3)), gamma (0.1).
    cosine: optional linear warmup over ``warmup`` epochs (default 0) from base_lr/warmup up to base_lr,
            then min_lr + (base_lr - min_lr) * (1 + cos(pi * t)) / 2 with t going 0 -> 1 over the rest.
    onecycle: per step, see :func:`onecycle`; kw steps_per_epoch (default 1), warmup_epochs (float, default 0).
    """
    allowed = {"constant": set(), "step": {"step_size", "gamma"}, "cosine": {"min_lr", "warmup"},
               "onecycle": {"steps_per_epoch", "warmup_epochs"}}
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
    if name == "onecycle":
        return onecycle(base_lr, total_epochs, int(kw.get("steps_per_epoch", 1)), float(kw.get("warmup_epochs", 0.0)))
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


def onecycle(base_lr: float, total_epochs: int, steps_per_epoch: int,
             warmup_epochs: float = 0.0) -> Callable[[int], float]:
    """A per-step schedule: linear warm-up, then cosine decay to 0 at the end of training.

    With S = total_epochs * steps_per_epoch steps and W = round(warmup_epochs * steps_per_epoch)
    warm-up steps, step s (0-based) gets

        s < W:   base_lr * (s + 1) / W                              (base_lr / W up to base_lr)
        s >= W:  base_lr * (1 + cos(pi * (s - W) / (S - W))) / 2    (base_lr down to ~0: the last step
                                                                     gets base_lr * (1 - cos(pi / (S - W))) / 2)

    This is torch's ``SequentialLR([LinearLR(start_factor=1/W, end_factor=1, total_iters=W-1),
    CosineAnnealingLR(T_max=S-W)], milestones=[W])`` stepped once per batch (W >= 2), not
    ``OneCycleLR``, whose warm-up starts at base_lr / 25 and follows a cosine too.
    """
    total = total_epochs * steps_per_epoch
    warmup = int(round(warmup_epochs * steps_per_epoch))
    if base_lr <= 0 or steps_per_epoch < 1 or not 0 <= warmup < total:
        raise ValueError(f"onecycle needs base_lr > 0, steps_per_epoch >= 1 and 0 <= warmup_epochs < total epochs "
                         f"(got {base_lr}, {steps_per_epoch}, {warmup_epochs} of {total_epochs})")
    decay = total - warmup

    def lr(step: int) -> float:
        if step < warmup:
            return float(base_lr * (step + 1) / warmup)
        t = min(step - warmup, decay) / decay
        return float(base_lr * 0.5 * (1.0 + math.cos(math.pi * t)))

    return lr
