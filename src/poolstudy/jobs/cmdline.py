"""Command lines that Hydra cannot compose or refuses with a traceback, handled before Hydra runs.

``python train.py -m <sweep> --cfg job|hydra|all`` prints the config of every job of the
multirun. Hydra itself refuses ``-m`` together with ``--cfg`` (with a traceback); a user who adds
``--cfg`` to a multirun command wants to see what each job would run, so each job's config is
printed as ``--cfg`` prints a single run's, after a ``# job <n> of <N>: <its overrides>`` line.
The jobs are expanded as Hydra's basic sweeper expands them (command-line lists and a study
file's ``hydra.sweeper.params``); under hparams_search=optuna these are the grid cells, shown
with the search space's keys at their configured values (each trial replaces them).

``hydra.sweeper.params`` typed on the command line under Hydra's basic sweeper (no
hparams_search) fails to compose or runs as a grid; it is refused with the forms that work.

``+sweeps=<study>`` (the ready-made studies before they became the config group ``experiment``)
is run as ``experiment=<study>``, with a note: the commands recorded with earlier studies still run.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SHOW_FLAGS = {"--cfg", "-c"}
MULTIRUN_FLAGS = {"--multirun", "-m"}
_PARAMS = re.compile(r"^[+~]*hydra\.sweeper\.params(\.|=)")
_OLD_STUDY = re.compile(r"^\+{0,2}sweeps=(.*)$")


def current_forms(argv: list[str]) -> tuple[list[str], list[str]]:
    """``argv`` with the study forms of earlier versions replaced (``+sweeps=NAME`` -> ``experiment=NAME``),
    and one note per replacement."""
    out, notes = argv[:1], []
    for arg in argv[1:]:
        match = _OLD_STUDY.match(arg)
        if match:
            out.append(f"experiment={match.group(1)}")
            notes.append(f"{arg} is now experiment={match.group(1)} (the studies are in conf/experiment/); running that")
        else:
            out.append(arg)
    return out, notes


def _args(argv: list[str]):
    from hydra._internal.utils import get_args_parser

    return get_args_parser().parse_intermixed_args(argv[1:])  # overrides on both sides of a flag


@contextmanager
def _hydra(args, script_dir: Path) -> Iterator[Any]:
    """The Hydra instance train.py would use (its config folder, or --config-path)."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.initialize import initialize_config_dir

    config_dir = Path(args.config_path) if args.config_path else script_dir / "conf"
    if not config_dir.is_absolute():
        config_dir = script_dir / config_dir
    with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base="1.3", job_name="train"):
        yield GlobalHydra.instance().hydra


def _multirun_master(hydra, config_name: str, overrides: list[str]):
    from hydra.types import RunMode

    return hydra.compose_config(config_name, overrides, run_mode=RunMode.MULTIRUN, with_log_configuration=False)


def wants_jobs_shown(argv: list[str]) -> bool:
    """-m together with --cfg (or --info, --run, which Hydra refuses with a traceback)."""
    flags = {a.split("=", 1)[0] for a in argv[1:] if a.startswith("-")}
    return bool(flags & MULTIRUN_FLAGS) and bool(flags & (SHOW_FLAGS | {"--info", "-i", "--run", "-r"}))


