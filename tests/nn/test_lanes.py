"""Products and updates shared over lanes (pipeline/nn/lanes.py) keep the one-thread bits.

The products are checked in a fresh process pinned as compute=portable_bits pins one (OpenBLAS's
Haswell kernels on one thread): the BLAS kernel is chosen when numpy loads."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from pipeline.nn import make_optimizer
from pipeline.nn.lanes import ROW_BLOCK, row_blocks, set_lanes
from tests.conftest import REPO

PINNED = {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_NUM_THREADS": "1"}


def run_pinned(code: str, cores: set[int] | None = None) -> dict:
    """Run `code` (which prints one JSON line last) in a process pinned like portable_bits,
    on the given cores."""
    env = {**os.environ, **PINNED}
    preexec = (lambda: os.sched_setaffinity(0, cores)) if cores else None
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
        preexec_fn=preexec, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


PRODUCTS = r"""
import json
import numpy as np
from pipeline.nn import lanes
from pipeline.nn.lanes import matmul, set_lanes

rng = np.random.default_rng(0)
handed_off = 0
submit = None
def counting_submit(*args, **kwargs):
    global handed_off
    handed_off += 1
    return submit(*args, **kwargs)

asked = json.loads(ASKED)
differ = []
for dtype in (np.float32, np.float64):
    for rows, inner, columns, transposed in asked:
        a = rng.standard_normal((rows, inner)).astype(dtype)
        b = rng.standard_normal((columns, inner) if transposed else (inner, columns))
        b = b.astype(dtype).T if transposed else b.astype(dtype)
        whole = a @ b
        for count in (2, 3, 4):
            set_lanes(count)
            submit = lanes._helpers.submit
            lanes._helpers.submit = counting_submit
            if not np.array_equal(matmul(a, b), whole):
                differ.append([np.dtype(dtype).name, rows, inner, columns, transposed, count])
print(json.dumps({"differ": differ, "handed_off": handed_off}))
"""


# (rows, inner, columns) of every product the default network and a sweep's makes in training,
# the right factor stored either way round: forward W·A, backward dZ·Aᵀ and Wᵀ·dZ; odd sizes too.
SHAPES = [(512, 784, 128), (512, 512, 128), (784, 512, 128), (512, 128, 784), (512, 128, 512),
          (512, 10, 128), (128, 784, 128), (256, 784, 80), (1024, 784, 128), (300, 784, 100),
          (97, 333, 61)]  # fmt: skip
TRAINING_PRODUCTS = [(*shape, transposed) for shape in SHAPES for transposed in (False, True)]
# Inference, W·Xᵀ for a chunk of 8192 rows of X (MLP.logits): the right factor is always a
# transposed view. It is four times the work of all the products above together.
INFERENCE_PRODUCT = (512, 784, 8192, True)


def shared_products(products: list[tuple[int, int, int, bool]]) -> dict:
    """Each product in float32 and float64, shared over 2, 3 and 4 lanes, against the whole
    one-thread product, in a process pinned like portable_bits."""
    return run_pinned(PRODUCTS.replace("ASKED", repr(json.dumps(products))))


def test_a_shared_product_has_exactly_the_bits_of_the_one_thread_product():
    found = shared_products(TRAINING_PRODUCTS)
    assert found["differ"] == []
    assert found["handed_off"] > 100  # the products were shared, not computed whole


@pytest.mark.slow  # `make test` runs it; for `make test-fast` it is a second and a half alone
def test_the_shared_inference_product_has_exactly_the_bits_of_the_one_thread_product():
    found = shared_products([INFERENCE_PRODUCT])
    assert found["differ"] == []
    assert found["handed_off"] >= 2 * 3  # shared over each count of lanes, in both dtypes


TRAINING = r"""
import hashlib, json
import numpy as np
from pipeline.nn import MLP, fit, make_optimizer, make_schedule, set_lanes

set_lanes(LANES)
rng = np.random.default_rng(0)
x = rng.random((700, 784), dtype=np.float32)
y = rng.integers(0, 10, 700).astype(np.uint8)
network = MLP.create((784, 96, 72, 10), "relu", "he", rng)
optimizer = make_optimizer(network.params(), name="adam", lr=1e-3)
schedule = make_schedule(name="constant", base_lr=1e-3, epochs=2)
fit(network, x, y, x[:100], y[:100], optimizer=optimizer, schedule=schedule, epochs=2,
    batch_size=128, rng=rng, dropout=0.2, max_shift=1)
digest = hashlib.sha256(b"".join(p.tobytes() for p in network.params())).hexdigest()
print(json.dumps({"weights": digest}))
"""


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two usable cores")
def test_training_gives_the_same_weights_on_any_lanes_and_cores():
    one_lane = run_pinned(TRAINING.replace("LANES", "1"))
    two_lanes = run_pinned(TRAINING.replace("LANES", "2"))
    two_lanes_one_core = run_pinned(TRAINING.replace("LANES", "2"), cores={0})
    three_lanes = run_pinned(TRAINING.replace("LANES", "3"))
    assert one_lane == two_lanes == two_lanes_one_core == three_lanes


def test_row_blocks_cover_the_rows_with_inner_edges_on_whole_blocks():
    for rows in (1, 23, 24, 47, 48, 100, 512, 513, 10_000):
        for parts in (1, 2, 3, 4, 8):
            blocks = row_blocks(rows, parts)
            assert blocks[0][0] == 0 and blocks[-1][1] == rows
            assert all(stop == start for (_, stop), (start, _) in itertools.pairwise(blocks))
            assert all(start % ROW_BLOCK == 0 for start, _ in blocks)
            assert len(blocks) == max(1, min(parts, rows // ROW_BLOCK))
            sizes = [stop - start for start, stop in blocks]
            assert max(sizes) - min(sizes) <= ROW_BLOCK + rows % ROW_BLOCK  # about equal


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_updates_shared_over_lanes_equal_the_one_lane_updates(name):
    rng = np.random.default_rng(3)
    shapes = [(300, 784), (300, 1), (200, 300), (200, 1), (10, 200), (10, 1)]
    start = [rng.standard_normal(shape).astype(np.float32) for shape in shapes]
    gradients = [
        [rng.standard_normal(shape).astype(np.float32) for shape in shapes] for _ in range(20)
    ]
    results = []
    try:
        for lanes in (1, 2, 3):
            set_lanes(lanes)
            params = [p.copy() for p in start]
            optimizer = make_optimizer(params, name=name, lr=0.01, momentum=0.9, weight_decay=1e-3)
            for grads in gradients:
                optimizer.step([g.copy() for g in grads])
            results.append(params)
    finally:
        set_lanes(1)
    for other in results[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(results[0], other, strict=True))
    assert not np.array_equal(results[0][0], start[0])  # the updates did something


def test_lanes_below_one_are_refused():
    with pytest.raises(ValueError, match="lanes must be at least 1"):
        set_lanes(0)
