"""Hydra discovers this sweeper plugin from the installed poolstudy package (hydra_plugins namespace)."""
