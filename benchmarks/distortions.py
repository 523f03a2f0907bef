"""What the distortions of Simard et al. 2003 cost: seconds to distort one epoch of training
images (50,000 in batches of 128, as `fit` does), for the affine maps, the elastic fields and
both, beside the default network's epoch without them.

    python benchmarks/distortions.py [--examples 50000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from pipeline.nn import Distortion, distort

SETTINGS = {
    "affine (rot 15°, scale 0.15, shear 15°, shift 2)": Distortion(
        rotation=15, scale=0.15, shear=15, translation=2
    ),
    "elastic (α 34, σ 4)": Distortion(elastic_alpha=34, elastic_sigma=4),
    "both": Distortion(rotation=15, scale=0.15, shear=15, translation=2, elastic_alpha=34),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    images = rng.random((args.examples, 784), dtype=np.float32)
    print(f"distorting {args.examples:,} images in batches of {args.batch} (one epoch)")
    for name, distortion in SETTINGS.items():
        started = time.perf_counter()
        for start in range(0, args.examples, args.batch):
            distort(images[start : start + args.batch], distortion, rng)
        print(f"  {name:<48}{time.perf_counter() - started:6.2f} s per epoch")


if __name__ == "__main__":
    main()
