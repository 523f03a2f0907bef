"""Per-epoch curves logged live: the trainer's `on_epoch` hands each epoch's record over, and
a thread of its own sends it, so that no epoch waits for the store.

    curves = LiveCurves(run, dev_curves(config))    # before training
    run_training(..., on_epoch=curves)
    curves.flush()                                  # every epoch in the store, or StoreError

A store that stops answering costs a warning, not the training; the epochs it missed are sent
once it answers again, at the latest by `flush`. A run that ends otherwise (an error, Ctrl-C)
first lets the thread try what is waiting (`Run.before_end`).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

from tqdm import tqdm

from pipeline.nn import EpochRecord
from pipeline.plumbing.phases import phase
from pipeline.tracking.runs import Run
from pipeline.tracking.store import StoreError


def dev_curves(config) -> str:
    """What the per-epoch dev scores are logged as: dev/*, or dev_seen/* for a training that
    fitted the dev images too (train.include_dev), whose dev scores then measure no
    generalisation and must not sit beside held-out ones in the MLflow UI."""
    return "dev_seen" if config.train.include_dev else "dev"


class LiveCurves:
    """Logs each epoch's record as the epoch ends, from a thread of its own: the next epoch
    does not wait for the store (a request to a server takes about 0.1 s), and the epochs
    that ended while a request was out go together in the next one. If the store stops
    answering, training goes on: one warning, a new try at most once every RETRY_AFTER
    seconds, and the epochs missed are sent when it answers again, at the latest by `flush`
    at the end of the run. However the run ends, the epochs waiting are tried before it does
    (for at most runs.DRAIN_SECONDS when it ends with an error)."""

    RETRY_AFTER = 60.0

    def __init__(self, run: Run, dev: str = "dev", stamps: dict[int, int] | None = None,
                 sendable: Callable[[], int | None] | None = None):  # fmt: skip
        self.run = run
        self.dev = dev  # the dev curves' name: dev_seen when the network trained on dev
        # With a checkpoint (training/checkpoints.py): each epoch's stamp, chosen by it, and
        # the last epoch it holds. Later epochs wait until it holds them (or the run ends
        # FINISHED), so that an epoch sent before a stop and made again after it, from the
        # checkpoint, is one row in the store with one stamp, never two.
        self.chosen_stamps = stamps if stamps is not None else {}
        self.sendable = sendable
        self.held: list[tuple[EpochRecord, int]] = []
        self.unsent: list[EpochRecord] = []
        # When each unsent epoch ended: a request the store took but whose answer was lost is
        # sent again with the same stamps, and the store keeps one copy.
        self.stamps: list[int] = []
        self.failing_since: float | None = None
        self.waiting: list[tuple[EpochRecord, int]] = []  # handed over, not yet taken
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.closing = False
        self.error: BaseException | None = None  # what the thread met other than the store
        # A daemon: a request hung on a dead server must not keep the process alive.
        self.sender = threading.Thread(target=self.send_waiting, name="curves", daemon=True)
        self.sender.start()
        run.before_end.append(self.drain)

    def __call__(self, record: EpochRecord) -> None:
        with phase("log: params+curves"), self.lock:
            stamp = self.chosen_stamps.get(record.epoch) or int(time.time() * 1000)
            self.held.append((record, stamp))
            limit = self.sendable() if self.sendable is not None else None
            ready = [item for item in self.held if limit is None or item[0].epoch <= limit]
            if ready:
                self.held = self.held[len(ready) :]
                self.waiting += ready
                self.wake.set()

    def send_waiting(self) -> None:
        while True:
            self.wake.wait()
            with self.lock:
                taken, self.waiting = self.waiting, []
                self.wake.clear()
                last = self.closing
            try:
                if taken:
                    self.log(taken)
            except BaseException as error:  # a bug, not the store: flush raises it
                self.error = error
                return
            if last:
                return

    def log(self, taken: list[tuple[EpochRecord, int]]) -> None:
        self.unsent += [record for record, _ in taken]
        self.stamps += [stamp for _, stamp in taken]
        if self.failing_since and time.monotonic() - self.failing_since < self.RETRY_AFTER:
            return
        try:
            self.send()
        except StoreError as error:
            if self.failing_since is None:
                tqdm.write(  # on a line of its own, above the progress bar
                    f"train: warning: {error}, at epoch {taken[-1][0].epoch}; training goes "
                    "on, and the curves are sent once the store answers again",
                    file=sys.stderr,
                )
            self.failing_since = time.monotonic()

    def drain(self, timeout: float | None = None) -> None:
        """Let the thread try what is waiting (for at most `timeout` seconds), then end it."""
        with self.lock:
            self.closing = True
            self.wake.set()
        self.sender.join(timeout)

    def flush(self) -> None:
        """Send every epoch; raise `StoreError` if the store still does not answer."""
        with phase("log: params+curves"), self.lock:
            self.waiting += self.held  # the run ends FINISHED: every epoch is final
            self.held = []
        with phase("log: params+curves"):
            self.drain()
            if self.error is not None:
                raise self.error
            self.send()

    def send(self) -> None:
        if self.unsent:
            self.run.log_epochs(self.unsent, self.stamps, self.dev)
            if self.failing_since is not None:
                tqdm.write(f"train: the MLflow store answers again; {len(self.unsent)} epochs sent")
            self.unsent, self.stamps = [], []
        self.failing_since = None
