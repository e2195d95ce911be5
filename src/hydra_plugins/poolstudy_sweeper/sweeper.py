"""Thin Hydra plugin class; the logic lives in poolstudy.hpo.sweeper."""

from typing import Any, List, Optional

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from .config import FairOptunaSweeperConf  # noqa: F401  (registers the config schema)


class FairOptunaSweeper(Sweeper):
    def __init__(self, sampler: Any, pruner: Any, direction: str, storage: str, study_prefix: str, n_trials: int,
                 n_jobs: int, max_failure_fraction: float, final_seeds: int, extend: bool,
                 params: Optional[DictConfig], grid: Optional[DictConfig] = None) -> None:
        from poolstudy.hpo.sweeper import FairOptunaSweeperImpl

        self.sweeper = FairOptunaSweeperImpl(sampler, direction, storage, study_prefix, n_trials, n_jobs, params,
                                             pruner, max_failure_fraction, final_seeds, extend, grid)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> None:
        return self.sweeper.sweep(arguments)
