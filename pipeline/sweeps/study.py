"""Every Hydra multirun as one Optuna study, run by `n_jobs` worker processes (worker.py).

    python -m pipeline.train -m optimizer=sgd,adam model.hidden=[128],[256]   # a grid
    python -m pipeline.train -m sweep=optuna                 # TPE, median pruning, 2 workers
    python -m pipeline.train -m sweep=optuna_shared          # one study, many machines

The sweeper (hydra_plugins/pipeline_sweeper, configured by conf/hydra/sweeper/) reads the search
space in Hydra's override syntax (space.py), opens the study's database (an SQLite file in the
sweep's folder, or `hydra.sweeper.storage` shared by many machines), creates or joins the study
and its MLflow parent run, reads the data once, and forks its workers. Each asks for its next
trial as soon as it is free, so no worker waits for a batch. When they are done the sweeper
ends the study and its parent run (parent.py): best child, counts, figures.

A shared study (`hydra.sweeper.shared`, given a storage): every worker with that storage and name
joins it (a different search is refused), a lost worker's trial is queued again (its heartbeat
goes silent; lost_trials.py), and the sweeper that sees the last trial end ends the study. A
sweep stopped by Ctrl-C or SIGTERM, or whose worker dies, stops its workers and leaves no trial
or run RUNNING; a shared study goes on without this machine's workers.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import signal
import socket
import time
from pathlib import Path

import optuna
from hydra.core.utils import configure_log, setup_globals
from omegaconf import OmegaConf
from optuna.trial import TrialState

from pipeline.plumbing.compute import PARALLEL_JOBS_ENV, pin
from pipeline.plumbing.config import ConfigError
from pipeline.plumbing.errors import PipelineError, interrupt_on_sigterm, without_password
from pipeline.plumbing.phases import phase, start_job, write_phases
from pipeline.sweeps import worker
from pipeline.sweeps.lost_trials import LostTrial, outage
from pipeline.sweeps.parent import end_unfinished, finish_parent, say, start_parent, tracking_of
from pipeline.sweeps.space import SearchSpace
from pipeline.sweeps.study_storage import database_lock, open_storage, quiet_optuna
from pipeline.sweeps.trial import PARENT_ATTR, job_data, storage_url, trial_id
from pipeline.tracking.tags import STUDY_TAG

SEARCH_ATTR = "search"  # the study's user attribute: what decides its trials
WORKER_GRACE = 10  # seconds a stopped worker gets to settle its trial, before SIGKILL


def sweep(sweeper, arguments: list[str]) -> None:
    """The sweeper plugin's `sweep`: the whole study; one line and exit 1 (130 if stopped)
    when it cannot finish."""
    start_job()
    interrupt_on_sigterm()
    quiet_optuna()
    try:
        Study(sweeper, arguments).run()
    except KeyboardInterrupt as interrupt:
        say(f"stopped ({interrupt or 'Ctrl-C'}) before any trial started")
        raise SystemExit(130) from None
    except (PipelineError, optuna.exceptions.OptunaError) as error:
        failed = outage(error, getattr(sweeper, "url", None))
        say(f"error: {failed or error}")
        raise SystemExit(1) from None


class Study:
    def __init__(self, sweeper, arguments: list[str]):
        self.sweeper, self.config = sweeper, sweeper.config
        self.settings = sweeper.settings
        self.tracking = tracking_of(self.config).enabled
        self.shared = bool(self.settings["shared"])
        if self.shared and not self.settings["storage"]:
            raise PipelineError(
                "a shared study needs its database: set PIPELINE_OPTUNA_STORAGE to a URL such as "
                "postgresql+psycopg2://USER:PASSWORD@HOST:PORT/optuna (`python -m pipeline.server "
                "optuna-url` prints the local server's), or, on one machine, "
                "hydra.sweeper.storage=sqlite:///optuna.db"
            )
        self.sweep_dir = Path(str(self.config.hydra.sweep.dir))
        params = self.settings["params"] or {}
        self.space = SearchSpace.parse(
            [*(f"{key}={value}" for key, value in params.items()), *arguments]
        )
        self.n_trials = self.budget()
        self.workers: list[multiprocessing.Process] = []
        self.parent: str | None = None

    def budget(self) -> int:
        grid, asked = self.space.grid, self.settings["n_trials"]
        grid_sampler = self.settings["sampler"]["_target_"] == "optuna.samplers.GridSampler"
        if grid_sampler and grid is None:
            ranges = [
                key for key, d in self.space.distributions.items() if not hasattr(d, "choices")
            ]
            raise ConfigError(
                f"{', '.join(ranges)}: a range, which the grid sampler cannot take: give choices "
                "(a,b,c), or pick hydra/sweeper/sampler=tpe (or random) with hydra.sweeper.n_trials"
            )
        size = 1 if grid is None else max(1, math.prod(len(v) for v in grid.values()))
        if asked is None and grid is None:
            raise ConfigError("a search over ranges needs hydra.sweeper.n_trials (how many trials)")
        return size if asked is None else (min(asked, size) if grid_sampler else int(asked))

    def run(self) -> None:
        pin(self.config.compute, "sweep")  # may restart this process: before any work
        self.url = self.sweeper.url = storage_url(self.config.hydra.sweeper, self.sweep_dir)
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        OmegaConf.save(self.config, self.sweep_dir / "multirun.yaml")
        s = self.settings
        storage = open_storage(
            self.url, s["heartbeat_interval"], s["grace_period"], LostTrial(s["max_retry"])
        )
        name = str(s["study_name"])
        if self.tracking:
            # No pooled database connection outlives its use, so none is inherited by the
            # forked workers (SQLAlchemy's rule: a connection is never shared across a fork).
            os.environ.setdefault("MLFLOW_SQLALCHEMYSTORE_POOLCLASS", "NullPool")
            from pipeline.tracking.store import open_store
            from pipeline.tracking.training_runs import mark_stale_runs

            mark_stale_runs(open_store(tracking_of(self.config)), "sweep")
        self.storage = storage
        with database_lock(storage.engine, f"study {name}"):
            study = self.create_or_join(storage, name)
            self.parent = self.parent_run(study)
        where = without_password(self.url)
        say(f"study {name} in {where}: {self.n_trials} trials, {s['n_jobs']} worker(s) here")
        with phase("warm-up"):
            job_data()  # read once, before the fork: the workers share the arrays
            if self.tracking:  # what every job's run records, found once for all of them
                from pipeline.tracking.tags import installed_packages
                from pipeline.tracking.training_runs import code_tags_once

                installed_packages()
                code_tags_once()
        write_phases("sweep-launcher")  # for `make bench`: the sweeper's start and warm-up
        os.environ.setdefault(PARALLEL_JOBS_ENV, str(s["n_jobs"]))  # jobs share the cores
        storage.engine.dispose()  # each worker opens its own connections
        shared = worker.Sweep(
            storage, name, self.n_trials, self.space, s["sampler"], s["pruner"],
            s["heartbeat_interval"], self.sweeper.hydra_context, self.sweeper.task_function,
            self.config, os.getpid(),
        )  # fmt: skip
        try:
            self.start_workers(shared)
            self.wait(study)
        except KeyboardInterrupt as interrupt:
            self.end(study, "KILLED", f"interrupted ({interrupt or 'Ctrl-C'})", 130)
        except PipelineError as error:
            self.end(study, "FAILED", str(error), 1)
        self.finish(study)

    def create_or_join(self, storage, name: str) -> optuna.Study:
        """Create the study, or join it if it exists with the same search."""
        searched = sorted(f"{k}={v}" for k, v in self.space.distributions.items())
        search = json.dumps(
            {"search": [*searched, *sorted(self.space.fixed)], "n_trials": self.n_trials,
             "direction": str(self.settings["direction"]),
             "sampler": self.settings["sampler"]["_target_"],
             "pruner": self.settings["pruner"]["_target_"]}, sort_keys=True,
        )  # fmt: skip
        direction = str(self.settings["direction"])
        study = optuna.create_study(
            study_name=name, storage=storage, direction=direction, load_if_exists=True
        )
        if SEARCH_ATTR not in study.user_attrs:
            study.set_user_attr(SEARCH_ATTR, search)
            study.set_user_attr(worker.SHARED_ATTR, self.shared)
        if study.user_attrs[SEARCH_ATTR] != search:
            raise PipelineError(
                f"study {name} was started with another search "
                f"({differences(study.user_attrs[SEARCH_ATTR], search)}); start every worker "
                "with the same overrides, or give this search its own hydra.sweeper.study_name"
            )
        ended = study.user_attrs.get(worker.ENDED_ATTR)
        if ended and ended != "FINISHED":
            raise PipelineError(f"study {name} has ended {ended}")
        return study

    def parent_run(self, study: optuna.Study) -> str | None:
        """The study's MLflow parent run: the first sweeper starts it, the others find it."""
        if not self.tracking:
            return None
        parent = study.user_attrs.get(PARENT_ATTR)
        if parent is not None:
            import mlflow

            try:
                mlflow.MlflowClient().get_run(parent)
            except Exception:
                raise PipelineError(
                    f"study {study.study_name}'s parent run {parent} is not in "
                    f"{mlflow.get_tracking_uri()}; start every worker with the same tracking.uri "
                    "and tracking.experiment"
                ) from None
            say(f"MLflow parent run {parent} (the study's)")
            return parent
        preset = OmegaConf.select(self.config, "hydra.runtime.choices.sweep")
        label = (
            study.study_name
            if self.shared
            else f"{self.sweep_dir.parent.name} {self.sweep_dir.name}"
        )
        tags = {STUDY_TAG: study.study_name, "sweep.dir": str(self.sweep_dir),
                "optuna.storage": without_password(self.url)}  # fmt: skip
        if not self.shared:  # a shared study's parent is no process's: it outlives them
            tags.update(host=socket.gethostname(), pid=str(os.getpid()))  # for stale-run marking
        parent = start_parent(
            self.config, " ".join(["sweep", *([preset] if preset else []), label]), tags
        )
        study.set_user_attr(PARENT_ATTR, parent)
        return parent

    def start_workers(self, shared: worker.Sweep) -> None:
        fork = multiprocessing.get_context("fork")
        for _ in range(self.settings["n_jobs"]):
            process = fork.Process(target=worker.work, args=(shared,), daemon=False)
            process.start()
            self.workers.append(process)

    def wait(self, study: optuna.Study) -> None:
        """Until every worker has ended; a `PipelineError` if one failed."""
        from multiprocessing.connection import wait

        while alive := [w for w in self.workers if w.exitcode is None]:
            wait([w.sentinel for w in alive])
            for process in self.workers:
                process.join(0)
                if process.exitcode == worker.STUDY_FAILED:  # the worker ended the study
                    ended = study.user_attrs.get(worker.ENDED_ATTR, "")
                    raise PipelineError(ended.removeprefix("FAILED: ") or "a trial failed")
                if process.exitcode not in (None, 0):
                    raise PipelineError(
                        f"a worker process died (exit {exit_name(process.exitcode)})"
                    )

    def stop_workers(self) -> int:
        """SIGTERM the workers still alive, SIGKILL those alive after WORKER_GRACE seconds."""
        deadline = time.monotonic() + 2  # after Ctrl-C they may be ending by themselves
        while any(w.is_alive() for w in self.workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        for signum in (signal.SIGTERM, signal.SIGKILL):
            alive = [w for w in self.workers if w.is_alive()]
            for process in alive:
                os.kill(process.pid, signum)
            for process in alive:
                process.join(WORKER_GRACE)
        return len(self.workers)

    def end(self, study: optuna.Study, status: str, reason: str, code: int) -> None:
        """Stop the workers, settle this sweep's trials and runs, say so, exit with `code`."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C changes nothing now
        stopped = self.stop_workers()
        names = {f"{socket.gethostname()}:{w.pid}" for w in self.workers}
        lost = self.storage.get_heartbeat_stale_trial_callback()
        released = []
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if self.shared and trial.user_attrs.get(worker.WORKER_ATTR) not in names:
                continue  # another machine's
            self.storage.set_trial_state_values(trial_id(trial), TrialState.FAIL)
            if self.shared and status == "KILLED" and lost is not None:
                lost(study, self.storage.get_trial(trial_id(trial)))  # queued again
            released.append(str(trial.number))
        done = [f"{stopped} worker process(es) stopped, none left"]
        if self.shared and status == "KILLED":
            done.append(f"trial(s) {', '.join(released) or 'none'} FAILED and queued again; the "
                        "study and its parent run go on")  # fmt: skip
            if self.parent:
                done.append(end_unfinished(self.parent, "FAILED", reason, set(released)))
        else:
            if not study.user_attrs.get(worker.ENDED_ATTR):
                study.set_user_attr(worker.ENDED_ATTR, f"{status}: {reason}")
            if self.parent:
                finish_parent(self.parent, study, status, reason)
                done.append(end_unfinished(self.parent, status, reason))
        say(f"ended {status} ({reason}): " + "; ".join(done))
        raise SystemExit(code)

    def finish(self, study: optuna.Study) -> None:
        """Every worker is done: end the study and its parent run, if no other sweeper has."""
        with database_lock(self.storage.engine, f"study {study.study_name}"):
            if study.user_attrs.get(worker.ENDED_ATTR):
                say(f"study {study.study_name} has ended {study.user_attrs[worker.ENDED_ATTR]}")
                return
            study.set_user_attr(worker.ENDED_ATTR, "FINISHED")
        names = {
            TrialState.COMPLETE: "complete",
            TrialState.PRUNED: "pruned",
            TrialState.FAIL: "failed",
        }
        counts = {names[s]: n for s, n in _states(study).items()}
        say(
            f"study {study.study_name} ended FINISHED: "
            + ", ".join(f"{n} {s}" for s, n in counts.items())
        )
        if self.parent:
            finish_parent(self.parent, study)


def _states(study: optuna.Study) -> dict[TrialState, int]:
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    trials = study.get_trials(deepcopy=False)
    return {state: sum(t.state == state for t in trials) for state in states}


def exit_name(code: int) -> str:
    """`SIGKILL(-9)` for a signal, as joblib says it; the number otherwise."""
    return f"{signal.Signals(-code).name}({code})" if code < 0 else str(code)


def differences(started: str, mine: str) -> str:
    """How this worker's search differs from the one the study was started with."""
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
