"""What checkpointing costs: epoch time with and without a checkpoint after every epoch, for
the default network (784-512-512-10, Adam) and the 3 × 1024 network of
srivastava2014_dropout, under the default compute=portable_bits, on MNIST-sized data (this
project's data/split if `make repro` made it, else random pixels of the same shapes). Each
checkpoint write (the whole state: weights, Adam's two moments, the generator, the history;
temporary file, fsync, rename) is timed on its own too, beside the epoch it follows. The
target: at most 2% of an epoch. `make bench` prints it as its part 5.

    python benchmarks/checkpoints.py [--epochs 3] [--examples 50000]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NETWORKS = {
    "default (784-512-512-10)": [],
    "3 × 1024 (srivastava2014_dropout)": ["experiment=srivastava2014_dropout"],
}


def data(examples: int):
    import numpy as np

    from pipeline.plumbing.paths import SPLIT_DEV, SPLIT_TRAIN
    from pipeline.training.trainer import load_split

    if SPLIT_TRAIN.is_file() and SPLIT_DEV.is_file():
        train, dev = load_split(SPLIT_TRAIN, SPLIT_DEV)
        return {k: v[:examples] for k, v in train.items()}, dev, "MNIST (data/split)"
    rng = np.random.default_rng(0)
    shaped = {"images": rng.random((examples, 784), dtype=np.float32),
              "labels": rng.integers(0, 10, examples).astype(np.uint8)}  # fmt: skip
    dev = {"images": shaped["images"][:10_000], "labels": shaped["labels"][:10_000]}
    return shaped, dev, "random pixels"


def timed_training(config, train, dev, folder: Path | None) -> tuple[list[float], list[float]]:
    """Seconds per epoch (the epoch's steps and dev scoring) and per checkpoint write."""
    from pipeline.training.checkpoints import Checkpoints
    from pipeline.training.trainer import train_model

    epoch_ends, writes = [time.perf_counter()], []
    keeper = None
    if folder is not None:
        keeper = Checkpoints(folder / "train.npz", {"code": {}, "data": {}, "config": {}})
        saver = keeper.saver

        def timed_saver(*args):
            save = saver(*args)

            def timed(result):
                started = time.perf_counter()
                save(result)
                writes.append(time.perf_counter() - started)

            return timed

        keeper.saver = timed_saver
    train_model(config, train, dev, lambda record: epoch_ends.append(time.perf_counter()), keeper)
    epochs = [b - a for a, b in itertools.pairwise(epoch_ends)]
    return epochs[1:], writes[1:]  # the first epoch warms caches and allocations up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs (after a warm-up)")
    parser.add_argument("--examples", type=int, default=50_000, help="training examples")
    args = parser.parse_args()
    from pipeline.plumbing.compute import pin
    from pipeline.plumbing.config import compose_conf, validate

    pin(validate(compose_conf()).compute, "bench")  # portable_bits, as the stage pins it
    train, dev, where = data(args.examples)
    print(f"checkpoint after every epoch, {len(train['labels']):,} examples of {where}:")
    for name, overrides in NETWORKS.items():
        config = validate(compose_conf([*overrides, f"train.epochs={args.epochs + 1}"]))
        plain, _ = timed_training(config, train, dev, None)
        (ROOT / "models").mkdir(exist_ok=True)  # the checkpoint goes where the stage puts it
        with tempfile.TemporaryDirectory(dir=ROOT / "models") as folder:
            kept, writes = timed_training(config, train, dev, Path(folder))
            size = (Path(folder) / "train.npz").stat().st_size / 2**20
        epoch, with_checkpoint = statistics.median(plain), statistics.median(kept)
        write = statistics.median(writes)
        print(f"   {name:<36}epoch {epoch:6.2f} s without, {with_checkpoint:6.2f} s with; "
              f"a write of {size:5.1f} MB takes {write * 1000:5.0f} ms = {write / epoch:5.1%} "
              "of an epoch")  # fmt: skip


if __name__ == "__main__":
    main()
