"""Where a training's wall time goes, by phase: what `make bench` (benchmarks/overheads.py)
reports, so that time spent on anything but learning shows.

    with phase("data"):              # the block's seconds count to "data"
        train, dev = load_split(...)
    move_time("epochs", "scoring", dev_seconds)   # re-file time measured inside another phase
    start_job() … write_phases("sweep-job")   # with $PIPELINE_PHASES set: one JSON line a job

Phases nest: a block inside another counts to the inner phase only (the curves logged after
each epoch are logging, not epochs). Outside a benchmark the cost is two clock reads a phase.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections import defaultdict
from collections.abc import Iterator

PHASES_ENV = "PIPELINE_PHASES"  # a file: each training appends where its time went

_seconds: dict[str, float] = defaultdict(float)
_open: list[list] = []  # [name, started, seconds spent in inner phases] of each open phase
_clock = {"job": 0.0, "previous_end": 0.0}  # wall-clock stamps of this process's jobs


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    entry = [name, time.perf_counter(), 0.0]
    _open.append(entry)
    try:
        yield
    finally:
        _open.pop()
        spent = time.perf_counter() - entry[1]
        _seconds[name] += spent - entry[2]
        if _open:
            _open[-1][2] += spent


def move_time(source: str, target: str, seconds: float) -> None:
    """Count `seconds` that `source` measured to `target` instead."""
    seconds = min(seconds, _seconds.get(source, 0.0))
    _seconds[source] -= seconds
    _seconds[target] += seconds


def process_started() -> float:
    """When this process began (wall clock), from the kernel's record of it."""
    try:
        import psutil

        return psutil.Process().create_time()
    except Exception:  # no psutil, no permission: start-up then shows as 0
        return time.time()


def start_job() -> None:
    """A job (a training, a sweep trial) begins: its phases start from nothing."""
    _seconds.clear()
    _clock["job"] = time.time()


def write_phases(kind: str) -> None:
    """Append the job's phases to $PIPELINE_PHASES (if set). Its start-up is what came before
    the job began: for a process's first job the interpreter and the imports; for a later one
    in the same worker, the sweep's set-up of it since the previous job ended."""
    target = os.environ.get(PHASES_ENV)
    now = time.time()
    if target and _clock["job"]:
        before = _clock["previous_end"] or process_started()
        record = {
            "kind": kind,
            "pid": os.getpid(),
            "first_in_process": not _clock["previous_end"],
            "startup": max(0.0, _clock["job"] - before),
            "job": now - _clock["job"],
            "phases": dict(_seconds),
        }
        with open(target, "a") as out:
            out.write(json.dumps(record) + "\n")
    _clock["previous_end"] = now
