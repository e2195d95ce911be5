"""Config schema of ``hydra/launcher=slurm`` (conf/hydra/launcher/slurm.yaml builds on it).

hydra-submitit-launcher's ``submitit_slurm`` schema, with this project's launcher class and
resources left unset (null) by default: SLURM then applies the cluster's defaults, or the
launcher derives them from the jobs (see poolstudy.slurm.resources). Hydra imports this module
when it scans the ``hydra_plugins`` namespace, which registers the schema.
"""

from dataclasses import dataclass
from typing import Optional

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf


@dataclass
class PoolstudySlurmConf(SlurmQueueConf):
    _target_: str = "hydra_plugins.poolstudy_slurm.slurm_launcher.PoolstudySlurmLauncher"
    # null: the partition's default time limit (its DefaultTime, else its MaxTime)
    timeout_min: Optional[int] = None  # type: ignore[assignment]


ConfigStore.instance().store(group="hydra/launcher", name="poolstudy_slurm", node=PoolstudySlurmConf,
                             provider="poolstudy")
