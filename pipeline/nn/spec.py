"""Model specs: what a spec entry may say (checked, with defaults filled in) and the
layer each entry builds.

Spec entries (defaults in brackets):
  {"type": "conv", "filters": F, "kernel": k or [kh, kw], "stride": [1], "pad": [0], "init": ["he"]}
  {"type": "relu"}
  {"type": "maxpool", "size": [2], "stride": [size]}
  {"type": "flatten"}
  {"type": "dense", "units": U, "init": ["he"]}
  {"type": "dropout", "rate": [0.5]}
  {"type": "batchnorm", "momentum": [0.1], "eps": [1e-5]}
"""
from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.nn import layers as L

# type -> (layer class name for the summary, required keys, optional keys with defaults)
SCHEMA: dict[str, tuple[str, dict[str, type], dict[str, Any]]] = {
    "conv": ("Conv2D", {"filters": int, "kernel": (int, list)},
             {"stride": 1, "pad": 0, "init": "he"}),
    "relu": ("ReLU", {}, {}),
    "maxpool": ("MaxPool2D", {}, {"size": 2, "stride": None}),
    "flatten": ("Flatten", {}, {}),
    "dense": ("Dense", {"units": int}, {"init": "he"}),
    "dropout": ("Dropout", {}, {"rate": 0.5}),
    "batchnorm": ("BatchNorm", {}, {"momentum": 0.1, "eps": 1e-5}),
}


def check_entry(i: int, entry: Any) -> dict:
    """Validate one spec entry; returns it with defaults filled in."""
    if not isinstance(entry, dict) or "type" not in entry:
        raise ValueError(f"spec entry {i} must be a dict with a 'type' key, got {entry!r}")
    kind = entry["type"]
    if kind not in SCHEMA:
        raise ValueError(f"spec entry {i}: unknown layer type {kind!r}; valid: {', '.join(SCHEMA)}")
    _, required, optional = SCHEMA[kind]
    unknown = set(entry) - {"type"} - set(required) - set(optional)
    if unknown:
        raise ValueError(f"spec entry {i} ({kind}): unknown keys {sorted(unknown)}; "
                         f"allowed: {sorted(set(required) | set(optional))}")
    missing = [k for k in required if k not in entry]
    if missing:
        raise ValueError(f"spec entry {i} ({kind}): missing required keys {missing}")
    full = {**optional, **entry}
    for key in ("filters", "units", "stride", "pad", "size"):
        v = full.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < (0 if key == "pad" else 1)):
            raise ValueError(f"spec entry {i} ({kind}): {key} must be an integer >= {0 if key == 'pad' else 1}, got {v!r}")
    if kind == "conv":
        k = full["kernel"]
        ks = [k, k] if isinstance(k, int) else k
        if len(ks) != 2 or not all(isinstance(v, int) and v >= 1 for v in ks):
            raise ValueError(f"spec entry {i} (conv): kernel must be an int or [kh, kw] of ints >= 1, got {k!r}")
    if "init" in full and full["init"] not in L.INITS:
        raise ValueError(f"spec entry {i} ({kind}): unknown init {full['init']!r}; use one of {', '.join(L.INITS)}")
    if kind == "dropout" and not (isinstance(full["rate"], (int, float)) and 0 <= full["rate"] < 1):
        raise ValueError(f"spec entry {i} (dropout): rate must be in [0, 1), got {full['rate']!r}")
    return full


def make_layer(e: dict, in_shape: tuple, rng: np.random.Generator, dtype) -> L.Layer:
    """The layer for a checked spec entry ``e``, given its per-sample input shape (C, H, W) or (D,)."""
    kind = e["type"]
    if kind == "conv":
        if len(in_shape) != 3:
            raise ValueError(f"conv needs (C, H, W) input, got {in_shape}")
        k = e["kernel"] if isinstance(e["kernel"], int) else tuple(e["kernel"])
        return L.Conv2D(in_shape[0], e["filters"], k, e["stride"], e["pad"], e["init"], rng, dtype)
    if kind == "relu":
        return L.ReLU()
    if kind == "maxpool":
        if len(in_shape) != 3:
            raise ValueError(f"maxpool needs (C, H, W) input, got {in_shape}")
        return L.MaxPool2D(e["size"], e["stride"])
    if kind == "flatten":
        return L.Flatten()
    if kind == "dense":
        if len(in_shape) != 1:
            raise ValueError(f"dense needs flat input, got {in_shape}: add a flatten layer before it")
        return L.Dense(in_shape[0], e["units"], e["init"], rng, dtype)
    if kind == "dropout":
        return L.Dropout(float(e["rate"]), rng)
    return L.BatchNorm(in_shape[0], float(e["momentum"]), float(e["eps"]), dtype)


def class_name(kind: str) -> str:
    """The layer class name a spec type is shown as in a model summary ("conv" -> "Conv2D")."""
    return SCHEMA[kind][0]
