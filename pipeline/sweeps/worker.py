"""A sweep's worker process: ask the study for a trial, run its job, tell the study how it
ended, and ask again at once; no worker waits for another. It joins the study first (its join
number seeds its sampler, so that workers propose different trials), then loops:

    ask    under the study's lock: fail trials whose heartbeat went silent (queued again), stop
           if the study has ended or holds n_trials, else ask (a queued trial comes first)
    run    the job through Hydra's own run_job, its config naming the trial
           (`hydra.sweeper.trial`), heartbeats recorded meanwhile
    tell   COMPLETE with the objective (a pruned job told PRUNED itself); FAIL for a diverged
           training, and the study goes on; FAIL for any other error, which every trial would
           hit (a bad config, missing data), and the study ends FAILED

Ctrl-C or SIGTERM fails the running trial, queues it again and ends the worker with 130.
"""

from __future__ import annotations

import _thread
import os
import signal
import socket
import sys
import threading
import time

import optuna
from hydra.core.utils import run_job
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict
from optuna.trial import TrialState

from pipeline.plumbing.errors import PipelineError, interrupt_on_sigterm, interrupts_deferred
from pipeline.sweeps.storage import Attr, database_lock, heartbeats
from pipeline.sweeps.trial import frozen_trial, trial_id
from pipeline.training.trainer import TrainingFailed

INTERRUPTED, STUDY_FAILED = 130, 3  # a worker's exit codes besides 0 and 1


class StudyFailed(PipelineError):
    """A trial failed in a way every trial would: the study has ended FAILED."""


