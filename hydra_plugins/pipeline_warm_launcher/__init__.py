"""Hydra's entry point for `hydra/launcher: warm`: sweep jobs in workers forked from the
launcher once it has loaded what every job needs. Hydra finds launchers only in the
`hydra_plugins` package, so this module registers the config and hands the work to
pipeline/sweeps/warm.py.

    python -m pipeline.train -m hydra/launcher=warm hydra.launcher.n_jobs=2 optimizer=sgd,adam
"""

from collections.abc import Sequence
from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher


@dataclass
class WarmLauncherConf:
    _target_: str = "hydra_plugins.pipeline_warm_launcher.WarmLauncher"
    n_jobs: int = 2  # worker processes, forked once per sweep; each runs one job at a time


ConfigStore.instance().store(
    group="hydra/launcher", name="warm", node=WarmLauncherConf, provider="pipeline"
)


class WarmLauncher(Launcher):
    def __init__(self, n_jobs: int = 2) -> None:
        from pipeline.sweeps.warm import WarmPool

        self.pool = WarmPool(n_jobs)
        self.config = self.hydra_context = self.task_function = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        from pipeline.sweeps.warm import launch_jobs

        return launch_jobs(self, job_overrides, initial_job_idx)
