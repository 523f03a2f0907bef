"""One Optuna study shared by many sweep workers: the same command, started on N machines (or
as N processes), joins one study in a database, and the study runs `n_trials` trials in all.

    export PIPELINE_OPTUNA_STORAGE=postgresql+psycopg2://USER:PASSWORD@HOST:PORT/optuna
    python -m pipeline.train -m sweep=optuna_shared tracking.uri=http://HOST:5050   # per worker
    make shared-sweep WORKERS=2                                 # N workers on this machine

How the workers agree, each step under a lock on the study (a PostgreSQL advisory lock, or a
file lock beside an SQLite file on one machine):
- The first worker creates the study and the MLflow parent run, and stores the parent's id in
  the study; the others find it there. A worker whose search differs is refused.
- Before each ask, a worker counts the study's trials that ended (COMPLETE, or FAIL by the
  job's own error) or are running, and asks only while they are fewer than n_trials.
- A worker records a heartbeat for its running trials every `heartbeat_interval` s. A trial
  silent for `grace_period` s (its worker killed, its machine gone) is failed by the next worker
  that asks (Optuna's fail_stale_trials), its MLflow run ends FAILED, and the trial is queued
  again with the same parameters (Optuna's RetryHeartbeatStaleTrialCallback). A worker stopped
  by Ctrl-C or SIGTERM does the same for its own trials at once.
- A worker with nothing left to ask waits for the trials running elsewhere; the one that sees
  the last trial end ends the parent run with the best child. A worker started later resumes
  the study, or says it has ended.

Each worker seeds its sampler with the configured seed plus its join number, so that workers do
not propose the same trials; which worker asks when is not reproducible, but every trial's
training is (its config is in its run: `python -m pipeline.reproduce RUN_ID`).
"""

from __future__ import annotations

import json
import math
import os
import socket
import sys
import time
import warnings

import optuna
from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper._impl import (
    OptunaSweeperImpl,
    create_params_from_overrides,
)
from omegaconf import OmegaConf
from optuna.distributions import _convert_old_distribution_to_new_distribution as current_kind
from optuna.trial import TrialState

from pipeline.plumbing.errors import PipelineError, without_password
from pipeline.sweeps.callback import (
    PARENT_ENV,
    STUDY_ENV,
    WORKER_ENV,
    finish_parent,
    start_parent,
    tracking_of,
)
from pipeline.sweeps.lost_trials import PARENT_ATTR, LostTrial, outage
from pipeline.sweeps.study_storage import database_lock, heartbeats, open_storage
from pipeline.tracking.tags import RETRIED_TRIAL_ENV, SHARED_TRIAL_ENV, STUDY_TAG

SEARCH_ATTR, WORKERS_ATTR, ENDED_ATTR = "search", "workers_joined", "ended"
ERROR_ATTR, WORKER_ATTR = "error", "worker"  # trial user attributes
GRID = "optuna.samplers.GridSampler"
_current: SharedStudy | None = None  # this process's, for release_own_trials


