"""The job's side of a sweep (pipeline/sweeps/trial.py) against a real Optuna study on SQLite:
the one private use the sweeps make (a trial's storage id) still reaches the trial, and a
report the pruner must stop is stopped, and told PRUNED."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from pipeline.nn import EpochRecord
from pipeline.sweeps.trial import SweepTrial, frozen_trial, trial_id

# Optuna calls its retry callback "experimental"; the sweeps silence that (storage.quiet_optuna).
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def record(epoch: int, dev_accuracy: float) -> EpochRecord:
    return EpochRecord(epoch, 0.5, 0.8, 0.5, dev_accuracy, 0.001, 0.1)


def study_at(tmp_path: Path, pruner) -> optuna.Study:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    return optuna.create_study(storage=storage, direction="maximize", pruner=pruner)


def test_a_trials_storage_id_reaches_it_through_optunas_public_trial(tmp_path):
    """`FrozenTrial._trial_id` is private: if Optuna renames or renumbers it, this fails."""
    study = study_at(tmp_path, optuna.pruners.NopPruner())
    study.ask()  # another trial first: ids and numbers need not agree
    asked = study.ask()
    reached = optuna.trial.Trial(study, trial_id(frozen_trial(study, asked.number)))
    reached.report(0.5, 1)
    assert reached.number == asked.number == 1
    assert frozen_trial(study, 1).intermediate_values == {1: 0.5}


def test_a_trial_the_median_pruner_must_stop_is_stopped_and_told_pruned(tmp_path):
    study = study_at(tmp_path, optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0))
    good = study.ask()
    for epoch in (1, 2):
        good.report(0.9, epoch)
    study.tell(good, 0.9)
    job = SweepTrial(study.ask(), study, tmp_path / "1", retried=None)
    assert job.report(record(1, 0.10)) is True  # below the median: the pruner stops it here
    job.prune()
    pruned = frozen_trial(study, 1)
    assert pruned.state == TrialState.PRUNED and pruned.intermediate_values == {1: 0.1}
    above = SweepTrial(study.ask(), study, tmp_path / "2", retried=None)
    assert above.report(record(1, 0.95)) is False  # above it: goes on
    assert job.checkpoint == tmp_path / "checkpoints" / "trial-1.npz"
    assert job.tags(0)["optuna.trial"] == "1" and "restarted" not in job.tags(0)


def test_a_retried_trial_keeps_the_checkpoint_of_the_one_it_runs_again(tmp_path):
    study = study_at(tmp_path, optuna.pruners.NopPruner())
    lost = study.ask()
    study.tell(lost, state=TrialState.FAIL)
    optuna.storages.RetryHeartbeatStaleTrialCallback()(study, frozen_trial(study, lost.number))
    again = study.ask()
    retried = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(
        frozen_trial(study, again.number)
    )
    job = SweepTrial(again, study, tmp_path / "1", retried)
    assert retried == 0 and job.checkpoint == tmp_path / "checkpoints" / "trial-0.npz"
    assert job.tags(0)["restarted"].startswith("no checkpoint of trial 0 on ")
    assert "restarted" not in job.tags(5) and job.tags(5)["optuna.retried_trial"] == "0"
