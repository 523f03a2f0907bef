"""What the distortions of Simard et al. 2003 cost: seconds to distort one epoch of training
images (50,000 in batches of 128, as `fit` does) for the affine maps, the elastic fields and
both, under the default compute=portable_bits and with glibc's malloc told to reuse freed
blocks as a training does (`keep_freed_memory`); beside them, one epoch of the 784-800-10
network of simard2003_* without distortions. `make bench` prints it as its part 4.

    python benchmarks/distortions.py [--examples 50000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {  # the presets' settings (conf/experiment/simard2003_*.yaml)
    "affine (rotation 15°, scale 0.15, shear 15°, shift 2 px)": dict(
        rotation=15, scale=0.15, shear=15, translation=2
    ),
    "elastic (α 34, σ 4)": dict(elastic_alpha=34, elastic_sigma=4),
    "both": dict(rotation=15, scale=0.15, shear=15, translation=2, elastic_alpha=34),
}


def measure(examples: int, batch: int) -> None:
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from pipeline.nn import MLP, Distortion, distort, fit, make_optimizer, make_schedule, set_lanes
    from pipeline.plumbing.compute import keep_freed_memory, usable_cores

    keep_freed_memory()
    set_lanes(usable_cores())
    rng = np.random.default_rng(0)
    images = rng.random((examples, 784), dtype=np.float32)
    labels = rng.integers(0, 10, examples).astype(np.uint8)
    print(f"distorting {examples:,} images in batches of {batch} (one epoch):")
    for name, fields in SETTINGS.items():
        started = time.perf_counter()
        for start in range(0, examples, batch):
            distort(images[start : start + batch], Distortion(**fields), rng)
        print(f"   {name:<58}{time.perf_counter() - started:6.2f} s per epoch")
    network = MLP.create((784, 800, 10), "relu", "he", rng)
    optimizer = make_optimizer(network.params(), name="adam", lr=1e-3)
    schedule = make_schedule(name="constant", base_lr=1e-3, epochs=2)
    result = fit(
        network, images, labels, images[:1000], labels[:1000], optimizer=optimizer,
        schedule=schedule, epochs=2, batch_size=batch, rng=rng,
    )  # fmt: skip
    seconds = result.history[-1].seconds
    print(f"   {'for scale: a 784-800-10 epoch without them':<58}{seconds:6.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        measure(args.examples, args.batch)
        return
    # In a process of its own, with the BLAS and SIMD settings of compute=portable_bits.
    env = {**os.environ, "OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_NUM_THREADS": "1",
           "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"}  # fmt: skip
    command = [sys.executable, __file__, "--child", "--examples", str(args.examples)]
    subprocess.run([*command, "--batch", str(args.batch)], env=env, check=True)


if __name__ == "__main__":
    main()
