"""One seed, one replicate: the jobs of a cell that share a seed are not independent samples.

Within a cell, jobs with the same seed and the same settings (``identity.differences`` finds none)
are one job run more than once (a value repeated in a sweep, a re-run into another folder): they are
collapsed to one: the first finished folder found (PATHs in the order given, folders by name). Jobs with the same seed but
different settings are not replicates either: the seed counts once, with the mean of its finished
jobs, and a flag names the settings that differ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from poolstudy.results import identity
from poolstudy.results.cells import Cell, seed_key, show_value, sort_key
from poolstudy.results.records import COMPLETE, MISSING, Job


@dataclass
class Duplicate:
    """Folders of one cell holding the same job (same seed, same settings): counted once, as ``kept``."""

    panel: Any
    label: str
    seed: Any
    kept: Job
    dropped: list[Job]
    values: dict[str, float | None] = field(default_factory=dict)  # the metric of each finished folder

    @property
    def where(self) -> str:
        return f"{'all jobs' if self.panel is None else show_value(self.panel)} / {self.label}"

    def describe(self, metric: str) -> str:
        others = ", ".join(job.path + ("" if job.status == COMPLETE else f" ({job.status})") for job in self.dropped)
        text = (f"{others} {'repeats' if len(self.dropped) == 1 else 'repeat'} {self.kept.path} (seed "
                f"{show_value(self.seed)}, same settings) in {self.where}: counted once, as {self.kept.path}")
        finished = {path: v for path, v in self.values.items() if v is not None}
        if len(set(finished.values())) > 1:
            text += (f"; their {metric} differ ({', '.join(f'{v:.6g} in {p}' for p, v in finished.items())}), "
                     "as runs on other hardware, threads or library versions may")
        return text


def _by_seed(jobs: list[Job]) -> dict[tuple, list[Job]]:
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        groups.setdefault(seed_key(job), []).append(job)
    return groups


def _clusters(jobs: list[Job]) -> list[list[Job]]:
    """Jobs of one seed (in the order they were found) in groups of equal settings, each led by its
    first finished job, else its first job."""
    clusters: list[list[Job]] = []
    for job in sorted(jobs, key=lambda j: j.status != COMPLETE):  # stable: found order within each
        for cluster in clusters:
            if not identity.differences(cluster[0], job):
                cluster.append(job)
                break
        else:
            clusters.append([job])
    return clusters


def _setting(job: Job, key: str) -> Any:
    value = identity.settings(job).get(key, MISSING)
    return job.config_value(key) if value is MISSING else value


def _differing(leaders: list[Job]) -> list[str]:
    return sorted({key for i, a in enumerate(leaders) for b in leaders[i + 1:] for key in identity.differences(a, b)})


def _mixed_flag(cell: Cell, mixed: list[tuple[Any, list[Job]]]) -> str:
    """One flag per cell: the first mixed seed in detail, the others by number."""
    seed, leaders = mixed[0]
    listing = "; ".join(f"{key}: " + ", ".join(f"{show_value(_setting(job, key))} in {job.path}" for job in leaders)
                        for key in _differing(leaders))
    where = "all jobs" if cell.panel is None else show_value(cell.panel)
    text = f"{where} / {cell.label}: seed {show_value(seed)} has {len(leaders)} jobs with different settings ({listing})"
    if len(mixed) > 1:
        keys = sorted({key for _, jobs in mixed[1:] for key in _differing(jobs)})
        text += (f", and so do seeds {', '.join(show_value(s) for s, _ in mixed[1:])} (in "
                 f"{', '.join(keys)})")
    return (text + "; they are not replicates: each seed counts once, with the mean of its finished jobs. "
            "Group by the differing key (--by) to compare them.")


def collapse(cells: list[Cell], metric: str) -> tuple[list[Duplicate], list[str]]:
    """Removes repeated jobs from the cells (in place); returns them and flags for seeds whose jobs
    differ in their settings."""
    duplicates: list[Duplicate] = []
    flags: list[str] = []
    for cell in cells:
        dropped: set[int] = set()
        mixed: list[tuple[Any, list[Job]]] = []
        for jobs in _by_seed(cell.jobs).values():
            if len(jobs) < 2:
                continue
            clusters = _clusters(jobs)
            for cluster in clusters:
                if len(cluster) > 1:
                    kept, rest = cluster[0], cluster[1:]
                    dropped.update(id(job) for job in rest)
                    duplicates.append(Duplicate(cell.panel, cell.label, kept.seed, kept, rest,
                                                {job.path: job.number(metric) for job in cluster}))
            if len(clusters) > 1:
                mixed.append((jobs[0].seed, [cluster[0] for cluster in clusters]))
        if mixed:
            flags.append(_mixed_flag(cell, sorted(mixed, key=lambda item: sort_key(item[0]))))
        cell.jobs = [job for job in cell.jobs if id(job) not in dropped]
    return duplicates, flags


def per_seed(jobs: list[Job], value: Callable[[Job], float | None]) -> list[tuple[Any, float, list[Job]]]:
    """(seed, mean value, its jobs) for each seed with a value, in seed order: the unit of replication
    is the seed, whatever number of job folders it has."""
    groups: dict[tuple, list[tuple[Job, float]]] = {}
    for job in jobs:
        number = value(job)
        if number is not None:
            groups.setdefault(seed_key(job), []).append((job, number))
    rows = []
    for members in groups.values():
        seed_jobs = sorted((job for job, _ in members), key=lambda job: job.path)
        rows.append((seed_jobs[0].seed, sum(n for _, n in members) / len(members), seed_jobs))
    return sorted(rows, key=lambda row: (sort_key(row[0]), row[2][0].path))
