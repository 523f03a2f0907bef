"""How a command's process ends: without the interpreter's last sweeps over every object.

As Python exits, it runs the garbage collector over every object still alive, several times as
it tears the modules down. Once MLflow and its store are imported, that is some 270,000 objects,
and those sweeps took about 1 s on a Zen 3 (one sweep alone, 0.2 s): a second at the end of
every stage, sweep and `reproduce`. They find nothing that matters by then: the atexit handlers
still run (MLflow ending its run, logging's flush), files are closed by their `with` blocks, and
the operating system takes the memory back. Freezing what is alive takes it out of their sight.

    from pipeline.plumbing.process import skip_last_collection
    skip_last_collection()    # first thing in a command's `if __name__ == "__main__":`
"""

from __future__ import annotations

import atexit
import gc


def skip_last_collection() -> None:
    """When this process exits, freeze its objects before the interpreter's final collections.
    Every other atexit handler still runs, before or after the freeze (atexit runs them
    last-registered first); the few objects made after it are collected as usual."""
    atexit.register(gc.freeze)
