"""Checks of a planned HPO sweep against the composed job configs, run before any study, storage
file or folder is created, so a mistake writes nothing and its fix is not blocked by a study
left behind.

- every search dimension must apply to the job config of every grid cell, at its bounds and at
  each of its choices, and give values the job accepts (``config_checks``);
- a study is named after its cell (architecture, downsampling, dataset and the other grid keys)
  and must train exactly that: a search dimension that changes the variant or the dataset (e.g.
  ``model: choice(maxpool, strided)``, a study file's grid), the random seed, a key that is both
  a grid key and a search dimension, or a command-line value that a search dimension would
  override, is refused with the corrected command.
"""

from __future__ import annotations

import itertools
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution, CategoricalDistribution

from poolstudy.jobs.config_checks import check_config
from poolstudy.errors import PoolStudyError
from poolstudy.hpo.suggest import command_with, params_override

# what a study's name says it trains (the collector reads the same three from study_summary.json)
IDENTITY_KEYS = {"arch": "model.arch", "downsample": "model.downsample.type", "dataset": "dataset.name"}
# search dimensions that can never be hyper-parameters of a fair comparison
NOT_TUNABLE = {"seed": "the random seed is not a hyper-parameter: tuning it picks a lucky seed, while the final runs "
                       "replicate the best parameters over seeds 0..final_seeds-1"}

Compose = Callable[[list[str]], DictConfig]


def identity(cfg: DictConfig) -> dict[str, Any]:
    """The cell's variant and dataset as named in the study name: arch, downsample, dataset."""
    return {label: OmegaConf.select(cfg, key) for label, key in IDENTITY_KEYS.items()}


def override_value(key: str, value: Any) -> str:
    """``key=value`` for a sampled or probed value, quoted for Hydra's grammar where needed."""
    text = str(value)
    if not re.fullmatch(r"[\w.\-+/]+", text):
        text = "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return f"{key}={text}"


