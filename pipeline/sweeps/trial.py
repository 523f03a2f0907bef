"""The job's side of a sweep: the Optuna trial a training runs for, reached through the study's
storage from the job's own config (the sweeper sets `hydra.sweeper.trial` to its number).

    trial = SweepTrial.of_job()         # None outside a sweep
    trial.report(record)                # each epoch's dev accuracy; True: the pruner says stop
    trial.tags, trial.parent_run_id     # what the job's MLflow run records
    trial.checkpoint                    # where its training state is kept between epochs

A job reaches its trial as Optuna's distributed examples do: by the study's name and storage,
the pruner built from the same config, so the decision is the study's, on any machine.
"""

from __future__ import annotations

import functools
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from pipeline.nn import EpochRecord
from pipeline.plumbing.datasets import load_dataset
from pipeline.plumbing.errors import interrupts_deferred
from pipeline.plumbing.paths import NORMALISED_TEST, SPLIT_DEV, SPLIT_TRAIN
from pipeline.tracking.tags import RETRIED_TAG, STUDY_TAG, TRIAL_TAG, WORKER_TAG
from pipeline.training.trainer import load_split

if TYPE_CHECKING:
    import optuna

PARENT_ATTR = "mlflow_parent_run_id"  # the study's user attribute: its MLflow parent run


def storage_url(sweeper: DictConfig, sweep_dir: str | Path) -> str:
    """The study's database: `hydra.sweeper.storage`, or an SQLite file in the sweep's folder."""
    if sweeper.storage:
        return str(sweeper.storage)
    return f"sqlite:///{Path(sweep_dir).resolve() / 'optuna.db'}"


@functools.cache
def storage_at(url: str) -> optuna.storages.RDBStorage:
    """One storage object per database and worker process, for all the jobs it runs."""
    import optuna  # here: a training outside a sweep does without its import time

    from pipeline.sweeps.study_storage import engine_settings

    return optuna.storages.RDBStorage(url, engine_kwargs=engine_settings(url))


def frozen_trial(study: optuna.Study, number: int) -> optuna.trial.FrozenTrial:
    found = [t for t in study.get_trials(deepcopy=False) if t.number == number]
    if not found:
        raise KeyError(f"study {study.study_name} has no trial {number}")
    return found[0]


def trial_id(frozen: optuna.trial.FrozenTrial) -> int:
    """The storage's id of a trial. Optuna's public `Trial(study, id)` and its storages'
    heartbeats take it, and only the private `FrozenTrial._trial_id` gives it (pinned by
    tests/sweeps/test_study.py)."""
    return frozen._trial_id


@dataclass
class SweepTrial:
    trial: optuna.Trial
    study: optuna.Study
    job_dir: Path
    retried: int | None  # the lost trial this one runs again (the first, if lost repeatedly)

    @classmethod
    def of_job(cls) -> SweepTrial | None:
        """This job's trial, if Hydra runs it as a sweep's job; None otherwise."""
        if not HydraConfig.initialized():
            return None
        hydra = HydraConfig.get()
        number = OmegaConf.select(hydra, "sweeper.trial", default=None)
        if number is None:
            return None
        import optuna  # here: a training outside a sweep does without its import time

        pruner = instantiate(hydra.sweeper.pruner)
        study = optuna.load_study(
            study_name=str(hydra.sweeper.study_name),
            storage=storage_at(storage_url(hydra.sweeper, hydra.sweep.dir)),
            pruner=pruner,
        )
        frozen = frozen_trial(study, int(number))
        retried = optuna.storages.RetryFailedTrialCallback.retried_trial_number(frozen)
        trial = optuna.trial.Trial(study, trial_id(frozen))
        return cls(trial, study, Path(hydra.runtime.output_dir), retried)

    def report(self, record: EpochRecord) -> bool:
        """Report the epoch's dev accuracy; whether the pruner stops the trial here. Not cut
        by Ctrl-C: a write to an SQLite study cut midway would keep it locked."""
        with interrupts_deferred("the epoch was reported to the trial"):
            self.trial.report(record.dev_accuracy, record.epoch)
            return self.trial.should_prune()

    def prune(self) -> None:
        """Tell the study this trial was pruned (its run and outputs are complete)."""
        import optuna

        with interrupts_deferred("the trial was told it was pruned"):
            self.study.tell(self.trial, state=optuna.trial.TrialState.PRUNED)

    def restart_tags(self, resumed_epochs: int) -> dict[str, str]:
        """For a retry that goes on from the lost trial's checkpoint, say so; for one that
        found none here (it is on the machine whose worker was lost), say why it starts over."""
        if self.retried is None:
            return {}
        if resumed_epochs:
            print(f"train: trial {self.trial.number} goes on from trial {self.retried}'s epoch "
                  f"{resumed_epochs + 1}")  # fmt: skip
            return {}
        return {"restarted": f"no checkpoint of trial {self.retried} on "
                f"{socket.gethostname()}: trained from epoch 1"}  # fmt: skip

    @property
    def checkpoint(self) -> Path:
        """In the sweep's folder, under the trial it retries: a retry on this machine goes
        on from the lost trial's last epoch."""
        origin = self.retried if self.retried is not None else self.trial.number
        return self.job_dir.parent / "checkpoints" / f"trial-{origin}.npz"

    @property
    def parent_run_id(self) -> str | None:
        return self.study.user_attrs.get(PARENT_ATTR)

    @property
    def tags(self) -> dict[str, str]:
        tags = {
            TRIAL_TAG: str(self.trial.number),
            STUDY_TAG: self.study.study_name,
            WORKER_TAG: f"{socket.gethostname()}:{os.getpid()}",
        }
        if self.retried is not None:
            tags[RETRIED_TAG] = str(self.retried)
        return tags


DATA_FILES = (SPLIT_TRAIN, SPLIT_DEV, NORMALISED_TEST)  # what every job reads
_loaded: dict[tuple, tuple[dict, dict, dict]] = {}  # the data this process holds, one entry


def job_data() -> tuple[dict, dict, dict]:
    """The train, dev and test arrays, read once per sweep (the sweeper reads them before it
    starts its workers, which inherit them) and kept, read-only, while the files stay the
    same (inode, size, modification time)."""
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
        if key is not None:
            _loaded[key] = (train, dev, test)
        return train, dev, test
    return _loaded[key]
