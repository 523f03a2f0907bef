"""What each speed measure of the numpy core is worth: seconds per epoch with it and without.

The default network (784-512-512-10, ReLU, dropout 0.2, batch 128) trains on 50,000 random
examples with each optimizer; each measure is switched off in turn:

    blocks     optimizer updates in cache-sized blocks of rows (pipeline/nn/optimizers.py)
    flush      subnormal optimizer state flushed to zero every 16 steps (same file)

and, apart, the bias gradient db = (1/m)·Σ dZ as a matmul with a column of ones against
dZ.sum(axis=1) (pipeline/nn/model.py). Prints the median seconds per epoch of the timed epochs
(after a warm-up). A measure stays in the core only while this shows it matters; reusing the
activation and gradient buffers between steps was dropped when it gained under 3%.

    python benchmarks/speed_tricks.py [--epochs 3] [--optimizers adam sgd]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pipeline.nn import MLP, fit, make_optimizer, make_schedule, optimizers

SETTINGS = {"adam": {"lr": 1e-3}, "sgd": {"lr": 0.05, "momentum": 0.9}}


def epoch_seconds(name: str, epochs: int, x, y, switched_off: str | None) -> float:
    saved = (optimizers.BLOCK_ELEMENTS, optimizers.FLUSH_EVERY)
    if switched_off == "blocks":
        optimizers.BLOCK_ELEMENTS = 1 << 26  # one block: the whole array
    elif switched_off == "flush":
        optimizers.FLUSH_EVERY = 1 << 40
    try:
        rng = np.random.default_rng(0)
        network = MLP.create((784, 512, 512, 10), "relu", "he", rng)
        optimizer = make_optimizer(network.params(), name=name, **SETTINGS[name])
        schedule = make_schedule(name="constant", base_lr=optimizer.lr, epochs=1)
        times = []
        for _ in range(epochs + 1):
            result = fit(
                network, x, y, x[:128], y[:128], optimizer=optimizer, schedule=schedule,
                epochs=1, batch_size=128, rng=rng, dropout=0.2,
            )  # fmt: skip
            times.append(result.history[0].seconds)
        return statistics.median(times[1:])
    finally:
        optimizers.BLOCK_ELEMENTS, optimizers.FLUSH_EVERY = saved


def bias_sum_seconds(repeats: int = 2000) -> tuple[float, float]:
    dz = np.random.default_rng(0).random((512, 128), dtype=np.float32)
    ones, out = np.ones((128, 1), dtype=np.float32), np.empty((512, 1), dtype=np.float32)
    started = time.perf_counter()
    for _ in range(repeats):
        np.matmul(dz, ones, out=out)
    matmul = (time.perf_counter() - started) / repeats
    started = time.perf_counter()
    for _ in range(repeats):
        dz.sum(axis=1, keepdims=True)
    return matmul, (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per setting")
    parser.add_argument("--optimizers", nargs="+", default=["adam", "sgd"], choices=SETTINGS)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.random((50_000, 784), dtype=np.float32)
    y = rng.integers(0, 10, 50_000).astype(np.uint8)
    print(f"784-512-512-10, batch 128, dropout 0.2, 50,000 examples, {args.epochs} timed epochs")
    print(f"{'optimizer':<10}{'all on':>9}{'no blocks':>11}{'no flush':>10}")
    for name in args.optimizers:
        row = [epoch_seconds(name, args.epochs, x, y, off) for off in (None, "blocks", "flush")]
        widths = (9, 11, 10)
        print(f"{name:<10}" + "".join(f"{s:>{w}.2f}" for s, w in zip(row, widths, strict=True)))
    matmul, summed = bias_sum_seconds()
    print(f"db of a 512×128 dZ: matmul with ones {matmul * 1e6:.1f} µs, sum {summed * 1e6:.1f} µs")


if __name__ == "__main__":
    main()
