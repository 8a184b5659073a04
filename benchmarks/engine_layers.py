"""Where a training step of a preset spends its time: CPU milliseconds of each execution step,
forward and backward, and the kernel that trains each convolution.

    python benchmarks/engine_layers.py --preset kaggle
    python benchmarks/engine_layers.py --preset seed-keras --steps 30 --threads 2

The steps are the engine's plan (``pipeline.nn.fusion.plan``): a conv with the ReLU and/or
2x2 max-pool after it is one fused step, named with its kernel ("phase", "fft", "rows" or
"whole", see ``FusedConv.kernel``). Each step is timed by the process's CPU clock around its
own forward or backward call, on a batch of uniform-noise images (the kernels' cost does not
depend on the pixel values), after ``--warmup`` untimed steps; the figures are medians over
``--steps``. With ``--threads 1`` (the default, as ``--workers 2`` trains each member) CPU time
is robust to other load on the machine; with more threads it also counts BLAS threads'
busy waiting. The loss and the optimizer are not timed; the last line sums the steps.
"""
from __future__ import annotations

import argparse
import statistics
import time

import pipeline  # noqa: F401  (before NumPy: picks OpenBLAS's kernels for this CPU, pipeline/blas.py)
import numpy as np

from pipeline.nn import SoftmaxCrossEntropy, build_model, preset_spec
from pipeline.nn.kernels import parallel
from pipeline.nn.presets import PRESETS


def step_name(step) -> str:
    """"conv 32->32 5x5/2 +relu" for a fused conv, else the layer's class name."""
    conv = getattr(step, "conv", None)
    if conv is None:
        return type(step).__name__
    F, C, kh, kw = conv.params["W"].shape
    extras = "".join(f" +{name}" for name, on in (("relu", step.relu), ("pool", step.pool)) if on)
    return f"conv {C}->{F} {kh}x{kw}/{conv.stride}{extras}"


def profile(preset: str, steps: int, warmup: int, batch: int, seed: int = 0) -> list[tuple[str, str, float, float]]:
    """Median CPU seconds of each plan step's forward and backward over ``steps`` training steps.

    Returns one (name, kernel, forward s, backward s) per step of the model's plan; the kernel is
    "" for steps that are not convolutions.
    """
    model = build_model(preset_spec(preset), (1, 28, 28), np.random.default_rng(seed))
    rng = np.random.default_rng(seed + 1)
    x = rng.random((batch, 1, 28, 28), dtype=np.float32)  # (N, 1, 28, 28)
    y = rng.integers(0, 10, batch)
    loss = SoftmaxCrossEntropy()
    n = len(model.plan)
    forward = [[] for _ in range(n)]
    backward = [[] for _ in range(n)]
    kernels = [""] * n
    clock = time.process_time
    for it in range(warmup + steps):
        h = x
        for i, step in enumerate(model.plan):
            if hasattr(step, "kernel"):
                kernels[i] = step.kernel(h.shape, True)
            t = clock()
            h = step.forward(h, training=True)
            if it >= warmup:
                forward[i].append(clock() - t)
        loss.forward(h, y)
        d = loss.backward()
        for i in reversed(range(n)):
            t = clock()
            d = model.plan[i].backward(d)
            if it >= warmup:
                backward[i].append(clock() - t)
    return [(step_name(s), kernels[i], statistics.median(forward[i]), statistics.median(backward[i]))
            for i, s in enumerate(model.plan)]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="kaggle", choices=sorted(PRESETS))
    ap.add_argument("--steps", type=int, default=20, help="timed training steps")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1, help="OpenBLAS threads and the engine's own loops (as a Luigi worker limits them)")
    args = ap.parse_args(argv)
    with parallel.limited_to(args.threads):  # the kernel choices follow, as in a TrainCNN worker
        rows = profile(args.preset, args.steps, args.warmup, args.batch)
    total_f = sum(r[2] for r in rows)
    total_b = sum(r[3] for r in rows)
    print(f"# {args.preset}, batch {args.batch}, {args.threads} thread(s): median CPU ms of {args.steps} steps")
    print(f"{'step':32s} {'kernel':6s} {'forward':>8s} {'backward':>9s} {'share':>6s}")
    for name, kernel, f, b in rows:
        print(f"{name:32s} {kernel:6s} {f * 1e3:8.2f} {b * 1e3:9.2f} {(f + b) / (total_f + total_b):6.1%}")
    print(f"{'total':32s} {'':6s} {total_f * 1e3:8.1f} {total_b * 1e3:9.1f} ms/step (loss and optimizer not timed)")


if __name__ == "__main__":
    main()
