"""The Sequential container: a stack of layers built from a spec, run forward and
backward (fused where :mod:`pipeline.nn.fusion` says so), its named parameters,
state dict and Keras-like summary; and :func:`build_model`.

Presets live in :mod:`pipeline.nn.presets`, spec checking and the layer factory
in :mod:`pipeline.nn.spec`, the saved form in :mod:`pipeline.nn.serialize`.
"""
from __future__ import annotations

import copy
import json

import numpy as np

from pipeline.nn import fusion
from pipeline.nn import layers as L
from pipeline.nn.losses import softmax
from pipeline.nn.spec import check_entry, class_name, make_layer


class Sequential:
    """A stack of layers built from a spec. Images in: (N, C, H, W); logits out: (N, K)."""

    def __init__(self, spec: list[dict], input_shape: tuple, rng: np.random.Generator,
                 dtype=np.float32, fuse: bool = True) -> None:
        if not isinstance(spec, list) or not spec:
            raise ValueError("a model spec must be a non-empty list of layer dicts")
        self.spec = copy.deepcopy(spec)
        self.input_shape = tuple(int(v) for v in input_shape)
        self._rng = rng
        self.dtype = np.dtype(dtype)
        self.layers: list[L.Layer] = []
        self.kinds: list[str] = []
        self.shapes: list[tuple] = []  # per-sample output shape of each layer
        shape = self.input_shape
        for i, entry in enumerate(spec):
            e = check_entry(i, entry)
            try:
                layer = make_layer(e, shape, rng, self.dtype)
                shape = layer.output_shape(shape)
            except ValueError as exc:
                raise ValueError(f"spec entry {i} ({e['type']}) on input {shape}: {exc}") from exc
            if min(shape) < 1:
                raise ValueError(f"spec entry {i} ({e['type']}) shrinks its input to {shape}: "
                                 "use a smaller kernel, more padding, or fewer pooling layers")
            self.layers.append(layer)
            self.kinds.append(e["type"])
            self.shapes.append(shape)
        if len(shape) != 1:
            raise ValueError(f"the model must end in a dense layer giving (K,) logits; it ends with shape {shape}")
        # The input image needs no gradient: layers up to and including the first
        # one with parameters skip computing dx (saves a col2im for the first conv).
        self.needs_input_grad = False
        self._set_input_grad()
        self.fuse = bool(fuse)
        self.plan = fusion.plan(self.layers, self.kinds) if self.fuse else list(self.layers)

    @property
    def rng(self) -> np.random.Generator:
        """The Generator behind the random layers (Dropout); checkpoint its ``bit_generator.state``."""
        return self._rng

    @rng.setter
    def rng(self, rng: np.random.Generator) -> None:
        # Layers hold the Generator they were built with: hand the new one to each, so
        # assigning model.rng really changes where dropout masks come from.
        self._rng = rng
        for layer in self.layers:
            if hasattr(layer, "rng"):
                layer.rng = rng

    def _set_input_grad(self) -> None:
        need = self.needs_input_grad
        for layer in self.layers:
            layer.needs_input_grad = need
            if layer.params:
                need = True

    def set_needs_input_grad(self, flag: bool) -> None:
        """Make backward() return the gradient with respect to the input images (saliency, gradient checks)."""
        self.needs_input_grad = bool(flag)
        self._set_input_grad()

    # ---------------------------------------------------------------- compute
    MAX_EVAL_BATCH = 250  # im2col of a mid-network conv costs ~0.6 MB per image

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """x (N, C, H, W) -> logits (N, K) in the model dtype.

        In inference mode a batch larger than MAX_EVAL_BATCH is run in slices of
        that size, so the im2col scratch stays bounded whatever the caller's
        batch (1000 images would need ~0.6 GB for seed-torch's second conv)."""
        x = np.asarray(x, dtype=self.dtype)
        if x.ndim != 4 or x.shape[1:] != self.input_shape:
            raise ValueError(f"model expects inputs of shape (N, {', '.join(map(str, self.input_shape))}), got {x.shape}")
        self._chunked = not training and len(x) > self.MAX_EVAL_BATCH
        if self._chunked:
            step = self.MAX_EVAL_BATCH
            return np.concatenate([self._run(x[i:i + step], False) for i in range(0, len(x), step)])
        return self._run(x, training)

    def _run(self, x: np.ndarray, training: bool) -> np.ndarray:
        for step in self.plan:
            x = step.forward(x, training)
        return x

    def backward(self, dlogits: np.ndarray) -> np.ndarray | None:
        """Fill every layer's grads; returns d loss / d input (N, C, H, W), or None
        unless set_needs_input_grad(True) was called."""
        if getattr(self, "_chunked", False):
            raise RuntimeError(f"backward() after an inference forward of more than {self.MAX_EVAL_BATCH} images "
                               "(run in slices, so no single cache holds them): call forward on fewer images "
                               "or with training=True")
        d = dlogits
        for step in reversed(self.plan):
            d = step.backward(d)
            if d is None:
                break
        return d

    def feature_maps(self, x: np.ndarray, upto_layer_index: int) -> np.ndarray:
        """Inference-mode output of layer ``upto_layer_index`` (inclusive) as a
        C-contiguous array, e.g. (N, F, OH, OW) after the first conv."""
        if not 0 <= upto_layer_index < len(self.layers):
            raise IndexError(f"layer index {upto_layer_index} out of range 0..{len(self.layers) - 1}")
        x = np.asarray(x, dtype=self.dtype)
        for layer in self.layers[:upto_layer_index + 1]:
            x = layer.forward(x, False)
        return np.ascontiguousarray(x)

    def first_conv_index(self) -> int:
        for i, kind in enumerate(self.kinds):
            if kind == "conv":
                return i
        raise ValueError("this model has no conv layer")

    def first_conv_weights(self) -> np.ndarray:
        """A copy of the first conv layer's weights (F, C, kh, kw)."""
        return self.layers[self.first_conv_index()].params["W"].copy()

    def predict_proba(self, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """Softmax probabilities (N, K) float32, computed in inference mode in batches
        (each at most MAX_EVAL_BATCH images inside forward)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        out = [softmax(self.forward(x[i:i + batch_size], False)) for i in range(0, len(x), batch_size)]
        if not out:
            return np.zeros((0, self.shapes[-1][0]), np.float32)
        return np.concatenate(out).astype(np.float32, copy=False)

    def predict(self, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """Predicted class per image (N,) int64."""
        return self.predict_proba(x, batch_size).argmax(axis=1)

    # ---------------------------------------------------------------- parameters
    def _named(self, attr: str) -> dict[str, np.ndarray]:
        out = {}
        for i, (kind, layer) in enumerate(zip(self.kinds, self.layers)):
            for k, v in getattr(layer, attr).items():
                out[f"{i}.{kind}.{k}"] = v
        return out

    def parameters(self) -> dict[str, np.ndarray]:
        """name -> live parameter array ("0.conv.W", ...), in layer order."""
        return self._named("params")

    def gradients(self) -> dict[str, np.ndarray]:
        """name -> live gradient array, same keys as parameters()."""
        return self._named("grads")

    def buffers(self) -> dict[str, np.ndarray]:
        """name -> live buffer array (BatchNorm running statistics)."""
        return self._named("buffers")

    def num_params(self) -> int:
        return int(sum(v.size for v in self.parameters().values()))

    def state_dict(self) -> dict:
        """Plain dict of builtins and array copies: {"spec", "input_shape", "params", "buffers"}."""
        return {"spec": copy.deepcopy(self.spec), "input_shape": list(self.input_shape),
                "params": {k: v.copy() for k, v in self.parameters().items()},
                "buffers": {k: v.copy() for k, v in self.buffers().items()}}

    def load_state_dict(self, d: dict) -> None:
        """Copy arrays from ``d`` into the live parameters and buffers (checked: names, shapes, spec)."""
        if "spec" in d and json.dumps(d["spec"], sort_keys=True) != json.dumps(self.spec, sort_keys=True):
            raise ValueError("state was saved from a different model spec; build the model from the saved spec")
        for group, live in (("params", self.parameters()), ("buffers", self.buffers())):
            saved = d.get(group, {})
            if set(saved) != set(live):
                raise ValueError(f"{group} names differ: missing {sorted(set(live) - set(saved))}, "
                                 f"unexpected {sorted(set(saved) - set(live))}")
            for k, arr in live.items():
                src = np.asarray(saved[k])
                if src.shape != arr.shape:
                    raise ValueError(f"{group} {k}: saved shape {src.shape} != model shape {arr.shape}")
                np.copyto(arr, src, casting="same_kind")

    def summary(self) -> str:
        """Keras-like table: layer, output shape (None = batch), parameter count, then totals."""
        rows = [("Layer (type)", "Output Shape", "Param #")]
        for i, (kind, layer, shape) in enumerate(zip(self.kinds, self.layers, self.shapes)):
            cls = class_name(kind)
            n = sum(v.size for v in layer.params.values())
            rows.append((f"{i}.{kind} ({cls})", str((None,) + tuple(shape)), f"{n:,}"))
        w = [max(len(r[c]) for r in rows) + 3 for c in range(3)]
        line = "=" * sum(w)
        fmt = lambda r: f"{r[0]:<{w[0]}}{r[1]:<{w[1]}}{r[2]:>{w[2] - 3}}"
        body = [fmt(rows[0]), line] + [fmt(r) for r in rows[1:]]
        nbuf = sum(v.size for v in self.buffers().values())
        total = self.num_params()
        body += [line, f"Input shape: {(None,) + self.input_shape}",
                 f"Total params: {total + nbuf:,}", f"Trainable params: {total:,}",
                 f"Non-trainable params: {nbuf:,}"]
        return "\n".join(body)


def build_model(spec: list[dict], input_shape: tuple = (1, 28, 28),
                rng: np.random.Generator | None = None, dtype=np.float32,
                fuse: bool = True) -> Sequential:
    """Build a Sequential from a spec. ``rng`` initialises the weights and then
    drives Dropout; the same seed gives bit-identical parameters. ``fuse=False``
    runs every layer separately (slower; for checking the fused kernels)."""
    if rng is None:
        rng = np.random.default_rng(0)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return Sequential(spec, input_shape, rng, dtype, fuse)
