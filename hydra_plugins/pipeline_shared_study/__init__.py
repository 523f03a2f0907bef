"""Hydra's entry point for `hydra/sweeper: shared_optuna`: one Optuna study shared by many
sweep workers (machines or processes). Hydra finds sweepers only in the `hydra_plugins`
package, so this module registers the config and hands the work to pipeline/sweeps/shared.py.

    python -m pipeline.train -m sweep=optuna_shared      # on each machine, with the same storage
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from omegaconf import MISSING


@dataclass
class SharedOptunaSweeperConf:
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}])
    _target_: str = "hydra_plugins.pipeline_shared_study.SharedOptunaSweeper"
    _recursive_: bool = False  # the sampler is built per worker, with the worker's seed
    sampler: Any = MISSING  # a hydra/sweeper/sampler config (tpe, random, grid, …)
    direction: Any = "maximize"  # of the job's return value
    storage: Any = None  # the study's database URL: PostgreSQL, or SQLite for one machine
    study_name: Any = None  # the study every worker joins
    n_trials: int = 8  # trials in the whole study, over all workers
    n_jobs: int = 1  # trials this worker runs at a time
    max_failure_rate: float = 0.0  # of trials whose job failed, before the study ends FAILED
    params: Any = None  # the search space, as for hydra/sweeper: optuna
    heartbeat_interval: int = 10  # seconds between a running trial's heartbeats
    grace_period: int = 30  # seconds without a heartbeat after which a trial counts as lost
    max_retry: int = 3  # times a lost trial (its worker killed) is run again


ConfigStore.instance().store(
    group="hydra/sweeper", name="shared_optuna", node=SharedOptunaSweeperConf, provider="pipeline"
)


class SharedOptunaSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        from pipeline.sweeps.shared import SharedStudy  # optuna is slow to import: only here

        self.sweeper = SharedStudy(**settings)

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        return self.sweeper.sweep(arguments)
