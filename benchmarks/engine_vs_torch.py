"""Train the same network on the same data for the same steps in this engine and
in PyTorch (CPU), in one process, and print images per second of each.

    python benchmarks/engine_vs_torch.py --preset simple
    python benchmarks/engine_vs_torch.py --preset seed-torch --steps 100

Same architecture (built from the engine's spec), same initial weights (copied
from the engine into torch), same MNIST batches (real images from
data/mirror/mnist, else uniform noise), batch 100, Adam(1e-3). Each repeat
trains ``--steps`` steps (after ``--warmup`` untimed ones) on each side,
alternating every ``--chunk`` steps so both see the same load on a shared
machine; the figures are medians over repeats. Both sides get the machine's 2 cores
(OpenBLAS threads for NumPy, torch.set_num_threads(2)).

``--clock cpu`` times each side by the CPU time of the process instead of the wall
clock: on a machine shared with other jobs, wall times of both sides stretch with
the load (and 2-thread BLAS suffers most from oversubscription), while the CPU
time of a single-threaded run (``--threads 1 --clock cpu``) barely moves. With
more than one thread, CPU time also counts the threads' busy waiting, so use it
with ``--threads 1``.

With ``--threads 1`` the engine trains its large convs row-blocked
(pipeline/nn/kernels/blocked.py); with more BLAS threads it keeps the whole-batch
kernels (see ``pipeline.nn.fusion.prefer_rows``); large 5x5 convs train by FFT
(pipeline/nn/kernels/spectral.py) either way. The third line names the kernel
that trains each conv.

The last line is ``ratio engine/torch: X.XX`` = engine time / torch time for
the same work (lower is better; 1.00 means as fast as PyTorch).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path


def _threads_from_argv(default: str = "2") -> str:
    """--threads must reach OpenBLAS before NumPy loads, so read it ahead of argparse."""
    for i, a in enumerate(sys.argv):
        if a == "--threads" and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
        if a.startswith("--threads="):
            return a.split("=", 1)[1]
    return default


if __name__ == "__main__":  # run as the benchmark; imported (tests/test_nn_torch.py), it must not change the
    # environment, which every later subprocess of the importing process would inherit
    os.environ["OPENBLAS_NUM_THREADS"] = _threads_from_argv()

import pipeline  # noqa: E402,F401  (before NumPy: picks OpenBLAS's kernels for this CPU, pipeline/blas.py)
import numpy as np  # noqa: E402

from pipeline.nn import Adam, SoftmaxCrossEntropy, build_model, preset_spec  # noqa: E402
from pipeline.store import provenance  # noqa: E402

MIRROR = Path(__file__).resolve().parents[1] / "data" / "mirror" / "mnist"


def load_batches(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """n MNIST training images (n, 1, 28, 28) float32 in [0, 1] and labels (n,) int64."""
    images, labels = MIRROR / "train-images-idx3-ubyte.gz", MIRROR / "train-labels-idx1-ubyte.gz"
    if images.exists() and labels.exists():
        from pipeline.acquire.idx import read_pair

        x, y = read_pair(images, labels)
        x = (x[:n].astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
        return x, y[:n].astype(np.int64), "MNIST (data/mirror/mnist)"
    rng = np.random.default_rng(seed)
    return (rng.random((n, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, n), "uniform noise (no MNIST mirror)")


def torch_model(model):
    """A torch.nn.Sequential equivalent to the engine model, with its weights copied in."""
    import torch
    from torch import nn

    mods = []
    shape = model.input_shape
    for kind, layer, entry, out_shape in zip(model.kinds, model.layers, model.spec, model.shapes):
        p = {k: torch.from_numpy(v.copy()) for k, v in layer.params.items()}
        if kind == "conv":
            F, C, kh, kw = layer.params["W"].shape
            m = nn.Conv2d(C, F, (kh, kw), stride=layer.stride, padding=layer.pad)
            m.weight.data.copy_(p["W"])
            m.bias.data.copy_(p["b"])
        elif kind == "dense":
            D, U = layer.params["W"].shape
            m = nn.Linear(D, U)
            m.weight.data.copy_(p["W"].T)  # engine stores (in, out); torch (out, in)
            m.bias.data.copy_(p["b"])
        elif kind == "relu":
            m = nn.ReLU()
        elif kind == "maxpool":
            m = nn.MaxPool2d(layer.size, layer.stride)
        elif kind == "flatten":
            m = nn.Flatten()
        elif kind == "dropout":
            m = nn.Dropout(layer.rate)
        elif kind == "batchnorm":
            cls = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
            m = cls(shape[0], eps=layer.eps, momentum=layer.momentum)
            m.weight.data.copy_(p["gamma"])
            m.bias.data.copy_(p["beta"])
            m.running_mean.copy_(torch.from_numpy(layer.buffers["running_mean"].copy()))
            m.running_var.copy_(torch.from_numpy(layer.buffers["running_var"].copy()))
        else:  # pragma: no cover - the spec validator admits no other type
            raise ValueError(f"no torch equivalent for {kind}")
        mods.append(m)
        shape = out_shape
    net = nn.Sequential(*mods)
    return net.to(torch.float64) if model.dtype == np.float64 else net


def conv_kernels(model, batch: int) -> str:
    """Which kernel trains each conv of the engine model at this batch size: "phase" (the
    phase-plane block), "fft" (by FFT), "rows" (row-blocked GEMM) or "whole" (whole-batch
    im2col GEMM); see ``pipeline.nn.fusion.FusedConv.kernel``."""
    names, shape = [], model.input_shape
    for layer, out_shape in zip(model.layers, model.shapes):
        step = next((s for s in model.plan if getattr(s, "conv", None) is layer), None)
        if step is not None:
            names.append(step.kernel((batch,) + tuple(shape), True))
        elif "W" in layer.params and layer.params["W"].ndim == 4:
            names.append("whole (unfused)")
        shape = out_shape
    return ", ".join(names)


def torch_param_name(model, engine_name: str) -> tuple[str, bool]:
    """Engine name "4.dense.W" -> (torch state name "4.weight", needs_transpose)."""
    i, kind, key = engine_name.split(".")
    torch_key = {"W": "weight", "b": "bias", "gamma": "weight", "beta": "bias"}[key]
    return f"{i}.{torch_key}", kind == "dense" and key == "W"


def engine_steps(model, x, y, steps, batch, opt, ce, start=0):
    n = len(x) // batch
    for s in range(start, start + steps):
        sl = slice((s % n) * batch, (s % n + 1) * batch)
        ce.forward(model.forward(x[sl], training=True), y[sl])
        model.backward(ce.backward())
        opt.step(model.parameters(), model.gradients())


def torch_steps(net, xt, yt, steps, batch, opt, start=0):
    import torch

    n = len(xt) // batch
    lossf = torch.nn.CrossEntropyLoss()
    for s in range(start, start + steps):
        sl = slice((s % n) * batch, (s % n + 1) * batch)
        opt.zero_grad(set_to_none=True)
        loss = lossf(net(xt[sl]), yt[sl])
        loss.backward()
        opt.step()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="simple")
    ap.add_argument("--steps", type=int, default=200, help="timed training steps per repeat")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=10, help="steps per alternation between engine and torch")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2, help="threads of both sides (OpenBLAS and torch)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall: elapsed time; cpu: CPU time of this process (use with --threads 1 on a busy machine)")
    args = ap.parse_args(argv)
    clock = time.perf_counter if args.clock == "wall" else time.process_time

    import torch

    torch.set_num_threads(args.threads)
    x, y, source = load_batches(args.batch * max(args.steps, args.warmup), args.seed)
    model = build_model(preset_spec(args.preset), (1, 28, 28), np.random.default_rng(args.seed))
    net = torch_model(model)
    net.train()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt_e, ce = Adam(1e-3), SoftmaxCrossEntropy()
    opt_t = torch.optim.Adam(net.parameters(), lr=1e-3)
    print(f"preset {args.preset}: {model.num_params():,} parameters; data: {source}; batch {args.batch}, "
          f"Adam(1e-3), {args.steps} timed steps x {args.repeats} repeats after {args.warmup} warm-up steps")
    kernels = "/".join(sorted({str(b["architecture"]) for b in provenance.blas()}))
    print(f"numpy {np.__version__} (OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}, "
          f"OpenBLAS kernels {kernels}), "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads); {args.clock} clock; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"engine conv kernels (training): {conv_kernels(model, args.batch)}")

    engine_steps(model, x, y, args.warmup, args.batch, opt_e, ce)
    torch_steps(net, xt, yt, args.warmup, args.batch, opt_t)
    te, tt = [], []
    chunk = max(1, min(args.chunk, args.steps))
    for r in range(args.repeats):
        # Alternate in short chunks so both sides see the same machine load
        # (other processes on a shared 2-core box come and go).
        e = t = 0.0
        done = 0
        while done < args.steps:
            k = min(chunk, args.steps - done)
            t0 = clock()
            engine_steps(model, x, y, k, args.batch, opt_e, ce, start=done)
            t1 = clock()
            torch_steps(net, xt, yt, k, args.batch, opt_t, start=done)
            t2 = clock()
            e, t, done = e + t1 - t0, t + t2 - t1, done + k
        te.append(e)
        tt.append(t)
        print(f"repeat {r}: engine {e:.3f} s, torch {t:.3f} s, ratio {e / t:.2f}")
    images = args.steps * args.batch
    e, t = statistics.median(te), statistics.median(tt)
    print(f"engine: {images / e:,.0f} images/s ({e / args.steps * 1000:.2f} ms/step, "
          f"{60000 / (images / e):.1f} s per 60k-image epoch)")
    print(f"torch:  {images / t:,.0f} images/s ({t / args.steps * 1000:.2f} ms/step, "
          f"{60000 / (images / t):.1f} s per 60k-image epoch)")
    ratios = sorted(a / b for a, b in zip(te, tt))
    print(f"spread of the per-repeat ratios: {ratios[0]:.2f} .. {ratios[-1]:.2f}; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"ratio engine/torch: {e / t:.2f}")


if __name__ == "__main__":
    main()
