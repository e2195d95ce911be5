"""Group jobs into cells: one variant (the row keys) on one dataset (the panel key).

Any dotted key of the config snapshot can group, plus ``tuning`` ("tuned" for the final seeds of an
HPO study, "untuned" otherwise). HPO trials never enter a cell: they only feed the HPO curves.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from poolstudy.results.records import COMPLETE, MISSING, Job
from poolstudy.errors import PoolStudyError

TUNING = "tuning"
DEFAULT_VARIANT_KEYS = ("model.arch", "model.downsample.type", "model.downsample.kernel_size",
                        "model.downsample.stride")
# Which network of an architecture family (arch=torchvision model.name=..., arch=resnet model.depth=...):
# variant keys after model.arch wherever some job has them; a job without one shows nothing for it.
ARCH_VARIANT_KEYS = ("model.name", "model.depth")
DEFAULT_PANEL_KEY = "dataset.name"
ALIASES = {
    "dataset": "dataset.name",
    "arch": "model.arch",
    "model": "model.downsample.type",
    "downsample": "model.downsample.type",
    "type": "model.downsample.type",
    "kernel": "model.downsample.kernel_size",
    "kernel_size": "model.downsample.kernel_size",
    "stride": "model.downsample.stride",
    "padding": "model.downsample.padding",
}
# How a key's value reads inside a variant label ("maxpool k2 s2").
_LABEL_PREFIX = {"model.downsample.kernel_size": "k", "model.downsample.stride": "s",
                 "model.downsample.padding": "p", "model.downsample.type": "", "model.arch": "",
                 "model.name": "", "model.depth": "depth="}
# keys whose missing (or, for the window, null: model=published) value adds nothing to a label
_SILENT_WHEN_ABSENT = {"model.name": (MISSING,), "model.depth": (MISSING,),
                       "model.downsample.kernel_size": (None,), "model.downsample.stride": (None,)}


def canonical_key(key: str) -> str:
    key = key.strip()
    return ALIASES.get(key, key)


def key_value(job: Job, key: str) -> Any:
    if key == TUNING:
        return "tuned" if job.hpo_role == "final" else "untuned"
    return job.config_value(key)


def seed_key(job: Job) -> tuple:
    """Jobs with one seed share a key; a job without a known seed is its own."""
    seed = job.seed
    return ("job", job.path) if seed is MISSING else ("seed", repr(seed))


def show_value(value: Any) -> str:
    if value is MISSING:
        return "?"
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def sort_key(value: Any) -> tuple:
    """Numbers numerically, then text, then null/missing: kernel 3 sorts before kernel 11."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    if value is None or value is MISSING:
        return (2, 0.0, "")
    return (1, 0.0, str(value))


@dataclass
class Cell:
    panel: Any  # the panel key's value (the dataset), or None without a panel key
    values: dict[str, Any]  # row key -> value
    label: str
    jobs: list[Job] = field(default_factory=list)

    @property
    def complete(self) -> list[Job]:
        return [job for job in self.jobs if job.status == COMPLETE]

    @property
    def expected(self) -> int:
        """The seeds the cell should have results for: one per distinct seed among its jobs, whatever
        their state (a seed run in two folders is one replicate)."""
        return len({seed_key(job) for job in self.jobs})

    def count(self, state: str) -> int:
        return sum(job.status == state for job in self.jobs)

    @property
    def tuned(self) -> bool:
        return self.values.get(TUNING) == "tuned"


@dataclass
class Grouping:
    row_keys: tuple[str, ...]
    panel_key: str | None
    label_keys: tuple[str, ...]  # the row keys whose values differ between cells

    @property
    def keys(self) -> tuple[str, ...]:
        return self.row_keys + ((self.panel_key,) if self.panel_key else ())

    def label(self, values: dict[str, Any]) -> str:
        parts = []
        for key in self.label_keys:
            value = values.get(key, MISSING)
            if key == TUNING:
                if value == "tuned":
                    parts.append("(tuned)")
            elif any(value is absent for absent in _SILENT_WHEN_ABSENT.get(key, ())):
                continue
            elif key in _LABEL_PREFIX:
                parts.append(f"{_LABEL_PREFIX[key]}{show_value(value)}")
            else:
                parts.append(f"{key.rsplit('.', 1)[-1]}={show_value(value)}")
        return " ".join(parts) or "all"


def _known(jobs: Iterable[Job], key: str) -> bool:
    return key == TUNING or any(key_value(job, key) is not MISSING for job in jobs)


def _check_keys(keys: Iterable[str], jobs: list[Job], option: str) -> None:
    for key in keys:
        if not _known(jobs, key):
            examples = sorted({k for job in jobs for k in job.config if not k.startswith("hydra.")})[:12]
            raise PoolStudyError(
                f"{option}: no job has the key {key!r}. Use dotted keys of the jobs' .hydra/config.yaml "
                f"(for example {', '.join(examples) or 'model.downsample.type, dataset.name'}), the derived key "
                f"'{TUNING}', or an alias ({', '.join(f'{a}={k}' for a, k in ALIASES.items())}).")


def make_grouping(jobs: list[Job], by: list[str] | None, panel: str | None) -> tuple[Grouping, list[Cell]]:
    """Cells of the non-trial jobs. ``by`` lists all grouping keys (default: the variant definition,
    tuning where HPO results exist, and the dataset); ``panel`` is the key among them whose values
    become the datasets/columns of the tables."""
    members = [job for job in jobs if job.hpo_role != "trial"]
    panel_key = canonical_key(panel) if panel else DEFAULT_PANEL_KEY
    if by is None:
        keys = list(DEFAULT_VARIANT_KEYS)
        keys[1:1] = [key for key in ARCH_VARIANT_KEYS if _known(members, key)]
        if any(job.hpo_role == "final" for job in members):
            keys.append(TUNING)
        keys.append(panel_key)
    else:
        keys = list(dict.fromkeys(canonical_key(k) for k in by if k.strip()))
    if jobs:  # with none (all excluded, only study summaries), there is nothing to check the keys against
        _check_keys(keys, members or jobs, "--by")
    if panel and panel_key not in keys:
        raise PoolStudyError(f"--panel {panel!r} must be one of the grouping keys (--by): {', '.join(keys)}.")
    row_keys = tuple(k for k in keys if k != panel_key)
    panel_key_used = panel_key if panel_key in keys else None

    grouped: dict[tuple, list[Job]] = {}
    for job in members:
        row = tuple(key_value(job, key) for key in row_keys)
        panel_value = key_value(job, panel_key_used) if panel_key_used else None
        grouped.setdefault((panel_value, row), []).append(job)

    varying = tuple(k for i, k in enumerate(row_keys) if len({row[i] for _, row in grouped}) > 1)
    label_keys = varying or tuple(k for k in row_keys if k != TUNING)
    grouping = Grouping(row_keys, panel_key_used, label_keys)

    def order_key(panel_row: tuple) -> tuple:
        panel_value, row = panel_row
        # untuned before tuned: the tuned row reads as the refinement of the one above it
        return sort_key(panel_value), [(v != "untuned",) if k == TUNING else sort_key(v) for k, v in zip(row_keys, row)]

    order = sorted(grouped, key=order_key)
    cells = []
    for panel_value, row in order:
        values = dict(zip(row_keys, row))
        cells.append(Cell(panel_value, values, grouping.label(values), grouped[(panel_value, row)]))
    return grouping, cells
