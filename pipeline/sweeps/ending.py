"""How a sweep ends when it does not finish: every run settled, no process left behind.

Hydra calls `SweepRuns.on_multirun_end` only when every job succeeded. Every other end passes
through one of two guards:

    settled_sweep()   wraps the train entry point in the launcher process. Ctrl-C, SIGTERM, a
                      worker process that died, a failing job: it stops the worker processes
                      (SIGTERM, then SIGKILL after a grace period), ends each child run still
                      RUNNING and the parent KILLED (an interrupt) or FAILED (an error), and
                      says so in one line. A worker of a shared study (shared.py) ends only
                      its own trials, FAILED, and queues them again; the study goes on.
    sweep_job()       wraps each job. An error ends the parent FAILED at once; an interrupt in
                      a joblib worker ends the job's run KILLED and the worker process with it,
                      and a worker whose launcher is gone (SIGKILL, a crash) notices within a
                      second and does the same.

The launcher's own errors (a worker killed mid-job) would reach Hydra's error printer as a
stack trace; HYDRA_FULL_ERROR=1 hands them to `settled_sweep` instead, which reports Hydra's
own errors (a bad override) as Hydra does. Set HYDRA_FULL_ERROR=1 yourself to see every trace.
"""

from __future__ import annotations

import _thread
import contextlib
import logging
import os
import re
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Iterator

from pipeline.plumbing.errors import (
    PipelineError,
    exit_on_sigterm,
    interrupt_on_sigterm,
    interrupts_deferred,
    on_interrupt,
)
from pipeline.sweeps.callback import (
    LAUNCHER_ENV,
    PARENT_ENV,
    STORE_ENV,
    STUDY_ENV,
    parent_run_id,
)

WORKER_GRACE = 10  # seconds a worker gets to end its run after SIGTERM, before SIGKILL
STOP_DEADLINE = 45  # seconds after Ctrl-C or SIGTERM by which the launcher has ended, whatever
ASKED_FULL_ERROR_ENV = "PIPELINE_HYDRA_FULL_ERROR_ASKED"
_ending = threading.Lock()  # one ending per launcher: the main thread's or the deadline's


@contextlib.contextmanager
def settled_sweep() -> Iterator[None]:
    """Run the train entry point; if a sweep it started ends any way but finished, settle its
    runs and processes and exit with one line (130 for an interrupt, else 1)."""
    # What the user asked for, kept across a restart by compute.pin (which inherits ours).
    asked = os.environ.setdefault(ASKED_FULL_ERROR_ENV, os.environ.get("HYDRA_FULL_ERROR", ""))
    full_traces = asked == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # the launcher's errors come here, not to Hydra
    interrupt_on_sigterm()
    on_interrupt(start_stop_deadline)
    try:
        yield
    except SystemExit as exit_:
        if exit_.code not in (0, None) and sweep_started():
            status = "KILLED" if exit_.code == 130 else "FAILED"
            end_and_exit(status, f"exit status {exit_.code}", exit_.code)
        raise
    except KeyboardInterrupt as interrupt:
        reason = str(interrupt) or "Ctrl-C"
        print(f"train: stopped ({reason})", file=sys.stderr)
        if sweep_started():
            end_and_exit("KILLED", f"interrupted ({reason})", 130)
        raise SystemExit(130) from None
    except Exception as error:
        message = describe(error)
        if full_traces or not known(error):
            traceback.print_exc()
        elif not isinstance(error, PipelineError):  # a job's own error was printed by the job
            print(f"train: error: {message}", file=sys.stderr)
        if sweep_started():
            end_and_exit("FAILED", message, 1)
        raise SystemExit(1) from None


def end_and_exit(status: str, reason: str, code: int) -> None:
    """End the sweep, then the process at once: joblib's exit handlers join threads that
    may wait for the workers just stopped, and nothing is left for them to do."""
    with _ending:
        if sweep_started():
            report(end_sweep(status, reason))
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def start_stop_deadline(reason: str) -> None:
    """On the first Ctrl-C or SIGTERM of a sweep, make sure the launcher ends by the deadline,
    even if joblib, stopping its workers, never hands the interrupt back."""
    if not sweep_started() or getattr(start_stop_deadline, "started", False):
        return
    start_stop_deadline.started = True
    late = f"interrupted ({reason}); the launcher did not stop within {STOP_DEADLINE} s"
    timer = threading.Timer(STOP_DEADLINE, end_and_exit, args=("KILLED", late, 130))
    timer.daemon = True
    timer.start()


def sweep_started() -> bool:
    return os.environ.get(LAUNCHER_ENV) == str(os.getpid())