class SharedStudy(OptunaSweeperImpl):
    """Hydra's Optuna sweeper, with a loop that shares one study among many workers."""

    def __init__(self, *, sampler, storage, heartbeat_interval, grace_period, max_retry, **rest):
        super().__init__(
            sampler, storage=storage, search_space=None, custom_search_space=None, **rest
        )
        self.sampler_config = sampler
        self.heartbeat_interval, self.grace_period = heartbeat_interval, grace_period
        self.max_retry = max_retry
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def sweep(self, arguments: list[str]) -> None:
        try:
            self.run_study(arguments)
        except Exception as error:
            failed = outage(error, self.storage)
            if failed is None:
                raise
            raise PipelineError(
                f"{failed}; start this worker again once it answers: the study resumes where it was"
            ) from None

    def run_study(self, arguments: list[str]) -> None:
        global _current
        # Hydra's sweeper passes Optuna's pre-3.0 distributions and every TPE option, and the
        # heartbeat API is "experimental": warnings about Optuna's own API, not the user's run.
        warnings.filterwarnings("ignore", category=FutureWarning, module="optuna|hydra_plugins")
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        self._process_searchspace_config()
        search = [*self._parse_sweeper_params_config(), *arguments]  # in order: the last wins
        distributions, fixed = create_params_from_overrides(search)
        for name in fixed:
            distributions.pop(name, None)
        grid = None
        if self.sampler_config._target_ == GRID:
            grid = {name: self._to_grid_sampler_choices(d) for name, d in distributions.items()}
            self.n_trials = min(self.n_trials, math.prod(len(values) for values in grid.values()))
        # Hydra builds Optuna's pre-3.0 kinds; a trial queued again (RetryHeartbeatStale…) is
        # stored with today's, and a study refuses two kinds for one parameter.
        distributions = {name: current_kind(d) for name, d in distributions.items()}
        self.study_name = str(self.study_name)
        self.storage = open_storage(
            self.storage, self.heartbeat_interval, self.grace_period, LostTrial(self.max_retry)
        )
        # What decides the trials' results; where they are logged may differ per worker.
        trial_settings = sorted(
            item for item in search if not item.startswith(("tracking.", "sweep="))
        )
        fingerprint = json.dumps(
            {"search": trial_settings, "n_trials": self.n_trials, "direction": str(self.direction),
             "sampler": self.sampler_config._target_}, sort_keys=True,
        )  # fmt: skip
        with self.locked():
            number = self.join(fingerprint)
            parent = self.parent_run()
        sampler = self.make_sampler(number, grid)
        self.study = optuna.load_study(
            study_name=self.study_name, storage=self.storage, sampler=sampler
        )
        _current = self
        os.environ.update({STUDY_ENV: self.study_name, WORKER_ENV: self.worker})
        if parent is not None:
            os.environ[PARENT_ENV] = parent
        print(f"sweep: worker {number + 1} ({self.worker}) of study {self.study_name} in "
              f"{without_password(self.storage.url)}, {self.n_trials} trials in all")  # fmt: skip
        waiting_said = False
        while True:
            with self.locked():
                asked, running = self.next_trials()
            if asked is None:
                return
            if not asked:
                if not waiting_said:
                    print(f"sweep: nothing left to ask; waiting for {running} trial(s) running "
                          "on other workers")  # fmt: skip
                    waiting_said = True
                time.sleep(min(self.heartbeat_interval, 5))
                continue
            self.run_trials(asked, distributions, fixed)

    def locked(self, timeout: float = -1):
        return database_lock(self.storage.engine, f"study {self.study_name}", timeout)

    def join(self, fingerprint: str) -> int:
        """Create the study or join it; return how many workers joined it before this one."""
        try:
            study = optuna.load_study(study_name=self.study_name, storage=self.storage)
        except KeyError:
            study = optuna.create_study(
                study_name=self.study_name, storage=self.storage,
                directions=self._get_directions(), load_if_exists=False,
            )  # fmt: skip
            study.set_user_attr(SEARCH_ATTR, fingerprint)
        started = study.user_attrs.get(SEARCH_ATTR)
        if started != fingerprint:
            raise PipelineError(
                f"study {self.study_name} was started with another search "
                f"({differences(started, fingerprint)}); start every worker with the same "
                "overrides, or give this search its own hydra.sweeper.study_name"
            )
        number = study.user_attrs.get(WORKERS_ATTR, 0)
        study.set_user_attr(WORKERS_ATTR, number + 1)
        self.study = study
        return number

    def parent_run(self) -> str | None:
        """The study's MLflow parent run: the first worker starts it, the others find it."""
        if not tracking_of(self.config).enabled:
            return None
        import mlflow  # the callback opened the store

        parent = self.study.user_attrs.get(PARENT_ATTR)
        if parent is None:
            storage = without_password(self.storage.url)
            tags = {STUDY_TAG: self.study_name, "optuna.storage": storage}
            preset = OmegaConf.select(self.config, "hydra.runtime.choices.sweep") or "shared"
            parent = start_parent(self.config, f"sweep {preset} {self.study_name}", tags)
            self.study.set_user_attr(PARENT_ATTR, parent)
            return parent
        try:
            mlflow.MlflowClient().get_run(parent)
        except Exception:
            raise PipelineError(
                f"study {self.study_name}'s parent run {parent} is not in "
                f"{mlflow.get_tracking_uri()}; start every worker with the same tracking.uri "
                "and tracking.experiment"
            ) from None
        print(f"sweep: MLflow parent run {parent} (the study's)")
        return parent

    def next_trials(self) -> tuple[list[optuna.Trial] | None, int]:
        """Under the lock: fail lost trials, then ask what is left for this worker (None: the
        study has ended), and say how many trials are running."""
        with warnings.catch_warnings():  # Optuna warns that heartbeats are for its own loop
            warnings.simplefilter("ignore")
            optuna.storages.fail_stale_trials(self.study)
        trials = self.study.get_trials(deepcopy=False)
        ended = self.study.user_attrs.get(ENDED_ATTR)
        if ended:  # by another worker, or before this one started
            if ended != "FINISHED":
                raise PipelineError(f"study {self.study_name} has ended {ended}")
            print(f"sweep: study {self.study_name} has ended FINISHED")
            return None, 0
        complete = sum(t.state == TrialState.COMPLETE for t in trials)
        errors = sum(t.state == TrialState.FAIL and ERROR_ATTR in t.user_attrs for t in trials)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        if errors > self.max_failure_rate * self.n_trials:
            reason = (f"{errors} of its trials failed (max_failure_rate={self.max_failure_rate} "
                      f"of {self.n_trials} trials)")  # fmt: skip
            self.end_study("FAILED", reason)
            raise PipelineError(f"study {self.study_name} ended FAILED: {reason}")
        free = self.n_trials - complete - errors - running
        if free <= 0 and running == 0:
            self.end_study("FINISHED")
            return None, 0
        asked = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(max(0, min(free, self.n_jobs))):
                trial = self.study.ask()  # a trial queued again comes first
                trial.set_user_attr(WORKER_ATTR, self.worker)
                self.storage.record_heartbeat(trial._trial_id)  # lost from now on if silent
                asked.append(trial)
        return asked, running

    def run_trials(self, asked: list[optuna.Trial], distributions, fixed) -> None:
        overrides = self._configure_trials(asked, distributions, fixed)
        overrides = [
            (*trial_overrides, f"hydra.sweep.subdir=trial-{trial.number}",
             f"+hydra.job.env_set.{SHARED_TRIAL_ENV}={trial.number}",
             f"+hydra.job.env_set.{RETRIED_TRIAL_ENV}={self.retried_trial(trial)}")
            for trial_overrides, trial in zip(overrides, asked, strict=True)
        ]  # fmt: skip
        with heartbeats(
            self.storage, [trial._trial_id for trial in asked], self.heartbeat_interval
        ):
            returns = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
        self.job_idx += len(returns)
        for trial, returned in zip(asked, returns, strict=True):
            try:
                value = float(returned.return_value)  # raises the job's own error, if any
            except Exception as error:
                trial.set_user_attr(ERROR_ATTR, f"{type(error).__name__}: {error}"[:1000])
                self.tell(trial, TrialState.FAIL, None)
                print(f"sweep: trial {trial.number} failed: {error}", file=sys.stderr)
            else:
                self.tell(trial, TrialState.COMPLETE, [value])

    def retried_trial(self, trial: optuna.Trial) -> str:
        """The number of the lost trial `trial` runs again (Optuna's retry callback records
        the first of a chain of retries), or "" for a trial of its own."""
        frozen = self.storage.get_trial(trial._trial_id)
        number = optuna.storages.RetryFailedTrialCallback.retried_trial_number(frozen)
        return "" if number is None else str(number)

    def tell(self, trial, state, values) -> None:
        try:
            self.study.tell(trial, state=state, values=values)
        except RuntimeError as error:  # the grid sampler's Study.stop, outside study.optimize
            if "Study.stop" not in str(error):
                raise

    def end_study(self, status: str, reason: str | None = None) -> None:
        ended = f"{status}: {reason}" if reason else status
        self.study.set_user_attr(ENDED_ATTR, ended)
        parent = os.environ.get(PARENT_ENV)
        if parent:
            finish_parent(parent, status, reason)
        print(f"sweep: study {self.study_name} ended {ended}")

    def make_sampler(self, worker_number: int, grid: dict | None):
        settings = OmegaConf.to_container(self.sampler_config, resolve=True)
        settings.pop("_partial_", None)
        if settings.get("seed") is not None:
            settings["seed"] += worker_number  # each worker proposes its own trials
        if grid is not None:
            settings["search_space"] = grid
        return instantiate(settings)


