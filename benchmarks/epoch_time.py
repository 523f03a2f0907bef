"""Seconds per training epoch: this project's numpy network against PyTorch on the CPU.

Same architecture (784-W-10, ReLU), batch size, dtype (float32), optimizer (SGD, momentum 0.9)
and thread count on both sides, on 50,000 random examples (speed does not depend on the
pixels). Prints, for each width, seconds per epoch (median of the timed epochs, after a warm-up
epoch), the ratio ours/PyTorch (≤ 1.0 means ours is not slower), and the matmul throughput of
our epoch as a fraction of this machine's float32 matmul peak, measured here with numpy.

    pip install torch==2.13.0          # optional benchmark dependency, not in the lock files
    python benchmarks/epoch_time.py [--threads 2] [--epochs 3] [--widths 128 256 800]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per run")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--examples", type=int, default=50_000)
    parser.add_argument("--widths", type=int, nargs="+", default=[128, 256, 800])
    return parser.parse_args()


ARGS = parse_args()
# BLAS reads its thread count when it loads: set it before numpy or torch is imported.
for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = str(ARGS.threads)

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pipeline.nn import MLP, fit, make_optimizer, make_schedule  # noqa: E402


def matmul_peak_gflops(size: int = 2048, repeats: int = 10) -> float:
    """Best float32 GEMM throughput numpy reaches on this machine."""
    a = np.random.default_rng(0).random((size, size), dtype=np.float32)
    b = np.random.default_rng(1).random((size, size), dtype=np.float32)
    a @ b  # warm-up
    best = min(timed(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def epoch_gemm_flops(width: int, examples: int) -> float:
    """Matmul FLOPs of one epoch: forward Z¹, Z², backward dW², dA¹, dW¹."""
    per_example = 2 * (784 * width + width * 10)  # forward
    per_example += 2 * (width * 10) * 2 + 2 * 784 * width  # dW², dA¹, dW¹
    return per_example * examples


def ours_epoch_seconds(x, y, width, batch, epochs) -> float:
    rng = np.random.default_rng(0)
    model = MLP.create((784, width, 10), "relu", "he", rng)
    optimizer = make_optimizer(model.params(), name="sgd", lr=0.01, momentum=0.9)
    schedule = make_schedule(name="constant", base_lr=0.01, epochs=1)
    times = []
    for _ in range(epochs + 1):
        result = fit(
            model, x, y, x[:batch], y[:batch], optimizer=optimizer, schedule=schedule,
            epochs=1, batch_size=batch, rng=rng,
        )  # fmt: skip
        times.append(result.history[0].seconds)
    return statistics.median(times[1:])


def torch_epoch_seconds(x, y, width, batch, epochs, threads) -> float:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(784, width), torch.nn.ReLU(), torch.nn.Linear(width, 10)
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    features, labels = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    generator = torch.Generator().manual_seed(0)
    times = []
    for _ in range(epochs + 1):
        started = time.perf_counter()
        order = torch.randperm(len(features), generator=generator)
        for start in range(0, len(features), batch):
            rows = order[start : start + batch]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(features[rows]), labels[rows])
            loss.backward()
            optimizer.step()
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:])


def main() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((ARGS.examples, 784), dtype=np.float32)
    y = rng.integers(0, 10, ARGS.examples).astype(np.uint8)
    peak = matmul_peak_gflops()
    try:
        import torch  # noqa: F401

        have_torch = True
    except ImportError:
        have_torch = False
        print("PyTorch is not installed (pip install torch==2.13.0): ours only.\n")
    print(
        f"{ARGS.examples} examples, batch {ARGS.batch_size}, float32, SGD momentum 0.9, "
        f"{ARGS.threads} threads; numpy float32 matmul peak {peak:.1f} GFLOP/s"
    )
    print(f"{'network':<12}{'ours s/epoch':>14}{'torch s/epoch':>15}{'ratio':>8}{'% of peak':>11}")
    for width in ARGS.widths:
        ours = ours_epoch_seconds(x, y, width, ARGS.batch_size, ARGS.epochs)
        share = epoch_gemm_flops(width, ARGS.examples) / ours / 1e9 / peak
        if have_torch:
            theirs = torch_epoch_seconds(x, y, width, ARGS.batch_size, ARGS.epochs, ARGS.threads)
            ratio = f"{ours / theirs:8.2f}"
            theirs_text = f"{theirs:15.3f}"
        else:
            ratio, theirs_text = f"{'-':>8}", f"{'-':>15}"
        print(f"{f'784-{width}-10':<12}{ours:14.3f}{theirs_text}{ratio}{share:10.0%}")


if __name__ == "__main__":
    main()
