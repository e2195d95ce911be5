"""Puts the checkout's root on Hydra's search path, so that its sweeps/ folder is the config group
`sweeps` (python train.py -m +sweeps=<study>) whatever the working directory.

Hydra finds this plugin through the hydra_plugins namespace of the installed (editable) package.
Without it, `+sweeps=<study>` run from another directory would silently add a plain key
`sweeps: <study>` and run the default job instead of the study.
"""

from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

# src/hydra_plugins/poolstudy_searchpath/__init__.py -> the repository root
REPO_ROOT = Path(__file__).resolve().parents[3]


class PoolStudySweepsSearchPath(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        if (REPO_ROOT / "sweeps").is_dir() and (REPO_ROOT / "train.py").is_file():
            search_path.append(provider="poolstudy-sweeps", path=f"file://{REPO_ROOT}")
