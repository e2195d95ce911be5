"""Helpers shared by the tests: where the project and the real data are, composing the config in-process.

Modules: ``datafiles`` (small dataset files in the official layouts), ``hpo`` (running and inspecting HPO
sweeps), ``pgserver`` (a throw-away PostgreSQL server), ``slurmcluster`` (a single-node SLURM cluster),
``faults/`` (a sitecustomize that injects faults or slow epochs into a train.py process), ``tracking``
(MLflow and TensorBoard stores read back), ``trainpy`` (``python train.py ...`` as a fork of a pre-imported
server).
"""

from __future__ import annotations

import ast
import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("POOLSTUDY_TEST_DATA", ROOT.parent / "shared" / "datasets"))
CONF_DIR = ROOT / "conf"
FAULTS = Path(__file__).resolve().parent / "faults"


def have_real(*names: str) -> bool:
    return all((SHARED_DATA / n).exists() for n in names)


def require_real(*names: str) -> None:
    if not have_real(*names):
        pytest.skip(f"real dataset files {names} not found under {SHARED_DATA} (set POOLSTUDY_TEST_DATA)")


def compose(overrides: list[str] | None = None, data_dir: str | Path = SHARED_DATA, cache: str | Path = "/tmp"):
    """Compose the project config in-process, as train.py would, without running it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(
            config_name="config",
            overrides=[f"data_dir={data_dir}", f"cache_dir={cache}", *(overrides or [])],
            return_hydra_config=False,
        )


def load_script(path: Path) -> ModuleType:
    """The module a script of the checkout defines (e.g. sweeps/make_results.py); its ``__main__`` block is not run."""
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def imported_modules(path) -> set[str]:
    """Every module a file imports, at any level (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return found
