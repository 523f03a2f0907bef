"""The verdict of a re-run: exact comparison of every value, and the likely causes named."""

from __future__ import annotations

import math

from pipeline.tracking.verdict import compare, likely_causes, table, verdict_line

RECORD = {
    "compute.blas_kernel": "Haswell",
    "compute.blas_threads": "1",
    "compute.numpy_simd": "X86_V3",
    "compute.blas": "openblas 0.3.31",
    "compute.numpy": "2.4.6",
    "env.packages_sha256": "aa",
    "env.python": "3.11.7",
}


def test_identical_only_when_every_value_is_equal_bit_for_bit():
    metrics = {"test/accuracy": 0.9913, "dev/loss": math.nan, "train/seconds": 60.3}
    rerun = {"test/accuracy": 0.9913, "dev/loss": math.nan, "train/seconds": 12.0}
    rows = compare("ab" * 32, "ab" * 32, metrics, rerun)
    assert [row.what for row in rows] == ["weights sha256", "dev/loss", "test/accuracy"]
    assert verdict_line(rows) == (True, "identical: all 3 values bit for bit")
    nudged = {**rerun, "test/accuracy": math.nextafter(0.9913, 1.0)}  # one ulp
    identical, line = verdict_line(compare("ab" * 32, "ab" * 32, metrics, nudged))
    assert not identical and line.startswith(
        "differs: 1 of 3 values; largest change +1.11e-16 in test/accuracy"
    )


def test_a_missing_metric_or_other_weights_differ():
    rows = compare("ab" * 32, "cd" * 32, {"test/loss": 0.1}, {})
    assert [(row.what, row.same) for row in rows] == [
        ("weights sha256", False),
        ("test/loss", False),
    ]
    assert "(not logged)" in table(rows)
    assert verdict_line(rows) == (False, "differs: 2 of 2 values")


def test_likely_causes_name_what_computed_differently():
    assert likely_causes(RECORD, dict(RECORD)) == []
    other = {**RECORD, "compute.blas_kernel": "SkylakeX", "env.packages_sha256": "bb"}
    assert likely_causes(RECORD, other) == [
        "another BLAS kernel (compute.blas_kernel: Haswell → SkylakeX)",
        "another package set (env.packages_sha256: aa → bb)",
    ]
    unlogged = {**RECORD, "git.dirty": "true"}
    assert likely_causes(unlogged, RECORD)[-1].startswith("a missing patch")
    assert (
        likely_causes({}, RECORD)[0]
        == "another BLAS kernel? (the run did not record compute.blas_kernel)"
    )
