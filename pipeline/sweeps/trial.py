"""The job's side of a sweep: the Optuna trial a training runs for, reached from the job's own
config (the sweeper sets `hydra.sweeper.trial` to its number) through the study's storage, as
Optuna's distributed examples do, with the pruner the config names.

    trial = SweepTrial.of_job()       # None outside a sweep
    trial.report(record)              # an epoch's dev accuracy; True: the pruner stops it here
    trial.prune()                     # its run and outputs complete: the trial is PRUNED
    trial.tags, trial.parent_run_id, trial.checkpoint
"""

from __future__ import annotations

import functools
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate

from pipeline.nn import EpochRecord
from pipeline.plumbing.datasets import load_dataset
from pipeline.plumbing.errors import interrupts_deferred
from pipeline.plumbing.paths import NORMALISED_TEST, SPLIT_DEV, SPLIT_TRAIN
from pipeline.plumbing.phases import phase
from pipeline.tracking.tags import RETRIED_TAG, STUDY_TAG, TRIAL_TAG, WORKER_TAG
from pipeline.training.trainer import load_split

if TYPE_CHECKING:  # optuna is imported only in a sweep: a plain training does without it
    import optuna


# One storage call at a time in a worker process: its heartbeat thread and its job both write
# to the study, and two SQLite connections of one process, each waiting for the other's lock,
# deadlock (seen: a report and a heartbeat, stuck until the busy timeout).
STORAGE_CALLS = threading.Lock()


class Attr:  # the user attributes the sweeps keep in the study's database
    PARENT, ENDED, SHARED = "mlflow_parent_run_id", "ended", "shared"  # a study's: parent run,
    WORKERS, SEARCH = "workers_joined", "search"  # how it ended, whether shared, workers, search
    ERROR, WORKER = "error", "worker"  # a trial's: why it failed, which worker ran it


def storage_url(sweeper, sweep_dir: str | Path) -> str:
    """The study's database: `hydra.sweeper.storage`, or an SQLite file in the sweep's folder."""
    return str(sweeper.storage or f"sqlite:///{Path(sweep_dir).resolve() / 'optuna.db'}")


def storage_settings(url: str) -> dict | None:
    """SQLite: workers wait for each other's writes (its 5 s default is short under load)."""
    return {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None


@functools.cache
def storage_at(url: str):
    """One storage object per database and worker process, for all the jobs it runs."""
    import optuna

    return optuna.storages.RDBStorage(url, engine_kwargs=storage_settings(url))


def frozen_trial(study: optuna.Study, number: int) -> optuna.trial.FrozenTrial:
    return next(t for t in study.get_trials(deepcopy=False) if t.number == number)


def trial_id(frozen: optuna.trial.FrozenTrial) -> int:
    """The storage's id of a trial, which Optuna's public `Trial(study, id)` and heartbeats
    take and only the private `FrozenTrial._trial_id` gives (pinned by
    tests/sweeps/test_trial.py)."""
    return frozen._trial_id


@dataclass
class SweepTrial:
    trial: optuna.Trial
    study: optuna.Study
    job_dir: Path
    retried: int | None  # the lost or stopped trial this one runs again (the first of a chain)

    @classmethod
    def of_job(cls) -> SweepTrial | None:
        if not HydraConfig.initialized() or HydraConfig.get().sweeper.get("trial") is None:
            return None
        import optuna

        hydra = HydraConfig.get()
        with STORAGE_CALLS:  # the job's heartbeat thread runs already
            study = optuna.load_study(
                study_name=str(hydra.sweeper.study_name), pruner=instantiate(hydra.sweeper.pruner),
                storage=storage_at(storage_url(hydra.sweeper, hydra.sweep.dir)),
            )  # fmt: skip
            frozen = frozen_trial(study, int(hydra.sweeper.trial))
            retried = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(frozen)
            trial = optuna.trial.Trial(study, trial_id(frozen))
        return cls(trial, study, Path(hydra.runtime.output_dir), retried)

    def report(self, record: EpochRecord) -> bool:
        """Report the epoch's dev accuracy; whether the pruner stops the trial here. Not cut by
        Ctrl-C: an SQLite write cut midway would keep the study locked."""
        with (
            interrupts_deferred("the epoch was reported to the trial"),
            phase("log: trial"),
            STORAGE_CALLS,
        ):
            self.trial.report(record.dev_accuracy, record.epoch)
            return bool(self.trial.should_prune())

    def prune(self) -> None:
        import optuna

        with interrupts_deferred("the trial was told it was pruned"), STORAGE_CALLS:
            self.study.tell(self.trial, state=optuna.trial.TrialState.PRUNED)

    @property
    def checkpoint(self) -> Path:
        """Kept under the trial it runs again, if any: a retry goes on from its last epoch."""
        origin = self.trial.number if self.retried is None else self.retried
        return self.job_dir.parent / "checkpoints" / f"trial-{origin}.npz"

    @property
    def parent_run_id(self) -> str | None:
        with STORAGE_CALLS:
            return self.study.user_attrs.get(Attr.PARENT)

    def tags(self, resumed_epochs: int) -> dict[str, str]:
        """The run's trial, study and worker; for a retry with no checkpoint here (it is on
        the machine whose worker was lost), why it trains from epoch 1."""
        host = socket.gethostname()
        tags = {TRIAL_TAG: str(self.trial.number), STUDY_TAG: self.study.study_name,
                WORKER_TAG: f"{host}:{os.getpid()}"}  # fmt: skip
        if self.retried is not None:
            tags[RETRIED_TAG] = str(self.retried)
            if resumed_epochs:
                print(f"train: trial {self.trial.number} goes on from trial {self.retried}'s "
                      f"epoch {resumed_epochs + 1}")  # fmt: skip
            else:
                tags["restarted"] = (
                    f"no checkpoint of trial {self.retried} on {host}: trained from epoch 1"
                )
        return tags


DATA_FILES = (SPLIT_TRAIN, SPLIT_DEV, NORMALISED_TEST)  # what every job reads
_loaded: dict[tuple, tuple[dict, dict, dict]] = {}  # the data this process holds, one entry


def job_data() -> tuple[dict, dict, dict]:
    """The train, dev and test arrays, read once per sweep (the sweeper reads them before it
    forks its workers) and kept, read-only, while the files stay the same."""
    try:
        key = tuple((s.st_ino, s.st_size, s.st_mtime_ns) for s in map(os.stat, DATA_FILES))
    except OSError:  # a file is missing: the loaders say which, and how to make it
        key = None
    if key is None or key not in _loaded:
        train, dev = load_split(SPLIT_TRAIN, SPLIT_DEV)
        test = load_dataset(NORMALISED_TEST, made_by="normalise")
        for array in (*train.values(), *dev.values(), *test.values()):
            array.flags.writeable = False  # a job that wrote into them would change the next
        _loaded.clear()
        _loaded.update({key: (train, dev, test)} if key else {})
        return train, dev, test
    return _loaded[key]
