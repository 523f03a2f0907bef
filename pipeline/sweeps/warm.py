"""Sweep jobs in worker processes forked from a warmed-up launcher: `hydra/launcher=warm`.

Hydra's joblib launcher starts each worker as a new interpreter: every worker imports numpy,
Hydra and MLflow, reads the data, opens the store and reads the packages and the code's state
before its first job, seconds a short trial spends on anything but learning. This launcher
does all of that once, in the sweep's own process, then forks its `n_jobs` workers from it:
they start with the modules loaded, the arrays in memory (shared, read-only, until a worker
writes to them, which none does) and the tags known. Each job then runs exactly as under
joblib (Hydra's own `execute_job`: the job's config, folder, logging and callbacks).

A forked worker drops the store connections it inherited and makes its own (store.py), and
starts its lanes afresh (nn/lanes.py). Ctrl-C in a job ends its run KILLED (sweeps/ending.py);
SIGTERM, which only the launcher or its pool sends when a sweep ends early, ends the worker at
once and leaves its run to the launcher, which ends it with the sweep's status; an idle worker
just exits. A worker that dies ends the sweep with one line naming its exit.

    python -m pipeline.train -m sweep=grid                      # conf/sweep/grid.yaml uses it
    python -m pipeline.train -m hydra/launcher=warm hydra.launcher.n_jobs=2 optimizer=sgd,adam
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import signal
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from omegaconf import OmegaConf

from pipeline.plumbing.errors import PipelineError, exit_on_sigterm
from pipeline.plumbing.phases import phase, start_job, write_phases
from pipeline.sweeps.callback import STORE_ENV

_inherited: dict[str, Any] = {}  # what the workers find after the fork: Hydra's job context
_pools: list[WarmPool] = []  # this process's pools, closed when its sweep ends
_reading: dict[str, Any] = {}  # the data read ahead (read_ahead), and the threads reading it


class WorkerDied(PipelineError):
    """A worker process ended in the middle of the sweep (killed, out of memory)."""


class WarmPool:
    """`n_jobs` worker processes forked, at the first launch, from this warmed-up process and
    kept for every later launch of the sweep (Optuna launches one batch of trials at a time)."""

    def __init__(self, n_jobs: int):
        if n_jobs < 1:
            raise PipelineError(f"hydra.launcher.n_jobs must be at least 1, got {n_jobs}")
        self.n_jobs = n_jobs
        self.executor: ProcessPoolExecutor | None = None
        self.workers: list = []

    def launch(self, context, config, task_function, job_overrides, first_index) -> list:
        from hydra.core.singleton import Singleton

        if self.executor is None:
            start_job()  # $PIPELINE_PHASES: the launcher's start-up, then its warm-up
            with phase("warm-up"):
                warm_up()
            _inherited.update(
                context=context,
                config=config,
                task_function=task_function,
                singletons=Singleton.get_state(),
                job_sigterm=signal.getsignal(signal.SIGTERM),
            )
            write_phases("sweep-launcher")
            # What the workers inherit is never garbage: keep the collector from walking it
            # in every worker (and copying its pages on the way), as fork servers do.
            gc.freeze()
            self.executor = ProcessPoolExecutor(
                self.n_jobs, mp_context=multiprocessing.get_context("fork"), initializer=forked
            )
            _pools.append(self)
        futures = [
            self.executor.submit(run_job, first_index + index, list(overrides))
            for index, overrides in enumerate(job_overrides)
        ]
        # The pool forgets its processes once one has died: keep them, to say how it did.
        self.workers = list((getattr(self.executor, "_processes", None) or {}).values())
        try:
            return [future.result() for future in futures]
        except BrokenProcessPool:
            raise WorkerDied(f"a worker process died ({self.exits()})") from None

    def exits(self) -> str:
        """How the dead worker ended, `exit SIGKILL(-9)` as joblib says it; not counting
        those the pool then stopped (SIGTERM)."""
        for worker in self.workers:
            worker.join(1)
        stopped = {-signal.SIGTERM, 128 + signal.SIGTERM}
        codes = [w.exitcode for w in self.workers if w.exitcode not in (None, 0)]
        codes = [code for code in codes if code not in stopped] or codes
        names = [
            f"{signal.Signals(-code).name}({code})" if code < 0 else str(code) for code in codes
        ]
        return "exit " + ", ".join(names) if names else "exit unknown"


def close_pools() -> None:
    """End the workers once the sweep is over (sweeps/callback.py), rather than leaving that
    to the interpreter's exit, where Python 3.11's pool can fail on a closed pipe."""
    while _pools:
        pool = _pools.pop()
        if pool.executor is not None:
            pool.executor.shutdown(wait=True)


def read_ahead(tracking: bool) -> None:
    """Start reading the data (and, tracking on, hashing it) on helper threads, while the
    sweep's process goes on setting up: the sweep callback calls this first thing, so that
    the disk works while Python imports MLflow and opens the store."""
    from pipeline.sweeps import job

    helpers = ThreadPoolExecutor(2, thread_name_prefix="read-ahead")
    _reading["helpers"] = helpers
    _reading["data"] = helpers.submit(job.job_data)
    if tracking:
        from pipeline.plumbing.files import file_md5

        present = [path for path in job.DATA_FILES if path.is_file()]
        _reading["md5s"] = helpers.submit(lambda: [file_md5(path) for path in present])


def warm_up() -> None:
    """What every job needs and would otherwise load once per worker: the sweep job's modules,
    the data, and (tracking on) the data's md5s, the packages and the code's state. The
    helper threads have ended when this returns: no thread is running when workers fork."""
    tracking = bool(os.environ.get(STORE_ENV))  # the sweep callback opened a store
    if not _reading:
        read_ahead(tracking)
    if tracking:
        from pipeline.tracking import training_runs
        from pipeline.tracking.tags import installed_packages

        installed_packages()
        training_runs.code_tags_once()
    helpers = _reading.pop("helpers")
    for step in _reading.values():
        with contextlib.suppress(PipelineError):  # missing data: each job says so, with the fix
            step.result()
    helpers.shutdown(wait=True)
    _reading.clear()


def forked() -> None:
    """A worker's first step after the fork: its own store connections; SIGTERM, which only
    the launcher (or its pool) sends it when the sweep ends early, ends it at once, leaving
    its run to the launcher to end with the sweep's status; and signals that end an idle
    worker at once (a job sets its own, run_job)."""
    if "pipeline.tracking.store" in sys.modules:
        from pipeline.tracking.store import forget_connections

        forget_connections()
    exit_on_sigterm("train: job stopped")
    idle_signals()


def idle_signals() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda number, frame: os._exit(128 + number))


def run_job(index: int, overrides: list[str]):
    """One job, as Hydra's joblib launcher runs it, with Ctrl-C and SIGTERM raised in it."""
    from hydra_plugins.hydra_joblib_launcher._core import execute_job

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _inherited["job_sigterm"])
    try:
        returned = execute_job(
            index, overrides, _inherited["context"], _inherited["config"],
            _inherited["task_function"], _inherited["singletons"],
        )  # fmt: skip
    finally:
        idle_signals()
    # Back to the launcher by pickle: plain configs, since Hydra's plugin scan loads this
    # launcher's config class as a second copy that pickle cannot name.
    for field in ("cfg", "hydra_cfg"):
        value = getattr(returned, field, None)
        if value is not None:
            setattr(returned, field, OmegaConf.create(OmegaConf.to_container(value)))
    return returned


def launch_jobs(launcher, job_overrides: Sequence[Sequence[str]], first_index: int) -> list:
    """The plugin's launch (hydra_plugins/pipeline_warm_launcher): Hydra's set-up, then the pool."""
    from pathlib import Path

    from hydra.core.utils import configure_log, setup_globals

    setup_globals()
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    Path(str(launcher.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    return launcher.pool.launch(
        launcher.hydra_context, launcher.config, launcher.task_function, job_overrides,
        first_index,
    )  # fmt: skip