def _expand(hydra, config_name: str, overrides: list[str]) -> tuple[list[str], set[str], list[list[str]]]:
    """A multirun's Hydra overrides, its swept keys and each job's overrides, as the basic sweeper expands them."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from poolstudy.jobs.sweep import expand_jobs, grid_params

    master = _multirun_master(hydra, config_name, overrides)
    task = [str(o) for o in master.hydra.overrides.task]
    hydra_overrides = [str(o) for o in master.hydra.overrides.hydra]
    parser = OverridesParser.create(config_loader=hydra.config_loader)
    grid = [*grid_params(master), *task]
    swept = {o.key_or_group for o in parser.parse_overrides(grid) if o.is_sweep_override()}
    return hydra_overrides, swept, expand_jobs(grid)


def covering(jobs: list[list[str]]) -> list[list[str]]:
    """The first jobs (in order) that together hold every ``key=value`` of ``jobs`` at least once."""
    seen: set[str] = set()
    chosen = []
    for job in jobs:
        if not seen.issuperset(job):
            chosen.append(job)
            seen.update(job)
    return chosen or jobs[:1]


def compose_command(argv: list[str], script_dir: Path, default_config_name: str,
                    every_job: bool = True) -> list[tuple[list[str], Any]]:
    """The job configs a ``train.py`` command line would run, composed as ``--cfg job`` composes them; nothing runs.

    ``argv`` is the command as typed (``["train.py", "-m", "model=maxpool,strided"]``); a single run gives one
    job, a multirun (``-m``) every job of its grid (command-line lists and a study's ``hydra.sweeper.params``;
    under ``hparams_search=optuna`` the grid cells), or with ``every_job=False`` only the jobs that hold every
    value of every swept key at least once (:func:`covering`). The documentation's command test uses it.

    Returns:
        ``(job overrides, composed config with its hydra node)`` per job.

    Raises:
        Exception: Hydra's own error when a job does not compose (an unknown key or group option, a bad value).
    """
    from hydra.types import RunMode

    argv, _ = current_forms(argv)
    args = _args(argv)
    config_name = args.config_name or default_config_name
    with _hydra(args, script_dir) as hydra:
        if args.multirun:
            hydra_overrides, _, jobs = _expand(hydra, config_name, list(args.overrides))
            jobs = jobs if every_job else covering(jobs)
        else:
            hydra_overrides, jobs = [], [list(args.overrides)]
        return [(job, hydra.compose_config(config_name, [*hydra_overrides, *job], run_mode=RunMode.RUN,
                                           with_log_configuration=False)) for job in jobs]


def show_jobs(argv: list[str], script_dir: Path, default_config_name: str) -> int:
    """Print each job's config (or one message); returns the exit status."""
    args = _args(argv)
    if args.cfg is None:
        flag = "--info" if args.info is not None else "--run"
        print(f"error: {flag} does not combine with -m (--multirun): drop -m to get {flag} for one configuration, "
              "or use -m with --cfg job to see the config of every job of the multirun.", file=sys.stderr)
        return 2
    if args.config_dir is not None:
        print("error: --config-dir does not combine with -m --cfg here; give the folder with --config-path.",
              file=sys.stderr)
        return 2
    config_name = args.config_name or default_config_name
    try:
        with _hydra(args, script_dir) as hydra:
            hydra_overrides, swept, jobs = _expand(hydra, config_name, list(args.overrides))
            for n, job in enumerate(jobs):
                shown = [o for o in job if o.split("=", 1)[0].lstrip("+~") in swept] or ["(no sweep)"]
                print(f"{'' if n == 0 else chr(10)}# job {n} of {len(jobs)}: {' '.join(shown)}")
                sys.stdout.flush()
                hydra.show_cfg(config_name, [*hydra_overrides, *job], args.cfg, args.package, args.resolve)
    except BrokenPipeError:  # e.g. piped into head
        sys.stdout = None
        return 0
    except Exception as exc:  # a composition error: Hydra's own message
        print(f"error: {str(exc).strip()}", file=sys.stderr)
        return 1
    return 0


