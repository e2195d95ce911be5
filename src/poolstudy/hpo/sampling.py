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

# TPESampler arguments Optuna deprecates (FutureWarning when passed at all); hydra-optuna-sweeper's
# "tpe" config passes them with their old defaults. Dropped when they hold those defaults.
_TPE_OLD_DEFAULTS = {"consider_prior": True, "prior_weight": 1.0, "consider_magic_clip": True,
                     "consider_endpoints": False, "warn_independent_sampling": True}


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


def sampler_factory(cfg: Mapping[str, Any], space: Mapping[str, BaseDistribution]) -> Callable[[int | None], BaseSampler]:
    """``factory(seed)`` builds the sampler configured by ``cfg`` (a ``_target_`` mapping) with that seed."""
    cfg = dict(cfg)
    if cfg.get("_target_", "").endswith("TPESampler"):
        cfg = {k: v for k, v in cfg.items() if not (k in _TPE_OLD_DEFAULTS and v == _TPE_OLD_DEFAULTS[k])}

    def factory(seed: int | None) -> BaseSampler:
        kwargs = {"seed": seed} if "seed" in cfg else {}
        sampler = instantiate({**cfg, **kwargs})
        if isinstance(sampler, functools.partial) and sampler.func is optuna.samplers.GridSampler:
            sampler = sampler({name: _grid_choices(d) for name, d in space.items()})
        return sampler

    return factory


class TrialSeededSampler(BaseSampler):
    """Delegates each trial to a fresh sampler seeded by ``trial_seed(seed, position_of(trial))``.

    ``factory(seed)`` builds the underlying sampler (TPE, random, CMA-ES, grid, ...).
    """

    def __init__(self, factory: Callable[[int | None], BaseSampler], seed: int) -> None:
        self._factory = factory
        self._seed = int(seed)
        self._per_trial: dict[int, BaseSampler] = {}

    @property
    def seed(self) -> int:
        return self._seed

    def _for(self, study: Study, trial: FrozenTrial) -> BaseSampler:
        sampler = self._per_trial.get(trial.number)
        if sampler is None:
            sampler = self._factory(trial_seed(self._seed, position_of(study, trial)))
            self._per_trial[trial.number] = sampler
        return sampler

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._per_trial.pop(trial.number, None)  # the position is taken now, when the trial is asked
        self._for(study, trial).before_trial(study, trial)

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._for(study, trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self._for(study, trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._for(study, trial).sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values) -> None:
        sampler = self._per_trial.pop(trial.number, None) or self._factory(self._seed)
        sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:  # the streams are fixed by design; Optuna calls this for n_jobs > 1 threads
        pass


def study_seed(configured: int | None) -> int:
    """The configured sampler seed, or a fresh random one for a new study (then stored in it)."""
    return int(configured) if configured is not None else secrets.randbits(32)