def composition_error(exc: BaseException) -> str:
    """Hydra's composition error in one line (its first line, the cause, the options it lists)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[0].rstrip(".") if lines else type(exc).__name__
    if "Available options" in str(exc):
        i = next(i for i, ln in enumerate(lines) if ln.startswith("Available options"))
        options = list(itertools.takewhile(lambda ln: not ln.startswith("Config search path"), lines[i + 1:]))
        text += f"; {lines[i].rstrip(':')}: {', '.join(options)}"
    cause = exc.__cause__
    if cause is not None and str(cause).strip():
        text += f" ({str(cause).strip().splitlines()[0]})"
    return text


def _probe_values(dist: BaseDistribution) -> list[Any]:
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    return list(dict.fromkeys([dist.low, dist.high]))


def probes(space: Mapping[str, BaseDistribution]) -> list[dict[str, Any]]:
    """Value sets that together visit every choice and both bounds of every dimension."""
    values = {k: _probe_values(d) for k, d in space.items()}
    first = {k: v[0] for k, v in values.items()}
    last = {k: v[-1] for k, v in values.items()}
    out = [first] + ([last] if last != first else [])
    for k, vals in values.items():
        out += [{**first, k: v} for v in vals[1:-1]]
    return out


@dataclass
class CellPlan:
    cell: list[str]            # the cell's overrides (grid values and the command line's plain overrides)
    cfg: DictConfig            # the cell's composed job config, before any search dimension applies
    identity: dict[str, Any] = field(default_factory=dict)
    label: str = ""            # the cell's grid values, for messages

    @staticmethod
    def describe(cell: Sequence[str], swept: set[str]) -> str:
        grid = [o for o in cell if o.split("=", 1)[0].lstrip("+~") in swept]
        return "the grid cell " + " ".join(grid) if grid else "the job config"


def command_keys(arguments: Sequence[str]) -> dict[str, str]:
    """Keys set on the command line (plain or swept) -> the argument as typed."""
    return {o.key_or_group: o.input_line for o in OverridesParser.create().parse_overrides(list(arguments))
            if not o.is_delete()}


def check_key_conflicts(space: Mapping[str, BaseDistribution], fixed: Sequence[str], arguments: Sequence[str],
                        swept: set[str], raw: Mapping[str, Any], study_file: tuple[str, dict[str, str]] | None) -> None:
    """A key may be a grid key, a command-line value, a fixed entry of hydra.sweeper.params or a search
    dimension, never two of these: the later one would silently win. (A study file's grid keys and the
    seed are reported by check_cells, with the whole grid.)"""
    on_command_line = command_keys(arguments)
    for key in space:
        if key not in on_command_line or key in NOT_TUNABLE or (study_file and key in study_file[1]):
            continue
        typed = on_command_line[key]
        fix = command_with(add=[params_override({key: None})])
        if key in swept:
            raise PoolStudyError(
                f"{key} is both a grid key ({typed} on the command line: one study per value) and a search "
                f"dimension (hydra.sweeper.params.{key} = {str(raw[key])!r}: tuned inside each study), so the "
                f"studies would train other values than their names say. To compare the values as separate "
                f"studies, remove the dimension: {fix} ; to tune it instead, leave out {typed}.")
        raise PoolStudyError(
            f"{typed} on the command line would be overridden in every trial by the search dimension "
            f"hydra.sweeper.params.{key} = {str(raw[key])!r}. To hold {key} fixed, remove the dimension: {fix} ; "
            f"to search it, leave out {typed}.")
    for line in fixed:
        key = line.split("=", 1)[0]
        if key in on_command_line:
            raise PoolStudyError(
                f"{key} is set twice: hydra.sweeper.params.{key} = {str(raw[key])!r} and {on_command_line[key]} on "
                f"the command line. Keep one: {command_with(add=[params_override({key: None})])}")


def check_cells(compose: Compose, cells: list[list[str]], fixed: list[str], swept: set[str],
                space: Mapping[str, BaseDistribution], raw: Mapping[str, Any],
                study_file: tuple[str, dict[str, str]] | None, arguments: Sequence[str]) -> list[CellPlan]:
    """Compose every cell, and every cell with every probe of the search space; raise PoolStudyError
    naming the offending grid value or search dimension. ``study_file`` is (name, its grid params)
    when an ``experiment=`` study for the basic sweeper was given."""
    plans = []
    for cell in cells:
        try:
            cfg = compose([*fixed, *cell])
        except Exception as exc:  # Hydra's composition errors: unknown group option or key in this cell
            raise PoolStudyError(f"{CellPlan.describe(cell, swept).capitalize()} cannot be composed: "
                                 f"{composition_error(exc)}. Fix the value on the command line.") from None
        check_config(cfg)
        plans.append(CellPlan(cell, cfg, identity(cfg), CellPlan.describe(cell, swept)))

    grid_like: dict[str, str] = {}  # search dimension -> why it is a grid key, not a hyper-parameter
    for key in space:
        if key in NOT_TUNABLE:
            grid_like[key] = NOT_TUNABLE[key]
        elif study_file and key in study_file[1]:
            grid_like[key] = f"a grid key of the study experiment={study_file[0]}"

    reasons: dict[tuple, str | None] = {}

    def reason_for(plan: CellPlan, probe: Mapping[str, Any]) -> str | None:
        key = (tuple(plan.cell), tuple(sorted((k, repr(v)) for k, v in probe.items())))
        if key not in reasons:
            reasons[key] = _probe_reason(compose, plan, fixed, probe)
        return reasons[key]

    for plan in plans:
        for probe in probes({k: d for k, d in space.items() if k not in grid_like}):
            probe = {k: v for k, v in probe.items() if k not in grid_like}  # some were found on the way
            reason = reason_for(plan, probe)
            if reason is None:
                continue
            culprits = [(k, v, r) for k, v in probe.items() if (r := reason_for(plan, {k: v}))]
            if not culprits:
                raise PoolStudyError(
                    f"The search dimensions {', '.join(override_value(k, v) for k, v in probe.items())} together "
                    f"do not fit {plan.label}: {reason.removeprefix(_IDENTITY)}. Change the search space "
                    f"(hydra.sweeper.params).")
            for key, value, why in culprits:
                if why.startswith(_IDENTITY):
                    grid_like[key] = why.removeprefix(_IDENTITY)
                    continue
                raise PoolStudyError(
                    f"hydra.sweeper.params.{key} = {str(raw[key])!r} does not fit {plan.label} at "
                    f"{override_value(key, value)}: {why}. A search "
                    f"dimension names a key of the job config (python train.py --cfg job lists them) or a config "
                    f"group with its options, over values the job accepts. Correct it, or remove it: "
                    f"{command_with(add=[params_override({key: None})])}")
    if grid_like:
        raise PoolStudyError(_grid_like_message(grid_like, space, raw, plans[0], study_file, arguments))
    return plans


_IDENTITY = "identity:"


def _probe_reason(compose: Compose, plan: CellPlan, fixed: list[str], probe: Mapping[str, Any]) -> str | None:
    """Why the cell with these search values cannot run as its study (None: it can)."""
    try:
        cfg = compose([*fixed, *plan.cell, *(override_value(k, v) for k, v in probe.items())])
    except Exception as exc:
        return composition_error(exc)
    try:
        check_config(cfg)
    except PoolStudyError as exc:
        return str(exc).rstrip(".")
    changed = {label: (plan.identity[label], v) for label, v in identity(cfg).items() if v != plan.identity[label]}
    if changed:
        return _IDENTITY + "changes what the study trains: " + ", ".join(
            f"{label} {a} -> {b}" for label, (a, b) in changed.items())
    return None


def _grid_like_message(grid_like: dict[str, str], space: Mapping[str, BaseDistribution], raw: Mapping[str, Any],
                       plan: CellPlan, study_file: tuple[str, dict[str, str]] | None,
                       arguments: Sequence[str]) -> str:
    on_command_line = command_keys(arguments)
    name = "-".join(str(plan.identity[k]) for k in IDENTITY_KEYS)
    add = [params_override({k: None for k in grid_like})]
    for key in grid_like:
        if key in on_command_line or key in NOT_TUNABLE:
            continue
        if study_file and key in study_file[1]:
            add.append(f"{key}={study_file[1][key]}")
        elif isinstance(space[key], CategoricalDistribution):
            add.append(f"{key}={','.join(map(str, space[key].choices))}")
    seeds = study_file[1].get("seed") if study_file else None
    if seeds is not None and not any(a.startswith("hydra.sweeper.final_seeds=") for a in sys.argv):
        add.append(f"hydra.sweeper.final_seeds={len(str(seeds).split(','))}")
    from_file = [k for k in grid_like if study_file and k in study_file[1]]
    others = "; ".join(f"hydra.sweeper.params.{k} = {str(raw[k])!r}: {why}" for k, why in grid_like.items()
                       if k not in from_file)
    if from_file:
        head = (f"experiment={study_file[0]} is a study for the basic sweeper: its hydra.sweeper.params "
                f"({', '.join(from_file)}) are its grid, and under hparams_search they would become tuned choices "
                f"inside one study, which would then train other variants, data or seeds than its name ({name}) says"
                + (f". Also {others}" if others else ""))
    else:
        head = (f"These search dimensions would become tuned choices inside one study, which would then train other "
                f"variants, data or seeds than its name ({name}) says: {others}")
    return (f"{head}. Give variants, architectures and datasets as comma lists on the command line instead (one study "
            f"per cell; the final runs replicate the best parameters over seeds 0..final_seeds-1): "
            f"{command_with(add=add)}")
