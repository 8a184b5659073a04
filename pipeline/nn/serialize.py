"""A model as a plain dict and back: the saved form of a trained model.

The dict holds only builtins and NumPy arrays, so a pickle of it loads without
this package::

    {"format": FORMAT, "spec": [...], "input_shape": [C, H, W],
     "params": {"0.conv.W": ndarray, ...}, "buffers": {...}}

The engine does no file I/O: the caller pickles and unpickles the dict.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.nn.model import Sequential, build_model

FORMAT = "mnist-pipeline/model/v1"


def model_state(model: Sequential) -> dict[str, Any]:
    """The model as a plain dict (copies of its arrays): {"format", "spec", "input_shape", "params", "buffers"}."""
    return {"format": FORMAT, **model.state_dict()}


def model_from_state(state: Any, rng: np.random.Generator | None = None) -> Sequential:
    """Rebuild the model that :func:`model_state` described (``rng`` drives its Dropout layers, if any)."""
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        got = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"this is not a saved model (format {got!r}, expected {FORMAT!r}); "
                         "a saved model is the dict pipeline.nn.model_state returns")
    model = build_model(state["spec"], tuple(state["input_shape"]), rng)
    model.load_state_dict(state)
    return model
