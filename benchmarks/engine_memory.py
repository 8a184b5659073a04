"""Peak resident memory of one training epoch of the engine.

    python benchmarks/engine_memory.py                    # simple, batch 100, all 60,000 MNIST images
    python benchmarks/engine_memory.py --preset seed-torch --limit 10000

Loads the MNIST training set (data/mirror/mnist; uniform noise of the same size
if absent) as float32 NCHW, trains one epoch with Adam, and prints the peak RSS
of the process (getrusage ru_maxrss, which includes the 188 MB of float32 images
and the Python/NumPy runtime), the RSS before training, and the epoch time.
The issue's bound: under 1 GB for `simple` at batch 100.
"""
from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import pipeline  # noqa: F401  (before NumPy: picks OpenBLAS's kernels for this CPU, pipeline/blas.py)
import numpy as np

from pipeline.nn import Adam, SoftmaxCrossEntropy, build_model, preset_spec

MIRROR = Path(__file__).resolve().parents[1] / "data" / "mirror" / "mnist"


def rss_mb() -> float:
    """Current resident set size in MB (from /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        return 0.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="simple")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--limit", type=int, default=60000, help="images in the epoch")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    images, labels = MIRROR / "train-images-idx3-ubyte.gz", MIRROR / "train-labels-idx1-ubyte.gz"
    rng = np.random.default_rng(args.seed)
    if images.exists() and labels.exists():
        from pipeline.acquire.idx import read_pair

        raw, y = read_pair(images, labels)
        x = (raw[:args.limit].astype(np.float32) / np.float32(255)).reshape(-1, 1, 28, 28)
        y = y[:args.limit].astype(np.int64)
        del raw
        source = "MNIST"
    else:
        x = rng.random((args.limit, 1, 28, 28), dtype=np.float32)
        y = rng.integers(0, 10, args.limit)
        source = "uniform noise"
    model = build_model(preset_spec(args.preset), (1, 28, 28), rng)
    ce, opt = SoftmaxCrossEntropy(), Adam(1e-3)
    before = rss_mb()
    order = rng.permutation(len(x))
    t0 = time.perf_counter()
    losses = []
    for s in range(0, len(x), args.batch):
        idx = order[s:s + args.batch]
        losses.append(ce.forward(model.forward(x[idx], training=True), y[idx]))
        model.backward(ce.backward())
        opt.step(model.parameters(), model.gradients())
    dt = time.perf_counter() - t0
    acc = float((model.predict(x[:10000]) == y[:10000]).mean())
    print(f"preset {args.preset}, batch {args.batch}, {len(x):,} {source} images: one epoch in {dt:.1f} s "
          f"({len(x) / dt:,.0f} images/s); mean loss of the last 50 steps {np.mean(losses[-50:]):.4f}; "
          f"train accuracy (first 10k) {acc:.4f}")
    print(f"RSS before training: {before:.0f} MB (data {x.nbytes / 2**20:.0f} MB)")
    print(f"peak RSS: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
