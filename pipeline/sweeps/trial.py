"""The job's side of a sweep: the Optuna trial a training runs for, reached from the job's own
config (the sweeper sets `hydra.sweeper.trial` to its number) through the study's storage, as
Optuna's distributed examples do, with the pruner the config names.

    trial = SweepTrial.of_job()       # None outside a sweep
    trial.report(record)              # an epoch's dev accuracy; True: the pruner stops it here
    trial.prune()                     # its run and outputs complete: the trial is PRUNED
    trial.tags, trial.parent_run_id, trial.checkpoint
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate

from pipeline.nn import EpochRecord
from pipeline.plumbing.errors import interrupts_deferred
from pipeline.plumbing.phases import phase
from pipeline.sweeps.storage import STORAGE_CALLS, Attr, open_storage, storage_url
from pipeline.tracking.tags import RETRIED_TAG, STUDY_TAG, TRIAL_TAG, WORKER_TAG

if TYPE_CHECKING:  # optuna is imported only in a sweep: a plain training does without it
    import optuna


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
        sweeper = hydra.sweeper
        storage = open_storage(
            storage_url(sweeper, hydra.sweep.dir), sweeper.heartbeat_interval,
            sweeper.grace_period, sweeper.max_retry,
        )  # fmt: skip
        with STORAGE_CALLS:  # the job's heartbeat thread runs already
            study = optuna.load_study(
                study_name=str(sweeper.study_name), storage=storage,
                pruner=instantiate(sweeper.pruner),
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
