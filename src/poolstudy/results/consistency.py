"""Flags for results that should not be compared as they are: jobs of one cell that differ in a config
key nobody grouped by or in the data their metrics.json records, variants run with different settings
or data, and results from several code versions."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from poolstudy.jobfolder import LOGGER_KEY
from poolstudy.results.cells import Cell, Grouping, show_value
from poolstudy.results.identity import RECORDED_DATA_KEYS, recorded_data
from poolstudy.results.records import MISSING, Job

# Keys that differ between jobs by design or do not change results (hpo.*: the HPO sweeper's bookkeeping;
# dataset.download decides only whether missing files may be fetched: the data a job read is compared
# through what its metrics.json recorded; the experiment trackers, poolstudy.jobfolder.LOGGER_KEY).
PER_JOB_KEYS = frozenset({"seed", "data_dir", "cache_dir", "dataset.download", "trainer.progress"})
PER_JOB_PREFIXES = ("hydra.", "hpo.", f"{LOGGER_KEY}.")
# Between variants, the downsampling operator's own settings are what is being compared.
VARIANT_PREFIX = "model.downsample."
ARCH_KEY, ARCH_PREFIX = "model.arch", "model."
MAX_NAMED = 10  # job folders named in one flag


def _where(panel: Any) -> str:
    return "all jobs" if panel is None else show_value(panel)


def _listing(counts: Counter) -> str:
    return ", ".join(f"{show_value(value)} ({n} job{'s' if n != 1 else ''})"
                     for value, n in sorted(counts.items(), key=lambda item: (-item[1], show_value(item[0]))))


class _Ignore:
    def __init__(self, grouping: Grouping, extra: Iterable[str]):
        self.exact = PER_JOB_KEYS | set(grouping.keys) | set(extra)
        self.prefixes = PER_JOB_PREFIXES + tuple(f"{key}." for key in extra)

    def __call__(self, key: str) -> bool:
        return key in self.exact or key.startswith(self.prefixes)


def _keys(jobs: list[Job], ignored: _Ignore) -> list[str]:
    keys = {key for job in jobs for key in job.config} | {key for job in jobs for key in recorded_data(job)}
    return sorted(key for key in keys if not ignored(key))


def _values(jobs: list[Job], key: str) -> list[Any]:
    """The key's value per job; the data a job recorded only where its metrics.json exists."""
    if key in RECORDED_DATA_KEYS:
        return [v for v in (recorded_data(job).get(key, MISSING) for job in jobs) if v is not MISSING]
    return [job.config.get(key, MISSING) for job in jobs]


def _within_cells(cells: list[Cell], ignored: _Ignore) -> list[str]:
    """Only the finished jobs make a cell's mean: an invalid or failed job of other settings (listed under
    'not finished') mixes nothing."""
    flags = []
    for cell in cells:
        jobs = [job for job in cell.complete if job.config]
        for key in _keys(jobs, ignored):
            counts = Counter(_values(jobs, key))
            if len(counts) > 1:
                flags.append(f"{_where(cell.panel)} / {cell.label}: its jobs differ in {key}: {_listing(counts)}; "
                             "their mean mixes different settings.")
    return flags


def _between_variants(cells: list[Cell], ignored: _Ignore) -> list[str]:
    """Untuned variants on one dataset should share every setting but the operator (tuned ones differ
    in their tuned hyper-parameters by design). Architectures define their own ``model.*`` keys, so
    those are compared only between variants of one architecture."""
    flags = []
    for panel in dict.fromkeys(cell.panel for cell in cells):
        peers = [cell for cell in cells if cell.panel == panel and not cell.tuned and any(j.config for j in cell.jobs)]
        jobs = [job for cell in peers for job in cell.jobs if job.config]
        for key in _keys(jobs, ignored):
            if key.startswith(VARIANT_PREFIX):
                continue
            families: dict[Any, list[Cell]] = {}
            for cell in peers:
                arch = _uniform(cell, ARCH_KEY) if key.startswith(ARCH_PREFIX) else None
                families.setdefault(arch, []).append(cell)
            for family in families.values():
                flag = _disagreement(family, key)
                if flag:
                    flags.append(f"{_where(panel)}: variants were run with different {key} ({flag}); "
                                 "their comparison is confounded by it.")
    return flags


def _uniform(cell: Cell, key: str) -> Any:
    """The key's value shared by all of a cell's jobs; MISSING when they disagree or lack it."""
    values = set(_values([job for job in cell.jobs if job.config], key))
    return values.pop() if len(values) == 1 else MISSING


def _disagreement(cells: list[Cell], key: str) -> str | None:
    per_value: dict[Any, list[str]] = {}
    for cell in cells:
        values = set(_values([job for job in cell.jobs if job.config], key))
        if len(values) == 1:  # cells that disagree internally are flagged already
            per_value.setdefault(values.pop(), []).append(cell.label)
    if len(per_value) < 2:
        return None
    return "; ".join(f"{show_value(v)}: {', '.join(labels)}"
                     for v, labels in sorted(per_value.items(), key=lambda i: show_value(i[0])))


def _code_versions(cells: list[Cell]) -> list[str]:
    flags = []
    for panel in dict.fromkeys(cell.panel for cell in cells):
        finished = [job for cell in cells if cell.panel == panel for job in cell.complete]
        commits = Counter(job.git_commit or "unknown" for job in finished)
        if len(commits) > 1:
            listing = ", ".join(f"{commit[:10]} ({n} job{'s' if n != 1 else ''})"
                                for commit, n in sorted(commits.items(), key=lambda i: (-i[1], i[0])))
            flags.append(f"{_where(panel)}: results come from {len(commits)} code versions (git commit {listing}); "
                         "mixing them may invalidate the comparison.")
    dirty = [job.path for cell in cells for job in cell.complete if job.git_dirty]
    if dirty:
        shown = ", ".join(dirty[:MAX_NAMED]) + (f" and {len(dirty) - MAX_NAMED} more" if len(dirty) > MAX_NAMED else "")
        flags.append(f"{len(dirty)} finished job{'s' if len(dirty) != 1 else ''} ran from a working tree with "
                     f"uncommitted changes (git_dirty: {shown}); their code is not exactly their commit.")
    return flags


def check(cells: list[Cell], grouping: Grouping, ignore: Iterable[str] = ()) -> list[str]:
    ignored = _Ignore(grouping, list(ignore))
    return _within_cells(cells, ignored) + _between_variants(cells, ignored) + _code_versions(cells)