def differences(started: str | None, mine: str) -> str:
    """How this worker's search differs from the one the study was started with."""
    if started is None:
        return "the study was not made by this sweeper"
    there, here = json.loads(started), json.loads(mine)
    said = []
    for key in sorted(set(there) | set(here)):
        if key == "search":
            for whose, items in (("the study's", set(there[key]) - set(here[key])),
                                 ("this worker's", set(here[key]) - set(there[key]))):  # fmt: skip
                if items:
                    said.append(f"only {whose}: {' '.join(sorted(items))}")
        elif there.get(key) != here.get(key):
            said.append(f"{key} {there.get(key)} in the study, {here.get(key)} here")
    return "; ".join(said)


def release_own_trials(reason: str) -> str:
    """This worker is stopping (ending.py): fail its running trials, queue them again and end
    their runs FAILED; the study and its parent run go on."""
    sweeper = _current
    if sweeper is None:
        return "no trial of the shared study was running here"
    lost = sweeper.storage.get_heartbeat_stale_trial_callback()  # as for a silent trial
    released = []
    try:
        with sweeper.locked(timeout=10):  # the main thread may hold it, stuck
            running = sweeper.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            for trial in running:
                if trial.user_attrs.get(WORKER_ATTR) != sweeper.worker:
                    continue
                sweeper.storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
                lost(sweeper.study, sweeper.storage.get_trial(trial._trial_id))
                released.append(str(trial.number))
    except Exception as error:  # the database or store is gone: heartbeats settle it later
        return (
            f"this worker's trials could not be released ({type(error).__name__}); the next "
            f"worker to ask fails them {sweeper.grace_period} s after their last heartbeat"
        )
    if not released:
        return f"no trial of study {sweeper.study_name} was running here; the study goes on"
    return (
        f"trial(s) {', '.join(released)} of study {sweeper.study_name} FAILED and queued again "
        f"({reason}); the study and its parent run go on"
    )