def known(error: Exception) -> bool:
    """Errors whose message says it all: ours, Hydra's and OmegaConf's, a dead worker."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    kinds = (PipelineError, HydraException, OmegaConfBaseException)
    return isinstance(error, kinds) or type(error).__name__ == "TerminatedWorkerError"


def describe(error: Exception) -> str:
    if type(error).__name__ == "TerminatedWorkerError":  # joblib's: a worker process died
        codes = re.search(r"exit codes of the workers are \{(.*?)\}", str(error))
        return "a worker process died" + (f" (exit {codes[1]})" if codes else "")
    message = str(error)
    if error.__cause__ is not None and str(error.__cause__) not in message:
        message += f" ({error.__cause__})"
    return message if isinstance(error, PipelineError) else message or type(error).__name__


def report(summary: str) -> None:
    print(f"sweep: {summary}", file=sys.stderr)


def end_sweep(status: str, reason: str) -> str:
    """Stop the workers, then end the unfinished runs with `status`; return what was done."""
    done = []
    # A second Ctrl-C waits until the sweep has ended, then changes nothing.
    with contextlib.suppress(KeyboardInterrupt), interrupts_deferred("the sweep had ended"):
        done.append(f"{stop_workers()} worker process(es) stopped, none left")
        parent = parent_run_id()
        if os.environ.get(STUDY_ENV):  # a shared study goes on: settle this worker's part only
            from pipeline.sweeps.shared import release_own_trials

            done.append(release_own_trials(reason))
        elif parent is not None:
            done.append(end_runs(parent, status, reason))
        os.environ.pop(LAUNCHER_ENV, None)
    return f"ended {status} ({reason}): " + "; ".join(done)


def stop_workers() -> int:
    """SIGTERM every process this one started (joblib's workers and their helpers), and SIGKILL
    those still alive after WORKER_GRACE seconds. Returns how many there were."""
    import psutil  # the process tree, by PID

    processes = psutil.Process().children(recursive=True)
    # loky restarts its resource tracker (stopped here too) at exit, and warns that it died.
    warnings.filterwarnings("ignore", message="resource_tracker: process died unexpectedly")
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.terminate()
    _, alive = psutil.wait_procs(processes, timeout=WORKER_GRACE)
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(alive, timeout=WORKER_GRACE)
    return len(processes)


def end_runs(parent: str, status: str, reason: str) -> str:
    """End the children of `parent` still RUNNING, and the parent, with `status`."""
    import mlflow  # only a sweep with tracking on gets here

    client = mlflow.MlflowClient(os.environ.get(STORE_ENV))
    experiment_id = client.get_run(parent).info.experiment_id
    children = client.search_runs(
        [experiment_id], f"tags.mlflow.parentRunId = '{parent}'", max_results=10000
    )
    unfinished = [run for run in children if run.info.status == "RUNNING"]
    for run in unfinished:
        ended_early = f"the sweep ended before this job: {reason}"
        end_if_running(client, run.info.run_id, status, ended_early)
    end_if_running(client, parent, status, reason)
    final = client.get_run(parent).info.status
    os.environ.pop(PARENT_ENV, None)
    kept = sum(run.info.status == "FINISHED" for run in children)
    return (
        f"parent run {parent} {final}, {len(unfinished)} unfinished job run(s) {status}, "
        f"{kept} finished job run(s) kept"
    )


@contextlib.contextmanager
def sweep_job(active: bool) -> Iterator[None]:
    """Run one sweep job (`active`): an error ends the parent FAILED, an interrupt KILLED, and
    an interrupted joblib worker ends its process once the job's run is settled."""
    if not active:
        yield
        return
    launcher = os.environ.get(LAUNCHER_ENV)
    in_worker = launcher is not None and launcher != str(os.getpid())
    orphaned = watch_launcher(int(launcher)) if in_worker else threading.Event()
    try:
        yield
    except (Exception, KeyboardInterrupt) as error:
        if orphaned.is_set():
            cause = KeyboardInterrupt("the sweep's launcher process ended")
        else:
            cause = error
        end_parent(cause)
        if in_worker and isinstance(cause, KeyboardInterrupt):
            print(f"train: job stopped ({cause or 'Ctrl-C'})", file=sys.stderr, flush=True)
            sys.stdout.flush()
            os._exit(130)  # a worker left idle would wait for jobs forever
        raise


def end_parent(error: BaseException) -> None:
    parent = parent_run_id()
    if parent is None or os.environ.get(STUDY_ENV):  # a shared study: its sweeper decides
        return
    import mlflow  # here, not at the top: see callback.py

    from pipeline.tracking.runs import failure_status

    status, message = failure_status(error)
    with contextlib.suppress(Exception):  # the job's own error matters more
        client = mlflow.MlflowClient(os.environ.get(STORE_ENV))
        end_if_running(client, parent, status, f"a job failed: {message}")


def end_if_running(client, run_id: str, status: str, reason: str) -> None:
    """End a run still RUNNING with `status`, `reason` in its `error` tag; leave an ended one."""
    if client.get_run(run_id).info.status == "RUNNING":
        client.set_tag(run_id, "error", reason)
        client.set_terminated(run_id, status)


_orphaned = threading.Event()  # set once this worker's launcher is gone
_watching = threading.Event()  # set once this worker watches its launcher


def watch_launcher(launcher_pid: int) -> threading.Event:
    """Interrupt this worker's main thread once its parent, the launcher, is gone (one
    watching thread per worker process, whatever the number of jobs it runs)."""
    if not _watching.is_set():
        _watching.set()

        def watch():
            while os.getppid() == launcher_pid:
                time.sleep(1)
            _orphaned.set()
            exit_on_sigterm(None)  # no launcher left to settle the run: the job ends it
            _thread.interrupt_main(signal.SIGTERM)  # handled as a real SIGTERM would be

        threading.Thread(target=watch, name="launcher-watch", daemon=True).start()
    return _orphaned