def search_space_without_hpo(argv: list[str], script_dir: Path, default_config_name: str) -> str | None:
    """The message for ``hydra.sweeper.params`` typed under the basic sweeper, or None.

    It suggests the forms that run when typed: the HPO sweeper (hparams_search=optuna) for the keys
    it tunes, and a grid of jobs (``key=a,b``) where every value is a plain list. Keys the HPO
    sweeper refuses as search dimensions (the seed; keys that change the variant or dataset a
    study is named after, see poolstudy.hpo.checks) are left out of the HPO form: the seed is said
    not to be tunable, a variant or dataset key goes on the command line as a comma list (one study
    per value), as the HPO sweeper itself asks.
    """
    if not set(argv[1:]) & MULTIRUN_FLAGS or not any(_PARAMS.match(a) for a in argv[1:]):
        return None
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import QuotedString

    from poolstudy.jobs.sweep import BASIC_SWEEPER, _plain

    args = _args(argv)
    typed = [o for o in args.overrides if _PARAMS.match(o)]
    entries: dict[str, Any] = {}
    try:
        with _hydra(args, script_dir) as hydra:
            config_name = args.config_name or default_config_name
            others = [o for o in args.overrides if not _PARAMS.match(o)]
            master = _multirun_master(hydra, config_name, others)
            if master.hydra.sweeper.get("_target_") != BASIC_SWEEPER:
                return None
            for override in OverridesParser.create().parse_overrides(typed):
                key, value = override.key_or_group, override.value()
                if isinstance(value, dict):
                    entries.update({k: _plain(v) for k, v in value.items()})
                else:
                    text = override.input_line.split("=", 1)[1]
                    entries[key[len("hydra.sweeper.params."):]] = _plain(value) if isinstance(value, QuotedString) else text
            untunable, variants = _untunable(hydra, config_name, others, master, entries)
    except Exception:  # Hydra reports its own composition errors
        return None
    plain = {k: str(v) for k, v in entries.items() if re.fullmatch(r"[^()'\"\s]+", str(v))}
    grid = [f"{k}={v}" for k, v in plain.items()]
    grid_hint = (f" For a grid of jobs give the values directly instead: {' '.join(grid)}."
                 if entries and len(grid) == len(entries) else "")
    tuned = {k: v for k, v in entries.items() if k not in untunable}
    message = f"{' '.join(typed)} is a search space, which needs the HPO sweeper"
    quoted = "{" + ",".join(f"{k}:'{v}'" for k, v in tuned.items()) + "}"
    hpo_form = " ".join(["python train.py -m hparams_search=optuna", f"\"+hydra.sweeper.params={quoted}\"",
                         *(f"{k}={v}" for k, v in variants.items()), "..."])
    if not untunable:
        return f"{message}: add hparams_search=optuna ({hpo_form}).{grid_hint}"
    refusals = "; ".join(f"{k}: {why}" if why else f"{k} selects what a study trains (the variant or dataset its "
                         f"name says), so it goes on the command line, one study per value"
                         for k, why in untunable.items())
    message += f" (hparams_search=optuna), and that does not take these as search dimensions: {refusals}"
    if tuned and all(v is not None for v in variants.values()):
        return f"{message} (to tune the others: {hpo_form}).{grid_hint}"
    return f"{message}.{grid_hint}"


def _untunable(hydra, config_name: str, others: list[str], master,
               entries: dict[str, Any]) -> tuple[dict[str, str | None], dict[str, str | None]]:
    """The keys of ``entries`` the HPO sweeper refuses as search dimensions: key -> why (None: it changes
    the variant or dataset a study is named after; found by composing each listed value, as the HPO
    sweeper's own check does), and for those variant keys their values as a command-line comma list
    (None where a value cannot be written in one)."""
    from optuna.distributions import CategoricalDistribution

    from poolstudy.hpo.checks import NOT_TUNABLE, identity, override_value
    from poolstudy.hpo.space import search_space

    refused: dict[str, str | None] = {}
    variants: dict[str, str | None] = {}
    base = identity(master)
    for key, value in entries.items():
        if key in NOT_TUNABLE:
            refused[key] = NOT_TUNABLE[key]
            continue
        try:  # the values the HPO sweeper would try (a list or choice(...); an interval is numbers, no variant)
            space, _ = search_space({key: value})
        except Exception:  # the HPO sweeper's own message says what is wrong with the value
            continue
        choices = space[key].choices if isinstance(space.get(key), CategoricalDistribution) else ()
        for choice in choices:
            try:
                cfg = _multirun_master(hydra, config_name, [*others, override_value(key, choice)])
            except Exception:  # not a value this key takes: the HPO sweeper names it in its own words
                continue
            if identity(cfg) != base:
                refused[key] = None
                listed = ",".join(map(str, choices))
                variants[key] = listed if re.fullmatch(r"[^()'\"\s]+", listed) else None
                break
    return refused, variants
