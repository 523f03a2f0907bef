"""Every Hydra multirun as one Optuna study, run by `n_jobs` forked worker processes.

    python -m pipeline.train -m optimizer=sgd,adam model.hidden=[128],[256]   # a grid
    python -m pipeline.train -m sweep=optuna            # TPE, median pruning, 2 workers
    python -m pipeline.train -m sweep=optuna_shared     # one study, many machines

The sweeper (hydra_plugins/pipeline_sweeper; conf/hydra/sweeper/) parses the search (space.py),
opens the study's database (storage.py: SQLite in the sweep's folder, or a shared one), creates
or joins the study and its MLflow parent run (parent.py), reads the data once and forks its
workers (worker.py), then ends the study. Stopped (Ctrl-C, SIGTERM, a dead worker), it leaves no
trial or run RUNNING; started again in the same folder, a stopped study goes on.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import signal
import socket
import sys
import time
from multiprocessing.connection import wait
from pathlib import Path

import optuna
from hydra.core.utils import configure_log, setup_globals
from omegaconf import OmegaConf
from optuna.trial import TrialState

from pipeline.plumbing.compute import PARALLEL_JOBS_ENV, pin
from pipeline.plumbing.config import ConfigError
from pipeline.plumbing.errors import PipelineError, interrupt_on_sigterm, without_password
from pipeline.plumbing.phases import phase, start_job, write_phases
from pipeline.sweeps import parent, worker
from pipeline.sweeps.space import SearchSpace
from pipeline.sweeps.storage import (
    Attr,
    database_lock,
    open_storage,
    outage,
    quiet_optuna,
    storage_url,
)
from pipeline.sweeps.trial import trial_id
from pipeline.tracking.tags import STUDY_TAG
from pipeline.training.trainer import sweep_data

WORKER_GRACE = 10  # seconds a stopped worker gets to settle its trial, before SIGKILL
SHARED_NEEDS_STORAGE = (
    "a shared study needs its database: set PIPELINE_OPTUNA_STORAGE to a URL such as "
    "postgresql+psycopg2://USER:PASSWORD@HOST:PORT/optuna (`python -m pipeline.server optuna-url` "
    "prints the local server's), or, on one machine, hydra.sweeper.storage=sqlite:///optuna.db"
)


def say(line: str) -> None:
    print(f"sweep: {line}", file=sys.stderr, flush=True)


def sweep(sweeper, arguments: list[str]) -> None:
    """The sweeper plugin's `sweep`: the whole study, or one line and exit 1 (130 stopped)."""
    start_job()
    interrupt_on_sigterm()
    quiet_optuna()
    study = None
    try:
        study = Study(sweeper, arguments)
        study.run()
    except KeyboardInterrupt as interrupt:
        say(f"stopped ({interrupt or 'Ctrl-C'}) before any trial started")
        raise SystemExit(130) from None
    except (PipelineError, optuna.exceptions.OptunaError) as error:
        say(f"error: {outage(error, getattr(study, 'url', None)) or error}")
        raise SystemExit(1) from None