def work(sweep) -> None:
    """A forked worker's whole life (`sweep`: the sweeper's study.Study); ends the process."""
    code = 0
    try:
        watch_sweeper(os.getppid())
        interrupt_on_sigterm()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        study = join(sweep)
        while (trial := next_trial(sweep, study)) is not None:
            run_trial(sweep, study, trial)
    except KeyboardInterrupt:
        code = INTERRUPTED
        if os.getppid() != sweep.pid:  # nobody else is left to end the sweep
            orphaned(sweep)
    except StudyFailed:
        code = STUDY_FAILED
    except Exception as error:  # the database gone: the sweeper says so with the exit code
        cause = error.__cause__ or error  # Optuna's storage error says less than its cause
        print(f"sweep: worker {os.getpid()}: {type(cause).__name__}: {cause}", file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def join(sweep) -> optuna.Study:
    with database_lock(sweep.storage.engine, f"study {sweep.name}"):
        study = optuna.load_study(study_name=sweep.name, storage=sweep.storage)
        number = study.user_attrs.get(Attr.WORKERS, 0)
        study.set_user_attr(Attr.WORKERS, number + 1)
    settings = OmegaConf.to_container(sweep.settings["sampler"], resolve=True)
    if settings["_target_"] == "optuna.samplers.GridSampler":
        # One order for all: the grid's points are numbered by it, and each is run once.
        settings["search_space"] = sweep.space.grid
    elif settings.get("seed") is not None:
        settings["seed"] += number  # each worker proposes its own trials
    return optuna.load_study(
        study_name=sweep.name, storage=sweep.storage, sampler=instantiate(settings),
        pruner=instantiate(sweep.settings["pruner"]),
    )  # fmt: skip


def next_trial(sweep, study: optuna.Study) -> optuna.Trial | None:
    """The trial this worker runs next, or None once the study needs no more; waits while the
    last trials run elsewhere, in case one is lost and queued again."""
    while True:
        with (
            database_lock(sweep.storage.engine, f"study {sweep.name}"),
            interrupts_deferred("the study was asked for a trial"),
        ):
            optuna.storages.fail_stale_trials(study)
            if study.user_attrs.get(Attr.ENDED):
                return None
            trials = study.get_trials(deepcopy=False)
            ended = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
            ended += sum(t.state == TrialState.FAIL and Attr.ERROR in t.user_attrs for t in trials)
            running = sum(t.state == TrialState.RUNNING for t in trials)
            if ended + running < sweep.n_trials:
                trial = study.ask(sweep.space.distributions)
                trial.set_user_attr(Attr.WORKER, f"{socket.gethostname()}:{os.getpid()}")
                # Lost from now on if this worker goes silent (a trial never beaten is not).
                sweep.storage.record_heartbeat(trial_id(frozen_trial(study, trial.number)))
                return trial
        if running == 0:
            return None
        time.sleep(min(sweep.settings["heartbeat_interval"], 2))


def run_trial(sweep, study: optuna.Study, trial: optuna.Trial) -> None:
    """Run `trial`'s job and tell the study how it ended."""
    sweeper = sweep.sweeper
    config = sweeper.hydra_context.config_loader.load_sweep_config(
        sweep.config, sweep.space.overrides(trial.params)
    )
    with open_dict(config):
        config.hydra.job.id = f"{sweep.name}_{trial.number}"
        config.hydra.job.num = trial.number
        config.hydra.sweeper.trial = trial.number
    identity = trial_id(frozen_trial(study, trial.number))
    try:
        with heartbeats(sweep.storage, identity, sweep.settings["heartbeat_interval"]):
            returned = run_job(
                hydra_context=sweeper.hydra_context, task_function=sweeper.task_function,
                config=config, job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir",
            )  # fmt: skip
    except BaseException:  # Ctrl-C, SIGTERM, the sweeper gone: no trial left RUNNING, and
        if tell(study, trial, TrialState.FAIL):  # it runs again from its checkpoint (storage.py)
            stopped = sweep.storage.get_heartbeat_stale_trial_callback()
            stopped(study, frozen_trial(study, trial.number))
        raise KeyboardInterrupt from None
    try:
        value = float(returned.return_value)  # raises the job's own exception, if any
    except TrainingFailed as diverged:  # this trial's outcome; the study goes on
        trial.set_user_attr(Attr.ERROR, str(diverged)[:1000])
        tell(study, trial, TrialState.FAIL)
    except Exception as error:
        reason = f"trial {trial.number} failed: {error}"
        trial.set_user_attr(Attr.ERROR, reason[:1000])
        tell(study, trial, TrialState.FAIL)
        study.set_user_attr(Attr.ENDED, f"FAILED: {reason}")
        raise StudyFailed(reason) from None
    else:
        tell(study, trial, TrialState.COMPLETE, [value])


def tell(study: optuna.Study, trial, state: TrialState, values=None) -> bool:
    """Tell how `trial` ended, unless it was told already (a pruned job tells it PRUNED
    itself, trial.py); whether this did."""
    with interrupts_deferred("the study was told how the trial ended"):
        if frozen_trial(study, trial.number).state != TrialState.RUNNING:
            return False
        try:
            study.tell(trial, state=state, values=values)
        except RuntimeError as error:  # the grid sampler's Study.stop, outside optimize;
            if "Study.stop" not in str(error):  # the trial's state is stored before it
                raise
    return True


def orphaned(sweep) -> None:
    """End the study and its parent run KILLED, its sweeper gone (a shared one goes on)."""
    study = optuna.load_study(study_name=sweep.name, storage=sweep.storage)
    if study.user_attrs.get(Attr.SHARED):
        return
    if not study.user_attrs.get(Attr.ENDED):
        study.set_user_attr(Attr.ENDED, "KILLED: the sweeper process ended")
    if study.user_attrs.get(Attr.PARENT):
        from pipeline.sweeps.parent import end_unfinished

        end_unfinished(study.user_attrs[Attr.PARENT], "KILLED", "the sweeper process ended")


def watch_sweeper(sweeper_pid: int) -> None:
    """Interrupt this worker, as SIGTERM would, once its sweeper process is gone."""

    def watch() -> None:
        while os.getppid() == sweeper_pid:
            time.sleep(0.25)  # a worker outlives its killed sweeper by this much at most
        _thread.interrupt_main(signal.SIGTERM)

    threading.Thread(target=watch, name="sweeper-watch", daemon=True).start()
