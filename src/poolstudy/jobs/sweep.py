"""Checks on the command line and composed config before any job runs (Hydra callbacks call them).

- A sweep that lists a value twice, sweeps a key that is no part of a job's identity (e.g.
  ``trainer.threads=1,2``) or gives one key twice would run identical configurations as separate
  jobs, which a table would then count as independent replicates (pseudo-replication).
- An ``${oc.env:NAME}`` without a default whose variable is unset ends in a long OmegaConf
  traceback wherever it is first resolved; it is named here instead, with its config key.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, QuotedString
from omegaconf import DictConfig, ListConfig, OmegaConf

from poolstudy.errors import PoolStudyError
from poolstudy.jobfolder import LOGGER_KEY, RESUME_IGNORES
from poolstudy.jobs.identity import ignored

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
# ${oc.env:NAME} without a default (a default follows a comma)
_ENV_REF = re.compile(r"\$\{\s*oc\.env\s*:\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}")


def _parse(overrides: list[str]) -> list[Override]:
    try:
        from hydra.core.global_hydra import GlobalHydra

        loader = GlobalHydra.instance().hydra.config_loader if GlobalHydra.instance().is_initialized() else None
    except Exception:
        loader = None
    return OverridesParser.create(config_loader=loader).parse_overrides(list(overrides))


def _plain(value: Any) -> Any:
    if isinstance(value, QuotedString):
        return value.text
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _values(override: Override) -> list[tuple[Any, str]]:
    """(parsed value, as written) of each value a sweep override lists."""
    texts = list(override.sweep_string_iterator())
    choice = getattr(override.value(), "list", None)
    parsed = [_plain(v) for v in choice] if choice is not None and len(choice) == len(texts) else texts
    return list(zip(parsed, texts))


def _skip_env_scan(key: str) -> bool:
    # Hydra's records of the command line repeat the overrides' text; the keys themselves are checked
    return key.startswith("hydra.overrides.") or key == "hydra.job.override_dirname"


def check_overrides(overrides: list[str], multirun: bool) -> None:
    """Raise PoolStudyError for sweep overrides that would make identical jobs or silently drop a list."""
    parsed = _parse(overrides)
    if not multirun:
        return
    seen: dict[str, Override] = {}
    for override in parsed:  # the basic sweeper keeps the last of a key's overrides: a list before it is lost
        key = override.key_or_group
        earlier = seen.get(key)
        if earlier is not None and (earlier.is_sweep_override() or override.is_sweep_override()):
            raise PoolStudyError(
                f"{key} is given twice ({earlier.input_line} and {override.input_line}); the sweep would silently "
                f"keep only the last. Give it once, with all its values in one list.")
        seen[key] = override
    for override in parsed:
        if not (override.is_sweep_override() and override.is_discrete_sweep()):
            continue
        key, values = override.key_or_group, _values(override)
        unique: list[tuple[Any, str]] = []
        for value, text in values:
            if not any(value == kept and type(value) is type(kept) for kept, _ in unique):
                unique.append((value, text))
        if len(unique) < len(values):
            counts = Counter(next(t for v, t in unique if v == value and type(v) is type(value)) for value, _ in values)
            repeated = ", ".join(f"{text} {n} times" for text, n in counts.items() if n > 1)
            raise PoolStudyError(
                f"{override.input_line} repeats values ({repeated}): jobs with the same configuration compute the "
                f"same numbers, so a repeated value adds no replicate and a table would count one result several "
                f"times. Give each value once, {key}={','.join(t for _, t in unique)}, and vary the seed for "
                f"replicates (e.g. seed=0,1,2).")
        if ignored(key.lstrip("+~")) and len(values) > 1:
            raise PoolStudyError(
                f"{override.input_line} sweeps a setting that does not change a job's result ({', '.join(RESUME_IGNORES)}"
                f" are no part of a job's identity), so its jobs would be one configuration counted as "
                f"{len(values)} results. Give one value, e.g. {key}={values[0][1]}"
                # the logger group (poolstudy.tracking): several trackers at once are one value, a list
                + (f", or all of them at once as a list: '{key}=[{','.join(t for _, t in values)}]'."
                   if key == LOGGER_KEY else "."))


def expand_jobs(overrides: list[str]) -> list[list[str]]:
    """Every job's overrides, in Hydra's order, as its basic sweeper expands ``overrides`` (comma lists,
    ``range``, ``glob``; a later override of a key replaces an earlier one)."""
    # Hydra has no public function for this expansion; its basic sweeper's own is used so that the jobs
    # shown and checked here are exactly the jobs a multirun runs.
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    return BasicSweeper.split_arguments(_parse(overrides), None)[0]


def grid_params(config: DictConfig) -> list[str]:
    """A study config's grid as overrides: the basic sweeper's ``hydra.sweeper.params``, or the HPO
    sweeper's ``hydra.sweeper.grid`` (its ``params`` are the search space)."""
    sweeper = config.hydra.sweeper
    grid = sweeper.get("params") if sweeper.get("_target_") == BASIC_SWEEPER else sweeper.get("grid")
    if not grid:
        return []
    return [f"{k}={v}" for k, v in OmegaConf.to_container(grid, resolve=False).items()]


def _leaves(node: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(node, dict):
        return [leaf for k, v in node.items() for leaf in _leaves(v, f"{prefix}{k}.")]
    if isinstance(node, list):
        return [leaf for i, v in enumerate(node) for leaf in _leaves(v, f"{prefix[:-1]}[{i}].")]
    return [(prefix[:-1], node)]


def unset_env_refs(config: DictConfig | ListConfig, environ: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """(config key, variable) of every ``${oc.env:NAME}`` without a default whose variable is unset."""
    environ = os.environ if environ is None else environ
    found = []
    for key, value in _leaves(OmegaConf.to_container(config, resolve=False)):
        if isinstance(value, str) and not _skip_env_scan(key):
            found += [(key, name) for name in _ENV_REF.findall(value) if name not in environ]
    return found


def check_env_refs(config: DictConfig) -> None:
    missing = unset_env_refs(config)
    if not missing:
        return
    names = sorted({name for _, name in missing})
    where = ", ".join(f"{key} uses ${{oc.env:{name}}}" for key, name in missing)
    raise PoolStudyError(
        f"{where}, but the environment variable{'s' if len(names) > 1 else ''} {', '.join(names)} "
        f"{'are' if len(names) > 1 else 'is'} not set. Set {'them' if len(names) > 1 else 'it'} first "
        f"(export {names[0]}=...) or give a default after a comma: ${{oc.env:{names[0]},<default>}}.")
