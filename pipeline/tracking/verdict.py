"""Whether a re-run made a run again: every value compared exactly, and what likely differs.

`compare` sets the recorded weights' SHA-256 and every final metric of the original run
against the re-run's, bit for bit (floats by equality, no tolerance). Machine-local values
(the seconds a training took) are not compared. `likely_causes` reads the two runs' records
(tags.py) for what differs between the two computations: the BLAS kernel or its threads,
numpy's SIMD level, the package set, Python, a patch that was not logged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

NOT_COMPARED = ("train/seconds",)  # wall-clock time: local to a machine and a moment
# Tags that decide the bits, with what to call a difference in each.
CAUSE_TAGS = (
    ("compute.blas_kernel", "another BLAS kernel"),
    ("compute.blas_threads", "another BLAS thread count"),
    ("compute.numpy_simd", "another numpy SIMD level"),
    ("compute.blas", "another BLAS library"),
    ("compute.numpy", "another numpy version"),
    ("env.packages_sha256", "another package set"),
    ("env.python", "another Python"),
)


@dataclass(frozen=True)
class Row:
    what: str  # "weights sha256" or a metric name
    recorded: str
    rerun: str
    same: bool
    change: float | None = None  # re-run minus recorded, for numbers


def show(value: float) -> str:
    return repr(float(value))


def compare(
    recorded_weights: str | None,
    rerun_weights: str,
    recorded_metrics: dict[str, float],
    rerun_metrics: dict[str, float],
) -> list[Row]:
    """One row for the weights, then one per metric of the original run (sorted)."""
    rows = [
        Row(
            "weights sha256",
            recorded_weights or "(not recorded)",
            rerun_weights,
            recorded_weights == rerun_weights,
        )
    ]
    for name in sorted(set(recorded_metrics) - set(NOT_COMPARED)):
        recorded = recorded_metrics[name]
        if name not in rerun_metrics:
            rows.append(Row(name, show(recorded), "(not logged)", False))
            continue
        rerun = rerun_metrics[name]
        same = recorded == rerun or (math.isnan(recorded) and math.isnan(rerun))
        rows.append(Row(name, show(recorded), show(rerun), same, rerun - recorded))
    return rows


def likely_causes(recorded_tags: dict[str, str], rerun_tags: dict[str, str]) -> list[str]:
    """What differs between how the original and the re-run computed, most telling first."""
    causes = []
    for tag, meaning in CAUSE_TAGS:
        before, now = recorded_tags.get(tag), rerun_tags.get(tag)
        if before is None:
            causes.append(f"{meaning}? (the run did not record {tag})")
        elif before != now:
            causes.append(f"{meaning} ({tag}: {before} → {now})")
    if recorded_tags.get("git.dirty") == "true" and not recorded_tags.get("git.patch_sha256"):
        causes.append("a missing patch: the run's tree had uncommitted changes it did not log")
    return causes


def verdict_line(rows: list[Row]) -> tuple[bool, str]:
    """(identical, the one-line verdict)."""
    differing = [row for row in rows if not row.same]
    if not differing:
        return True, f"identical: all {len(rows)} values bit for bit"
    numbers = [row for row in differing if row.change is not None]
    largest = max(numbers, key=lambda row: abs(row.change), default=None)
    by = f"; largest change {largest.change:+.3g} in {largest.what}" if largest else ""
    return False, f"differs: {len(differing)} of {len(rows)} values{by}"


def table(rows: list[Row]) -> str:
    """The verdict table: each value recorded and re-run, identical or by how much it moved."""
    width = max(len(row.what) for row in rows)
    lines = [f"  {'value':<{width}}  {'recorded':<24}  {'re-run':<24}  verdict"]
    for row in rows:
        if row.same:
            outcome = "identical"
        elif row.change is not None:
            outcome = f"differs by {row.change:+.3g}"
        else:
            outcome = "differs"
        lines.append(
            f"  {row.what:<{width}}  {row.recorded[:24]:<24}  {row.rerun[:24]:<24}  {outcome}"
        )
    return "\n".join(lines)
