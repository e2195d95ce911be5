"""Config schema of the fair Optuna sweeper (``hydra/sweeper=poolstudy_optuna``).

Samplers come from hydra-optuna-sweeper's ``hydra/sweeper/sampler`` group (tpe, random,
cmaes, grid, ...) plus ``poolstudy_tpe`` registered here; pruners from ``hydra/sweeper/pruner``
registered here.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class TPESamplerConf:
    """The recipe's TPE (``hydra/sweeper/sampler=poolstudy_tpe``): seed 0, 5 random start-up trials, without the
    arguments optuna >= 4.3 deprecates. hydra-optuna-sweeper's ``tpe`` (Optuna's defaults: 10 start-up
    trials, constant liar on) stays available under its own name."""

    _target_: str = "optuna.samplers.TPESampler"
    seed: Optional[int] = 0
    n_startup_trials: int = 5
    n_ei_candidates: int = 24
    multivariate: bool = False
    constant_liar: bool = False   # for several workers sharing one study


@dataclass
class MedianPrunerConf:
    _target_: str = "optuna.pruners.MedianPruner"
    n_startup_trials: int = 3   # no pruning until this many trials finished
    n_warmup_steps: int = 1     # epochs before a trial may be pruned
    interval_steps: int = 1


@dataclass
class HyperbandPrunerConf:
    _target_: str = "optuna.pruners.HyperbandPruner"
    min_resource: int = 1       # epochs
    max_resource: Any = "auto"
    reduction_factor: int = 3


@dataclass
class NopPrunerConf:
    _target_: str = "optuna.pruners.NopPruner"


@dataclass
class FairOptunaSweeperConf:
    _target_: str = "hydra_plugins.poolstudy_sweeper.sweeper.FairOptunaSweeper"
    # the sweeper builds its samplers itself (one per trial, see poolstudy.hpo.sampling)
    _recursive_: bool = False
    defaults: List[Any] = field(default_factory=lambda: [{"sampler": "poolstudy_tpe"}, {"pruner": "median"}])
    sampler: Any = MISSING
    pruner: Any = MISSING
    direction: str = "maximize"
    # Optuna storage: sqlite:///file.db, postgresql://user:pw@host/db, or journal:file.log
    storage: str = "sqlite:///${hydra.sweep.dir}/optuna.db"
    # Studies are named <prefix><arch>-<downsample type>-<dataset>[-<other grid key><value>...]
    study_prefix: str = ""
    n_trials: int = 20            # budget per study (COMPLETE + PRUNED + FAIL)
    n_jobs: int = 1               # trials launched at once (for parallel launchers)
    max_failure_fraction: float = 0.5   # a study whose failed trials exceed this share of n_trials stops
    final_seeds: int = 5          # best parameters retrained with seeds 0..final_seeds-1, tested once
    extend: bool = False          # allow raising n_trials of existing studies
    # search space; a key set to null is not searched ("++hydra.sweeper.params={model.dropout:null}")
    params: Optional[Dict[str, Optional[str]]] = None
    # the outer grid, as comma lists (one study per cell), for a study kept in a config (conf/experiment/);
    # a key given on the command line replaces its entry here
    grid: Optional[Dict[str, str]] = None


cs = ConfigStore.instance()
cs.store(group="hydra/sweeper", name="poolstudy_optuna", node=FairOptunaSweeperConf, provider="poolstudy")
# its own name: a second "tpe" would replace hydra-optuna-sweeper's or not depending on the order in
# which Hydra scans the installed plugins
cs.store(group="hydra/sweeper/sampler", name="poolstudy_tpe", node=TPESamplerConf, provider="poolstudy")
cs.store(group="hydra/sweeper/pruner", name="median", node=MedianPrunerConf, provider="poolstudy")
cs.store(group="hydra/sweeper/pruner", name="hyperband", node=HyperbandPrunerConf, provider="poolstudy")
cs.store(group="hydra/sweeper/pruner", name="none", node=NopPrunerConf, provider="poolstudy")
