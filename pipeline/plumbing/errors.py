"""Errors a user can act on, and the wrapper that turns them into one clear line.

Every stage raises `PipelineError` (or a subclass) for bad input: its message names the culprit
and the fix. `stage_errors` turns such an error into `<stage>: error: <message>` on stderr and
exit status 1, so a stack trace is never the only message. SIGTERM is turned into the same
`KeyboardInterrupt` as Ctrl-C, so `finally:` blocks (temp-file clean-up) run for both.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator


class PipelineError(Exception):
    """Bad input or state that the user can fix; the message says what and how."""


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"received {signal.Signals(signum).name}")


def interrupt_on_sigterm() -> None:
    """Make SIGTERM unwind the stack like Ctrl-C, so clean-up code runs."""
    signal.signal(signal.SIGTERM, _raise_interrupt)


@contextlib.contextmanager
def stage_errors(stage: str, exit_on_error: bool = True) -> Iterator[None]:
    """Run a stage body; report `PipelineError` and interrupts in one line and exit non-zero.

    In a Hydra sweep (`exit_on_error=False`) the error is reported, then raised on, so Hydra
    records the job as failed and runs the remaining jobs instead of exiting at once.
    """
    interrupt_on_sigterm()
    try:
        yield
    except PipelineError as error:
        print(f"{stage}: error: {error}", file=sys.stderr)
        if not exit_on_error:
            raise
        raise SystemExit(1) from None
    except KeyboardInterrupt as interrupt:
        reason = str(interrupt) or "interrupted"
        print(f"{stage}: stopped ({reason}); its earlier outputs are as they were", file=sys.stderr)
        raise SystemExit(130) from None
