"""Matrix products shared out over the cores, with bits that do not depend on how many.

OpenBLAS on several threads splits a product along the batch's columns, and the sums it then
rounds differ from one thread count to another. Here a product's output *rows* are shared out
instead, in blocks whose edges fall on multiples of ROW_BLOCK rows, each block computed by
OpenBLAS on one thread. Its Haswell kernels (the ones compute=portable_bits pins) tile the
output in 12 rows (float32) or 8 (float64) and compute every tile alike wherever it sits, so a
block's rows come out with exactly the bits they have in the whole product: a shared-out
product is bit for bit the one-thread product, on one core or many (tests/nn/test_lanes.py
checks each of the network's shapes in a process pinned like portable_bits).

    set_lanes(2)      # two threads share each large product (compute.lanes; 1: no sharing)
    matmul(w, a)      # w @ a

Only products big enough to pay for a thread hand-off are shared; a product with one column
(a matrix times a vector: OpenBLAS's GEMV, tiled otherwise) never is.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np

ROW_BLOCK = 24  # a multiple of the kernels' row tiles: 12 (float32) and 8 (float64)
MIN_SHARED_WORK = 1 << 20  # multiply-adds below which one thread is quicker than a hand-off

_lanes = 1
_helpers: ThreadPoolExecutor | None = None


def set_lanes(lanes: int) -> None:
    """Share each large product among `lanes` threads (this one and lanes - 1 helpers)."""
    global _lanes, _helpers
    if lanes < 1:
        raise ValueError(f"lanes must be at least 1, got {lanes}")
    if lanes == _lanes:
        return
    if _helpers is not None:
        _helpers.shutdown(wait=True)
    _lanes = lanes
    _helpers = ThreadPoolExecutor(lanes - 1, thread_name_prefix="lane") if lanes > 1 else None


def _forget_helpers() -> None:
    """In a forked child: the parent's helper threads are not there, so start without them
    (a later set_lanes makes the child's own)."""
    global _lanes, _helpers
    _lanes, _helpers = 1, None


os.register_at_fork(after_in_child=_forget_helpers)


def row_blocks(rows: int, parts: int) -> list[tuple[int, int]]:
    """`parts` blocks of about equal size covering `rows`, every inner edge a multiple of
    ROW_BLOCK; fewer when there are not that many whole blocks."""
    whole_blocks = rows // ROW_BLOCK
    parts = max(1, min(parts, whole_blocks))
    edges = [ROW_BLOCK * (whole_blocks * part // parts) for part in range(parts)] + [rows]
    return list(itertools.pairwise(edges))


def share(tasks: list[Callable[[], None]]) -> None:
    """Run independent `tasks` (each writes only its own slice of the arrays), split into one
    run of consecutive tasks per lane."""
    if _helpers is None or len(tasks) < 2:
        for task in tasks:
            task()
        return
    parts = min(_lanes, len(tasks))
    edges = [len(tasks) * part // parts for part in range(parts + 1)]
    runs = [tasks[start:stop] for start, stop in itertools.pairwise(edges)]
    errors = np.geterr()  # numpy's error handling is per thread: the helpers take the caller's
    pending = [_helpers.submit(run_all, run, errors) for run in runs[1:]]
    run_all(runs[0], errors)
    for run in pending:
        run.result()


def run_all(tasks: list[Callable[[], None]], errors: dict[str, str]) -> None:
    with np.errstate(**errors):
        for task in tasks:
            task()


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b, its output rows shared among the lanes when the product is large enough."""
    rows, inner = a.shape
    columns = b.shape[1]
    if _helpers is None or columns < 2 or rows * inner * columns < MIN_SHARED_WORK:
        return a @ b
    blocks = row_blocks(rows, _lanes)
    if len(blocks) == 1:
        return a @ b
    out = np.empty((rows, columns), dtype=np.result_type(a, b))
    share([partial(np.matmul, a[start:stop], b, out=out[start:stop]) for start, stop in blocks])
    return out
