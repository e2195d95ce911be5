"""Thin Hydra plugin class (Hydra instantiates launchers only from hydra_plugins); the logic
lives in poolstudy.slurm.launcher."""

from poolstudy.slurm import launcher as _impl


class PoolstudySlurmLauncher(_impl.SlurmLauncher):
    pass
