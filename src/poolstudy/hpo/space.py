"""Search spaces and grids from Hydra override syntax.

``hydra.sweeper.params`` keeps the syntax users know from hydra-optuna-sweeper
(``interval``, ``tag(log, interval(...))``, ``choice``, ``range``) and becomes the inner
search space, expressed with current Optuna distributions. Comma lists on the command line
(``model=maxpool,strided``) form the outer grid: one study per cell.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Mapping
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, Transformer
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from poolstudy.errors import PoolStudyError
from poolstudy.hpo.suggest import command_with, params_override


def distribution_from_override(override: Override) -> BaseDistribution:
    """The Optuna distribution for one sweep override (same semantics as hydra-optuna-sweeper)."""
    key = override.get_key_element()
    if override.is_choice_sweep() or (override.is_range_sweep() and override.value().shuffle):
        return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))
    if override.is_range_sweep():
        rng = override.value()
        if any(isinstance(v, float) for v in (rng.start, rng.stop, rng.step)):
            # hydra's range excludes stop; Optuna's high is inclusive
            return FloatDistribution(rng.start, rng.stop - rng.step, step=rng.step)
        return IntDistribution(int(rng.start), int(rng.stop) - int(rng.step), step=int(rng.step))
    if override.is_interval_sweep():
        iv = override.value()
        log = "log" in iv.tags
        if isinstance(iv.start, int) and isinstance(iv.end, int):
            return IntDistribution(iv.start, iv.end, log=log)
        return FloatDistribution(float(iv.start), float(iv.end), log=log)
    raise PoolStudyError(
        f"hydra.sweeper.params.{key} = {override.input_line!r} is not a search dimension; "
        f"use choice(...), range(...), interval(a, b) or tag(log, interval(a, b))."
    )


def search_space(params: Mapping[str, Any] | None) -> tuple[dict[str, BaseDistribution], list[str]]:
    """(distributions, fixed overrides) from ``hydra.sweeper.params``; a key set to null is left out
    (``"++hydra.sweeper.params={model.dropout:null}"`` removes that dimension of a recipe)."""
    parser = OverridesParser.create()
    space: dict[str, BaseDistribution] = {}
    fixed: list[str] = []
    for key, value in (params or {}).items():
        if value is None:
            continue
        line = f"{key}={value}"
        try:
            (override,) = parser.parse_overrides([line])
        except Exception as exc:  # hydra's grammar errors
            reason = str(exc).strip().splitlines()[0]
            raise PoolStudyError(f"hydra.sweeper.params.{key} = {str(value)!r} cannot be parsed ({reason}); use "
                                 f"choice(a, b), range(start, stop), interval(a, b), tag(log, interval(a, b)) or "
                                 f"a plain value.") from None
        if override.is_sweep_override():
            try:
                space[key] = distribution_from_override(override)
            except ValueError as exc:  # Optuna refuses e.g. low > high or a log interval reaching 0
                raise PoolStudyError(f"hydra.sweeper.params.{key} = {str(value)!r} is not a valid search "
                                     f"dimension: {exc}") from None
        else:
            fixed.append(line)
    return space, fixed


def with_config_grid(grid: Mapping[str, Any], arguments: list[str]) -> list[str]:
    """``hydra.sweeper.grid`` (a study config's comma lists) as overrides before the command line's,
    without the keys the command line gives itself (those replace the config's entry)."""
    typed = {o.key_or_group for o in OverridesParser.create().parse_overrides(list(arguments))}
    return [f"{k}={v}" for k, v in grid.items() if k not in typed] + list(arguments)


def grid_cells(arguments: list[str]) -> tuple[list[list[str]], set[str]]:
    """Every combination of the command line's sweep overrides, as lists of plain overrides,
    and the set of keys that were swept."""
    parser = OverridesParser.create()
    axes: list[list[str]] = []
    swept: set[str] = set()
    for override in parser.parse_overrides(arguments):
        key = override.get_key_element()
        if override.is_interval_sweep():
            fix = params_override({override.key_or_group: override.input_line.split("=", 1)[1]})
            raise PoolStudyError(
                f"'{override.input_line}': an interval on the command line cannot form a grid (comma lists do); "
                f"a search dimension goes into hydra.sweeper.params, written as {fix}"
                + (f": {command_with(replace={override.input_line: fix})}" if override.input_line in sys.argv
                   else "")
                + ".")
        if override.is_sweep_override():
            values = override.sweep_string_iterator()
            axes.append([f"{key}={v}" for v in values])
            swept.add(key)
        else:
            axes.append([override.input_line])
    return [list(cell) for cell in itertools.product(*axes)], swept


def describe_space(space: Mapping[str, BaseDistribution]) -> dict[str, Any]:
    """A JSON-able, comparable description of a search space."""
    import json

    from optuna.distributions import distribution_to_json

    return {name: json.loads(distribution_to_json(dist)) for name, dist in sorted(space.items())}
