"""Which settings decide the bits of a training, and what pinning them costs in epoch time.

Trains the default network (784-512-512-10, Adam, dropout 0.2, shifts of 1 pixel, batch 128)
for a few epochs on 20,000 random examples, once per setting, each in a fresh process (the BLAS
kernel and numpy's SIMD dispatch are chosen when the libraries load):

    OPENBLAS_CORETYPE        the BLAS kernel set: native (what OpenBLAS picks), Haswell (AVX2 +
                             FMA), SandyBridge (AVX)
    OPENBLAS_NUM_THREADS     BLAS threads: 1, or every core
    NPY_DISABLE_CPU_FEATURES numpy's own SIMD loops: all found, or none beyond AVX2 (X86_V3)

and prints, for each, the kernel OpenBLAS reports (threadpoolctl), the SHA-256 of the trained
weights (first 12 hex digits) and the median seconds per epoch. Rows with the same hash give
the same bits. Settings that a CPU cannot run (Haswell without AVX2) are reported, not run.

    python benchmarks/determinism.py [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AVX512 = "X86_V4 AVX512_ICL AVX512_SPR"  # numpy 2.4's dispatch targets above X86_V3

CHILD = r"""
import hashlib, json, statistics, sys
import numpy as np
from threadpoolctl import threadpool_info
sys.path.insert(0, ROOT)
from pipeline.nn import MLP, fit, make_optimizer, make_schedule, set_lanes

set_lanes(LANES)
rng = np.random.default_rng(0)
x = rng.random((20_000, 784), dtype=np.float32)
y = rng.integers(0, 10, 20_000).astype(np.uint8)
network = MLP.create((784, 512, 512, 10), "relu", "he", rng)
optimizer = make_optimizer(network.params(), name="adam", lr=1e-3)
schedule = make_schedule(name="constant", base_lr=1e-3, epochs=EPOCHS)
result = fit(network, x, y, x[:1000], y[:1000], optimizer=optimizer, schedule=schedule,
             epochs=EPOCHS, batch_size=128, rng=rng, dropout=0.2, max_shift=1)
digest = hashlib.sha256(b"".join(p.tobytes() for p in network.params())).hexdigest()
blas = [i for i in threadpool_info() if i.get("internal_api") == "openblas"]
print(json.dumps({
    "sha256": digest[:12],
    "seconds": statistics.median(r.seconds for r in result.history[1:] or result.history),
    "kernel": blas[0].get("architecture") if blas else "?",
    "threads": blas[0].get("num_threads") if blas else "?",
}))
"""


def child_code(epochs: int, lanes: int = 1) -> str:
    """The training above for `epochs` (the first a warm-up, left out of the median when
    there are more) with products shared over `lanes` threads (pipeline/nn/lanes.py)."""
    return (
        CHILD.replace("ROOT", repr(ROOT))
        .replace("EPOCHS", str(epochs))
        .replace("LANES", str(lanes))
    )


def run_setting(epochs: int, coretype: str, threads: str, numpy_simd: str) -> dict:
    env = dict(os.environ)
    for name in ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "NPY_DISABLE_CPU_FEATURES"):
        env.pop(name, None)
    if coretype != "native":
        env["OPENBLAS_CORETYPE"] = coretype
    if threads != "all":
        env["OPENBLAS_NUM_THREADS"] = threads
    if numpy_simd == "AVX2":
        env["NPY_DISABLE_CPU_FEATURES"] = AVX512
    done = subprocess.run(
        [sys.executable, "-c", child_code(epochs)], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["failed"])[-1]
        return {"sha256": "-", "seconds": float("nan"), "kernel": reason[:40], "threads": "-"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2, help="epochs per setting")
    args = parser.parse_args()
    print(f"784-512-512-10, Adam, 20,000 examples, {args.epochs} epochs, {os.cpu_count()} cores")
    header = ("OPENBLAS_CORETYPE", "threads", "numpy SIMD", "kernel used", "weights", "s/epoch")
    print(f"{header[0]:<18}{header[1]:>8}{header[2]:>12}{header[3]:>14}{header[4]:>14}"
          f"{header[5]:>9}")  # fmt: skip
    for coretype in ("native", "Haswell", "SandyBridge"):
        for threads in ("all", "1"):
            for numpy_simd in ("all", "AVX2"):
                found = run_setting(args.epochs, coretype, threads, numpy_simd)
                print(
                    f"{coretype:<18}{threads:>8}{numpy_simd:>12}{found['kernel']!s:>14}"
                    f"{found['sha256']:>14}{found['seconds']:>9.2f}"
                )


if __name__ == "__main__":
    main()
