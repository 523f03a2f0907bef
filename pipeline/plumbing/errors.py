"""Errors a user can act on, and the wrapper that turns them into one clear line.

Every stage raises `PipelineError` (or a subclass) for bad input: its message names the culprit
and the fix. `stage_errors` turns such an error into `<stage>: error: <message>` on stderr and
exit status 1, so a stack trace is never the only message. SIGTERM is turned into the same
`KeyboardInterrupt` as Ctrl-C, so `finally:` blocks (temp-file clean-up) run for both.

Some steps must not be cut in half: renaming a set of outputs into place, a write to the
tracking store (an SQLite transaction cut by Ctrl-C can leave the database locked, so the run
could no longer be ended). `interrupts_deferred()` holds a Ctrl-C or SIGTERM that arrives
during such a step and raises it as soon as the step is done.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import threading
from collections.abc import Iterator


class PipelineError(Exception):
    """Bad input or state that the user can fix; the message says what and how."""


FIXES = {
    errno.ENOSPC: "free disk space on that filesystem, and run it again",
    errno.EDQUOT: "the disk quota is used up: free space or raise the quota, and run it again",
    errno.EFBIG: "free disk space, or write to a filesystem that takes files this large, or "
    "raise this process's file-size limit (ulimit -f)",
    errno.EROFS: "the filesystem is mounted read-only: mount it read-write, or point that "
    "output at a writable place",
    errno.EACCES: "this user may not write there: change the folder's owner or mode, or run "
    "as a user who may",
    errno.EPERM: "the operation is not permitted there (an immutable file, or a filesystem "
    "that forbids it): change the file's attributes or mount options",
    errno.EXDEV: "the temporary file and the output are on different filesystems; report this, "
    "as outputs are staged on their own filesystem",
    errno.EBUSY: "it is a mount point or in use: mount the folder that holds it instead of "
    "the file itself",
    errno.EISDIR: "a folder is in the way: move it elsewhere",
    errno.ENOTDIR: "a file is in the way where a folder should be: move it elsewhere",
}


def os_reason(error: OSError) -> str:
    """An OS error's reason and the fix a user can make; the earlier outputs are intact."""
    reason = error.strerror or str(error)
    fix = FIXES.get(error.errno)
    return f"{reason} ({fix})" if fix else reason


def without_password(url: str) -> str:
    """A database URL as a message may show it: its password as ***."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


OUTPUTS_REPLACED = "its new outputs were in place"  # the step of `move_together`
_deferral = {"depth": 0, "pending": None}  # steps in progress, and the signal held meanwhile


_watchers: list = []  # called with the reason on each Ctrl-C or SIGTERM, before it is raised


def on_interrupt(watcher) -> None:
    """Call `watcher(reason)` whenever Ctrl-C or SIGTERM arrives (a sweep's launcher starts
    its stop deadline there, even if the interrupt is then held or swallowed by a library)."""
    _watchers.append(watcher)


_sigterm_exit = {"message": None}  # set: SIGTERM ends the process at once (exit_on_sigterm)


def exit_on_sigterm(message: str | None) -> None:
    """From now on SIGTERM prints `message` and ends this process at once, running no clean-up
    (a sweep worker stopped by its launcher, which settles the worker's runs itself); None:
    SIGTERM is an interrupt again."""
    _sigterm_exit["message"] = message


def _raise_interrupt(signum, frame):
    reason = f"received {signal.Signals(signum).name}"
    if signum == signal.SIGTERM and _sigterm_exit["message"]:
        print(f"{_sigterm_exit['message']} ({reason})", file=sys.stderr, flush=True)
        os._exit(128 + signum)
    for watcher in _watchers:
        watcher(reason)
    if _deferral["depth"]:
        _deferral["pending"] = reason
        return
    raise KeyboardInterrupt(reason)


def interrupt_on_sigterm() -> None:
    """Make SIGTERM unwind the stack like Ctrl-C, so clean-up code runs, and let both wait
    for `interrupts_deferred` steps. A SIGINT ignored by the caller (`cmd &`) stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        return  # only the main thread may set handlers; signals are handled there anyway
    signal.signal(signal.SIGTERM, _raise_interrupt)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _raise_interrupt)


class DeferredInterrupt(KeyboardInterrupt):
    """Ctrl-C or SIGTERM, raised once the step it arrived in was done; `step` says which."""

    def __init__(self, reason: str, step: str):
        super().__init__(f"{reason}, held until {step}")
        self.step = step


@contextlib.contextmanager
def interrupts_deferred(step: str = "a write was done") -> Iterator[None]:
    """Run a step that must not be cut in half: Ctrl-C or SIGTERM meanwhile is raised after it
    (as `DeferredInterrupt(step)`, `step` saying what was done).

    The handler checks a flag instead of blocking the signals (pthread_sigmask), because a
    signal blocked in the main thread is still taken by any other thread (tqdm's monitor) and
    then run by Python in the main thread all the same. Only the main thread's steps hold
    an interrupt: Python raises it there and nowhere else, so a step on another thread (the
    curves' sender) is never cut by one, and must not keep it from the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if signal.getsignal(signal.SIGTERM) is not _raise_interrupt:
        interrupt_on_sigterm()
    _deferral["depth"] += 1
    try:
        yield
    finally:
        _deferral["depth"] -= 1
        if _deferral["depth"] == 0 and _deferral["pending"]:
            reason, _deferral["pending"] = _deferral["pending"], None
            raise DeferredInterrupt(reason, step)


@contextlib.contextmanager
def stage_errors(stage: str, exit_on_error: bool = True) -> Iterator[None]:
    """Run a stage body; report `PipelineError` and interrupts in one line and exit non-zero.

    In a Hydra sweep (`exit_on_error=False`) the error is reported, then raised on, so Hydra
    records the job as failed and runs the remaining jobs instead of exiting at once.
    """
    interrupt_on_sigterm()
    try:
        yield
    except (PipelineError, OSError) as error:
        message = str(error)
        if isinstance(error, OSError):  # e.g. a folder that is not writable, an I/O error
            where = f" ({error.filename})" if error.filename else ""
            message = f"{os_reason(error)}{where}; its earlier outputs are as they were"
        print(f"{stage}: error: {message}", file=sys.stderr)
        if not exit_on_error:
            raise
        raise SystemExit(1) from None
    except KeyboardInterrupt as interrupt:
        reason = str(interrupt) or "interrupted"
        replaced = getattr(interrupt, "step", None) == OUTPUTS_REPLACED
        kept = "" if replaced else "; its earlier outputs are as they were"
        # A training says how far it got and how it goes on (training/trainer.py).
        at, then = getattr(interrupt, "at", ""), getattr(interrupt, "then", "")
        print(f"{stage}: stopped{at} ({reason}){then}{kept}", file=sys.stderr)
        raise SystemExit(130) from None
