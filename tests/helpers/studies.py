"""A multirun command's jobs, as Hydra's basic sweeper or the HPO sweeper expands them, without running it.

``expansion(args)`` composes the command once (with every swept key at its first value), takes the
grid from that composition (a study config's ``hydra.sweeper.params``, or ``hydra.sweeper.grid`` under
the HPO sweeper) and expands it with the command line's lists. Two commands run the same jobs when
their expansions are equal: the same first job's config, the same values of the varying keys in the
same order, and under the HPO sweeper the same budget, search space, sampler and pruner.
"""

from __future__ import annotations

import shlex

from omegaconf import OmegaConf, open_dict

from helpers import CONF_DIR
from poolstudy.hpo.space import grid_cells, with_config_grid
from poolstudy.jobs.cmdline import current_forms
from poolstudy.jobs.sweep import BASIC_SWEEPER, expand_jobs, grid_params

# where and how a command runs, not what it trains
MACHINE_PREFIXES = ("hydra/launcher=", "hydra.launcher.", "hydra.sweep.dir=", "trainer.progress=", "trainer.device=")


def train_args(command: str) -> list[str]:
    """The overrides of ``python train.py -m ...`` in their current forms, without where/how it runs."""
    words = shlex.split(command)
    args = current_forms(["train.py", *words[words.index("train.py") + 1:]])[0][1:]
    return [a for a in args if a not in ("-m", "--multirun") and not a.startswith(MACHINE_PREFIXES)]


def compose_job(overrides: list[str]):
    """The composed config, Hydra's node included, of one job of a multirun."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=True)


def _first_values(args: list[str]) -> list[str]:
    return [a.split("=", 1)[0] + "=" + a.split("=", 1)[1].split(",")[0] if "," in a and "(" not in a else a
            for a in args]


def _varying(jobs: list[list[str]]) -> list[tuple]:
    dicts = [dict(o.split("=", 1) for o in job) for job in jobs]
    keys = sorted({k for d in dicts for k in d if len({e.get(k) for e in dicts}) > 1})
    return [tuple((k, d.get(k)) for k in keys) for d in dicts]


def _job_config(overrides: list[str]) -> dict:
    cfg = compose_job(overrides)
    with open_dict(cfg):
        del cfg["hydra"]
    return OmegaConf.to_container(cfg, resolve=True)


def expansion(args: list[str]) -> dict:
    """What the multirun ``train.py -m *args`` runs: see the module docstring. Under the HPO sweeper the
    cells are a set: each is its own study, named after it; their order is only the order they run in."""
    master = compose_job(_first_values(args))
    sweeper = master.hydra.sweeper
    if sweeper._target_ == BASIC_SWEEPER:
        jobs = expand_jobs([*grid_params(master), *args])
        return {"first": _job_config(jobs[0]), "varying": _varying(jobs), "jobs": len(jobs), "sweeper": None}
    sweep_args = [a for a in args if not a.startswith("hydra.")]
    config_grid = OmegaConf.to_container(sweeper.grid) if sweeper.get("grid") else {}
    cells, _ = grid_cells(with_config_grid(config_grid, sweep_args))
    settings = OmegaConf.to_container(sweeper, resolve=False)
    settings.pop("grid", None)
    varying = _varying(cells)
    first = min(zip(varying, cells))[1]  # the same cell whichever order the grid was written in
    return {"first": _job_config([*first, *(a for a in args if a.startswith("hydra."))]),
            "varying": sorted(varying), "jobs": len(cells), "sweeper": settings}
