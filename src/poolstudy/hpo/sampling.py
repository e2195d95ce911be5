"""Samplers whose proposals do not depend on when the sweeping process started.

An Optuna sampler draws from one random generator seeded when it is constructed. A sweep that
is interrupted and re-run, or extended with ``hydra.sweeper.extend=true``, constructs a new
sampler with the same seed, so the resumed study draws the start of the same random sequence
again: trials 2 and 3 repeat the parameters of trials 0 and 1.

:class:`TrialSeededSampler` gives every trial its own sampler, seeded from the study's seed and
the trial's position among the trials that count toward the budget (interrupted and
over-budget trials, which are redone, take no position). Optuna's samplers keep everything
else they need in the storage (the finished trials, and CMA-ES/NSGA-II state in trial system
attributes), because several processes may share one study; so the proposal for position k is
a function of (seed, k, the study's finished trials) only, and an interrupted-then-resumed or
extended study proposes the same sequence as one run straight through. Trials at different
positions get independent streams, so two trials share parameters only when the sampler
genuinely draws them (e.g. a categorical space, or TPE converging).

The seed stream for position k is ``numpy.random.SeedSequence([seed, k])`` (NumPy's standard
way to derive independent streams from one seed).
"""

from __future__ import annotations

import functools
import inspect
import secrets
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import optuna
from hydra.utils import instantiate
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from poolstudy.errors import PoolStudyError
from poolstudy.hpo.budget import discarded


SEED_ATTR = "poolstudy_sampler_seed"  # the study's sampler seed (drawn at creation when none is configured)

# Arguments Optuna deprecates (a FutureWarning whenever passed); hydra-optuna-sweeper's sampler configs
# pass them with their old defaults. Dropped when they hold those defaults.
_OLD_DEFAULTS = {
    "optuna.samplers.TPESampler": {"consider_prior": True, "prior_weight": 1.0, "consider_magic_clip": True,
                                   "consider_endpoints": False, "warn_independent_sampling": True},
    "optuna.samplers.CmaEsSampler": {"restart_strategy": None, "inc_popsize": 2},
}


def trial_seed(seed: int, position: int) -> int:
    """The 32-bit seed of the sampler proposing the trial at ``position`` (0-based) of a study."""
    return int(np.random.SeedSequence([int(seed), int(position)]).generate_state(1)[0])


def position_of(study: Study, trial: FrozenTrial) -> int:
    """How many trials of ``study`` before ``trial`` count toward the budget (see budget.discarded)."""
    return sum(1 for t in study.get_trials(deepcopy=False) if t.number < trial.number and not discarded(t))


def _grid_choices(distribution: BaseDistribution) -> list[Any]:
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    if isinstance(distribution, (IntDistribution, FloatDistribution)) and distribution.step is not None:
        return list(np.arange(distribution.low, distribution.high + distribution.step / 2, distribution.step))
    raise PoolStudyError(f"the grid sampler (hydra/sweeper/sampler=grid) needs choice(...) or range(...) dimensions, "
                         f"not {distribution}.")


def accepts_seed(target: str) -> bool:
    """Whether the sampler class ``target`` (a dotted name) takes a ``seed`` argument (Optuna's all do)."""
    from hydra.utils import get_class

    try:
        return "seed" in inspect.signature(get_class(target)).parameters
    except Exception:  # an unknown target: instantiate() reports it
        return False


def sampler_factory(cfg: Mapping[str, Any], space: Mapping[str, BaseDistribution]) -> Callable[[int | None], BaseSampler]:
    """``factory(seed)`` builds the sampler configured by ``cfg`` (a ``_target_`` mapping) with that seed."""
    old = _OLD_DEFAULTS.get(cfg.get("_target_", ""), {})
    cfg = {k: v for k, v in cfg.items() if not (k in old and v == old[k])}
    takes_seed = accepts_seed(cfg.get("_target_", ""))

    def factory(seed: int | None) -> BaseSampler:
        kwargs = {"seed": seed} if takes_seed else {}
        sampler = instantiate({**cfg, **kwargs})
        if isinstance(sampler, functools.partial) and sampler.func is optuna.samplers.GridSampler:
            sampler = sampler({name: _grid_choices(d) for name, d in space.items()})
        return sampler

    return factory


class TrialSeededSampler(BaseSampler):
    """Delegates each trial to a fresh sampler seeded by ``trial_seed(seed, position_of(trial))``.

    ``factory(seed)`` builds the underlying sampler (TPE, random, CMA-ES, ...). Optuna's grid
    sampler is the exception: its randomness is one shuffle of the grid, which must be the same for
    every trial (Optuna's docs: fix its seed in every process), and it takes grid point n for trial
    number n; here the trial at position k takes point k of the study-seeded shuffle, so an
    interrupted trial's point goes to the trial that redoes it.
    """

    def __init__(self, factory: Callable[[int | None], BaseSampler], seed: int) -> None:
        self._factory = factory
        self._seed = int(seed)
        self._per_trial: dict[int, BaseSampler] = {}
        first = factory(self._seed)
        self._grid = first if isinstance(first, optuna.samplers.GridSampler) else None

    @property
    def seed(self) -> int:
        return self._seed

    def _for(self, study: Study, trial: FrozenTrial) -> BaseSampler:
        if self._grid is not None:
            return self._grid
        sampler = self._per_trial.get(trial.number)
        if sampler is None:
            sampler = self._factory(trial_seed(self._seed, position_of(study, trial)))
            self._per_trial[trial.number] = sampler
        return sampler

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        if self._grid is not None:
            self._assign_grid_point(study, trial)
            return
        self._per_trial.pop(trial.number, None)  # the position is taken now, when the trial is asked
        self._for(study, trial).before_trial(study, trial)

    def _assign_grid_point(self, study: Study, trial: FrozenTrial) -> None:
        # GridSampler.before_trial records the point as the trial system attributes "search_space" and
        # "grid_id" (its sample_independent reads them); the same, keyed by position instead of number.
        grid = self._grid
        position = position_of(study, trial)
        if "grid_id" in trial.system_attrs or "fixed_params" in trial.system_attrs or position >= grid._n_min_trials:
            grid.before_trial(study, trial)  # beyond the grid (a trial over budget): Optuna's own choice
            return
        study._storage.set_trial_system_attr(trial._trial_id, "search_space", grid._search_space)
        study._storage.set_trial_system_attr(trial._trial_id, "grid_id", position)

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._for(study, trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self._for(study, trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._for(study, trial).sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values) -> None:
        if self._grid is not None:
            return  # its after_trial only stops study.optimize() when the grid is done; the budget stops here
        sampler = self._per_trial.pop(trial.number, None) or self._factory(self._seed)
        sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:  # the streams are fixed by design; Optuna calls this for n_jobs > 1 threads
        pass


def grid_size(space: Mapping[str, BaseDistribution]) -> int:
    """How many points the grid sampler's grid over ``space`` has."""
    n = 1
    for d in space.values():
        n *= len(_grid_choices(d))
    return n


def draw_seed() -> int:
    """A fresh study seed, for a sampler configured without one (stored in the study, see SEED_ATTR)."""
    return secrets.randbits(32)
