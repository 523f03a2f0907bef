"""Hydra's entry point for `hydra/sweeper: study` (conf/hydra/sweeper/study.yaml), the sweeper
of every multirun. Hydra finds sweepers only in the `hydra_plugins` package; the work is in
pipeline/sweeps/study.py.

    python -m pipeline.train -m optimizer=sgd,adam
    python -m pipeline.train -m sweep=optuna
"""

from typing import Any

from hydra.plugins.sweeper import Sweeper


class StudySweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        self.settings = settings  # hydra.sweeper, with its sampler and pruner configs

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.hydra_context, self.task_function, self.config = hydra_context, task_function, config

    def sweep(self, arguments: list[str]) -> None:
        from pipeline.sweeps.study import sweep  # optuna is slow to import: only in a sweep

        sweep(self, arguments)