class Study:
    def __init__(self, sweeper, arguments: list[str]):
        self.sweeper, self.config, self.settings = sweeper, sweeper.config, sweeper.settings
        self.name, self.shared = str(self.settings["study_name"]), bool(self.settings["shared"])
        if self.shared and not self.settings["storage"]:
            raise PipelineError(SHARED_NEEDS_STORAGE)
        self.tracking = parent.tracking_of(self.config).enabled
        self.sweep_dir = Path(str(self.config.hydra.sweep.dir))
        params = [f"{key}={value}" for key, value in (self.settings["params"] or {}).items()]
        self.space = SearchSpace.parse([*params, *arguments])
        self.n_trials = self.budget()
        if int(self.settings["n_jobs"]) < 1:
            raise ConfigError(f"hydra.sweeper.n_jobs={self.settings['n_jobs']} must be ≥ 1")
        self.workers: list = []
        self.parent_id: str | None = None

    def budget(self) -> int:
        """n_trials; for the grid sampler, at most the grid's size (its default)."""
        grid, asked = self.space.grid, self.settings["n_trials"]
        if self.settings["sampler"]["_target_"] != "optuna.samplers.GridSampler":
            if asked is None:
                raise ConfigError("a search with this sampler needs hydra.sweeper.n_trials")
            return int(asked)
        if grid is None:
            raise ConfigError(
                "the grid sampler takes choices only (a,b or choice(a, b)): search ranges with "
                "hydra/sweeper/sampler=tpe (or random) and hydra.sweeper.n_trials"
            )
        size = math.prod(len(values) for values in grid.values())
        return size if asked is None else min(int(asked), size)

    def run(self) -> None:
        pin(self.config.compute, "sweep")  # may restart this process: before any work
        self.url, self.pid = storage_url(self.config.hydra.sweeper, self.sweep_dir), os.getpid()
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        OmegaConf.save(self.config, self.sweep_dir / "multirun.yaml")
        s = self.settings
        self.storage = open_storage(
            self.url, s["heartbeat_interval"], s["grace_period"], s["max_retry"]
        )
        if self.tracking:
            # No pooled connection outlives its use: none is inherited by the forked workers.
            os.environ.setdefault("MLFLOW_SQLALCHEMYSTORE_POOLCLASS", "NullPool")
            from pipeline.tracking.store import open_store
            from pipeline.tracking.training_runs import mark_stale_runs

            mark_stale_runs(open_store(parent.tracking_of(self.config)), "sweep")
        with phase("warm-up"):  # before the parent run: missing data stops nothing midway
            sweep_data()  # read once, before the fork: the workers share the arrays
            if self.tracking:  # what every job's run records, found once for all of them
                from pipeline.tracking.tags import installed_packages
                from pipeline.tracking.training_runs import code_tags_once

                installed_packages()
                code_tags_once()
        with database_lock(self.storage.engine, f"study {self.name}"):
            study = self.create_or_join()
        where = without_password(self.url)
        say(f"study {self.name} in {where}: {self.n_trials} trials, {s['n_jobs']} worker(s) here")
        write_phases("sweep-launcher")  # for `make bench`: the sweeper's start and warm-up
        os.environ.setdefault(PARALLEL_JOBS_ENV, str(s["n_jobs"]))  # jobs share the cores
        self.storage.engine.dispose()  # each worker opens its own connections
        fork = multiprocessing.get_context("fork")
        try:
            for _ in range(s["n_jobs"]):
                self.workers.append(fork.Process(target=worker.work, args=(self,)))
                self.workers[-1].start()
            self.wait(study)
        except KeyboardInterrupt as interrupt:
            self.end(study, "KILLED", f"interrupted ({interrupt or 'Ctrl-C'})", 130)
        except PipelineError as error:
            self.end(study, "FAILED", str(error), 1)
        self.finish(study)

    def create_or_join(self) -> optuna.Study:
        """Create the study, or join it if it exists with the same search: a stopped study
        goes on, its stopped trials queued again."""
        searched = sorted(f"{k}={v}" for k, v in self.space.distributions.items())
        search = json.dumps(
            {"search": [*searched, *sorted(self.space.fixed)], "n_trials": self.n_trials,
             **{key: str(self.settings[key]) for key in ("direction", "shared")},
             **{key: self.settings[key]["_target_"] for key in ("sampler", "pruner")}},
            sort_keys=True,
        )  # fmt: skip
        study = optuna.create_study(
            study_name=self.name, storage=self.storage, load_if_exists=True,
            direction=str(self.settings["direction"]),
        )  # fmt: skip
        if Attr.SEARCH not in study.user_attrs:
            study.set_user_attr(Attr.SEARCH, search)
            study.set_user_attr(Attr.SHARED, self.shared)
        if study.user_attrs[Attr.SEARCH] != search:
            raise PipelineError(
                f"study {self.name} was started with another search "
                f"({differences(study.user_attrs[Attr.SEARCH], search)}); start every worker "
                "with the same overrides, or give this search its own hydra.sweeper.study_name"
            )
        ended = study.user_attrs.get(Attr.ENDED) or ""
        if ended.startswith("KILLED"):
            self.go_on(study)
        elif ended.startswith("FAILED"):
            raise PipelineError(f"study {self.name} has ended {ended}")
        self.parent_id = self.parent_run(study)
        return study

    def go_on(self, study: optuna.Study) -> None:
        """A stopped study goes on: its stopped trials were queued again as they stopped."""
        study.set_user_attr(Attr.ENDED, None)
        if self.tracking and Attr.PARENT in study.user_attrs:
            parent.reopen(study.user_attrs[Attr.PARENT])
        queued = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
        say(f"study {self.name} goes on, {queued} stopped trial(s) first")

    def parent_run(self, study: optuna.Study) -> str | None:
        """The study's MLflow parent run: the first sweeper starts it, the others find it."""
        if not self.tracking or Attr.PARENT in study.user_attrs:
            return parent.reopen(study.user_attrs[Attr.PARENT], True) if self.tracking else None
        preset = OmegaConf.select(self.config, "hydra.runtime.choices.sweep")
        label = self.name if self.shared else f"{self.sweep_dir.parent.name} {self.sweep_dir.name}"
        tags = {STUDY_TAG: self.name, "sweep.dir": str(self.sweep_dir),
                "optuna.storage": without_password(self.url)}  # fmt: skip
        if not self.shared:  # a shared study's parent belongs to no process: it outlives them
            tags.update(host=socket.gethostname(), pid=str(os.getpid()))  # for stale-run marking
        run_id = parent.start(
            self.config, " ".join(["sweep", preset or "", label]).replace("  ", " "), tags
        )
        study.set_user_attr(Attr.PARENT, run_id)
        return run_id

    def wait(self, study: optuna.Study) -> None:
        """Until every worker has ended; a `PipelineError` if one failed. Each pass reads the
        exit codes once: a worker's sentinel closes a moment before its exit code is there,
        and one read between the two would be seen by no check (the sweep waited forever)."""
        while True:
            codes = {process: process.exitcode for process in self.workers}
            for code in codes.values():
                if code == worker.STUDY_FAILED:  # the worker ended the study, saying why
                    ended = study.user_attrs.get(Attr.ENDED, "")
                    raise PipelineError(ended.removeprefix("FAILED: ") or "a trial failed")
                if code not in (None, 0):
                    name = f"{signal.Signals(-code).name}({code})" if code < 0 else str(code)
                    raise PipelineError(f"a worker process died (exit {name})")
            if None not in codes.values():
                return
            ended = wait([process.sentinel for process, code in codes.items() if code is None])
            for process in self.workers:
                if process.sentinel in ended:
                    process.join()  # its exit code, there once it has exited

    def end(self, study: optuna.Study, status: str, reason: str, code: int) -> None:
        """Stop the workers (SIGTERM, then SIGKILL after WORKER_GRACE s), settle this sweep's
        trials and runs, say so, and exit with `code`."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C changes nothing now
        deadline = time.monotonic() + 2  # after Ctrl-C they may be ending by themselves
        while any(w.is_alive() for w in self.workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        for signum in (signal.SIGTERM, signal.SIGKILL):
            alive = [process for process in self.workers if process.is_alive()]
            for process in alive:
                os.kill(process.pid, signum)
            for process in alive:
                process.join(WORKER_GRACE)
        mine = {f"{socket.gethostname()}:{process.pid}" for process in self.workers}
        stopped = []
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if trial.user_attrs.get(Attr.WORKER) in mine:  # a worker killed before it told
                self.storage.set_trial_state_values(trial_id(trial), TrialState.FAIL)
                if status == "KILLED":  # queued again: a stopped study goes on
                    self.storage.get_heartbeat_stale_trial_callback()(study, trial)
                stopped.append(str(trial.number))
        done = [f"{len(self.workers)} worker process(es) stopped, none left"]
        if self.shared and status == "KILLED":  # the study goes on elsewhere
            done.append(f"trial(s) {', '.join(stopped) or 'none'} queued again; the study goes on")
        else:
            study.set_user_attr(
                Attr.ENDED, study.user_attrs.get(Attr.ENDED) or f"{status}: {reason}"
            )
        if self.parent_id:
            if not (self.shared and status == "KILLED"):
                parent.finish(self.parent_id, study, status, reason)
            only = set(stopped) if self.shared and status == "KILLED" else None
            done.append(parent.end_unfinished(self.parent_id, status, reason, only))
        say(f"ended {status} ({reason}): " + "; ".join(done))
        raise SystemExit(code)

    def finish(self, study: optuna.Study) -> None:
        """Every worker is done: end the study and its parent run, if no other sweeper has."""
        with database_lock(self.storage.engine, f"study {self.name}"):
            if study.user_attrs.get(Attr.ENDED):
                say(f"study {self.name} has ended {study.user_attrs[Attr.ENDED]}")
                return
            study.set_user_attr(Attr.ENDED, "FINISHED")
        counts = ", ".join(f"{n} {state}" for state, n in parent.counts(study).items())
        say(f"study {self.name} ended FINISHED: {counts}")
        if self.parent_id:
            parent.finish(self.parent_id, study)


def differences(started: str, mine: str) -> str:
    """How this worker's search differs from the one the study was started with."""
    there, here = json.loads(started), json.loads(mine)
    said = [f"{key} {there.get(key)} in the study, {here.get(key)} here"
            for key in sorted((set(there) | set(here)) - {"search"})
            if there.get(key) != here.get(key)]  # fmt: skip
    study_only, mine_only = (
        set(a["search"]) - set(b["search"]) for a, b in ((there, here), (here, there))
    )
    said += [f"only the study's: {' '.join(sorted(study_only))}"] if study_only else []
    said += [f"only this worker's: {' '.join(sorted(mine_only))}"] if mine_only else []
    return "; ".join(said)
