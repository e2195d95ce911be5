"""What each SLURM job asks for, and whether the cluster can ever give it.

The rule for a resource the user left unset (null) in ``hydra.launcher``:

- ``gpus_per_node``: 1 when the jobs' ``trainer.device`` is ``cuda`` (N+1 for ``cuda:N``, as a
  job sees only its own GPUs, numbered from 0); no GPU for ``auto``, ``cpu`` and ``mps``;
- ``cpus_per_task``: the jobs' ``trainer.threads`` when that is set, else the cluster's default;
- ``timeout_min``: the partition's DefaultTime, else its MaxTime, else no limit is requested;
- ``mem_gb`` and everything else: the cluster's defaults.

A request no node of the partition can ever satisfy is refused before anything is submitted,
naming the ``hydra.launcher.*`` key: without ``EnforcePartLimits`` SLURM accepts such a job and
leaves it pending forever (reason ``PartitionConfig``). The limits come from ``scontrol show
partition`` and ``scontrol show node`` (CPUs, RealMemory, gpu GRES, MaxTime, MaxNodes,
MaxCPUsPerNode, MaxMemPerNode).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from poolstudy.errors import PoolStudyError

GPU_KEYS = ("gpus_per_node", "gpus_per_task", "gres")


class ClusterQueryFailed(RuntimeError):
    """scontrol could not be asked (not a user mistake); the launcher then leaves the check to sbatch."""


@dataclass(frozen=True)
class Node:
    name: str
    cpus: int
    memory_mb: int
    gpus: int


@dataclass(frozen=True)
class Partition:
    name: str
    nodes: tuple[Node, ...]
    max_time_min: int | None = None      # None: unlimited
    default_time_min: int | None = None  # None: the MaxTime applies
    max_nodes: int | None = None
    max_cpus_per_node: int | None = None
    max_mem_per_node_mb: int | None = None


@dataclass
class Request:
    """The launcher's parameters after filling in unset resources, and where each filled one came from."""

    params: dict[str, Any]
    origin: dict[str, str] = field(default_factory=dict)

    def describe(self, key: str) -> str:
        text = f"hydra.launcher.{key} = {self.params.get(key)!r}"
        return f"{text} (from {self.origin[key]})" if key in self.origin else text


# ------------------------------------------------------------------ reading scontrol

def _fields(line: str) -> dict[str, str]:
    # values never contain spaces except a few free-text ones (OS=...), whose extra words hold no "="
    return dict(re.findall(r"(?:^|\s)([A-Za-z]+)=(\S*)", line))


def parse_minutes(text: str | None) -> int | None:
    """Minutes (seconds rounded up) of a SLURM duration: ``days-hours[:minutes[:seconds]]``,
    ``hours:minutes:seconds``, ``minutes:seconds`` or ``minutes``; None for unlimited."""
    if not text or text.upper() in ("UNLIMITED", "INFINITE", "NONE", "N/A"):
        return None
    days, _, clock = text.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    if days or len(parts) == 3:  # [days-]hours[:minutes[:seconds]]
        hours, minutes, seconds = parts + [0] * (3 - len(parts))
    elif len(parts) == 2:  # minutes:seconds
        hours, minutes, seconds = 0, parts[0], parts[1]
    else:  # minutes
        hours, minutes, seconds = 0, parts[0], 0
    return int(days or 0) * 1440 + hours * 60 + minutes + (1 if seconds else 0)


def _number(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None


def gpu_count(gres: str) -> int:
    """GPUs in a node's Gres string, e.g. ``gpu:a100:4(S:0-1),gpu:v100:2`` -> 6; ``(null)`` -> 0."""
    return sum(int(n) for n in re.findall(r"(?:^|,)gpu(?::[\w.-]+)?:(\d+)", gres or ""))


def _scontrol(*args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["scontrol", *args], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ClusterQueryFailed(f"scontrol {' '.join(args)}: {exc}") from None


def query_partition(name: str | None) -> Partition:
    """The partition jobs go to (the cluster's default when ``name`` is None) and its nodes."""
    proc = _scontrol("show", "partition", "-o")
    if proc.returncode != 0:
        raise ClusterQueryFailed((proc.stderr or proc.stdout).strip()[-300:])
    partitions = [_fields(line) for line in proc.stdout.splitlines() if line.startswith("PartitionName=")]
    names = [p["PartitionName"] for p in partitions]
    if name is None:
        found = [p for p in partitions if p.get("Default") == "YES"]
        if not found:
            raise PoolStudyError(f"hydra.launcher.partition is not set and this SLURM cluster has no default "
                                 f"partition. Choose one of {', '.join(names) or '(none found)'}, e.g. "
                                 f"hydra.launcher.partition={names[0] if names else '<name>'}.")
    else:
        found = [p for p in partitions if p["PartitionName"] == name]
        if not found:
            raise PoolStudyError(f"hydra.launcher.partition = {name!r} is not a partition of this SLURM cluster; "
                                 f"it has {', '.join(names) or '(none)'} (sinfo lists them)"
                                 + (f", e.g. hydra.launcher.partition={names[0]}." if names else "."))
    part = found[0]
    nodes: list[Node] = []
    if part.get("Nodes") and part["Nodes"] != "(null)":
        proc = _scontrol("show", "node", "-o", part["Nodes"])
        if proc.returncode != 0:
            raise ClusterQueryFailed((proc.stderr or proc.stdout).strip()[-300:])
        for line in proc.stdout.splitlines():
            f = _fields(line)
            if "NodeName" not in f:
                continue
            cpus = _number(f.get("CPUEfctv")) or _number(f.get("CPUTot")) or 0
            memory = (_number(f.get("RealMemory")) or 0) - (_number(f.get("MemSpecLimit")) or 0)
            nodes.append(Node(f["NodeName"], cpus, memory, gpu_count(f.get("Gres", ""))))
    return Partition(part["PartitionName"], tuple(nodes), parse_minutes(part.get("MaxTime")),
                     parse_minutes(part.get("DefaultTime")), _number(part.get("MaxNodes")),
                     _number(part.get("MaxCPUsPerNode")), _number(part.get("MaxMemPerNode")))


# ------------------------------------------------------------------ the request

def gpus_for_device(device: str) -> int:
    """GPUs a job with this ``trainer.device`` needs from SLURM (0 for auto, cpu, mps)."""
    if not device.startswith("cuda"):
        return 0
    _, _, index = device.partition(":")
    return int(index) + 1 if index.isdigit() else 1


def _unset(value: Any) -> bool:
    return value is None or value == ""


def derive_request(params: Mapping[str, Any], jobs: Iterable[tuple[str, int | None]],
                   partition: Partition | None) -> Request:
    """Fill in the resources the user left unset; ``jobs`` gives each job's (trainer.device, trainer.threads)."""
    request = Request(dict(params))
    p = request.params
    extra = {k.replace("-", "_") for k in (p.get("additional_parameters") or {})}
    jobs = list(jobs)
    if all(_unset(p.get(k)) for k in GPU_KEYS) and not extra & {*GPU_KEYS, "gpus"}:
        device, gpus = max(((d, gpus_for_device(d)) for d, _ in jobs), key=lambda x: x[1], default=("", 0))
        if gpus:
            p["gpus_per_node"] = gpus
            request.origin["gpus_per_node"] = f"trainer.device={device}"
    if _unset(p.get("cpus_per_task")) and not extra & {"cpus_per_task", "cpus_per_gpu"}:
        threads = max((t for _, t in jobs if t), default=None)
        if threads:
            p["cpus_per_task"] = threads
            request.origin["cpus_per_task"] = f"trainer.threads={threads}"
    if _unset(p.get("timeout_min")) and partition is not None:
        limit = partition.default_time_min or partition.max_time_min
        if limit:
            p["timeout_min"] = limit
            which = "DefaultTime" if partition.default_time_min else "MaxTime"
            request.origin["timeout_min"] = f"partition {partition.name}'s {which}"
    return request


def check_request(request: Request, partition: Partition) -> None:
    """Raise PoolStudyError, naming the hydra.launcher key, when no node of ``partition`` can run the jobs."""
    p, nodes = request.params, partition.nodes
    where = f"SLURM partition {partition.name!r}"
    other = "or choose another partition with hydra.launcher.partition=<name> (sinfo lists them)"
    if not nodes:
        return
    n_nodes = int(p.get("nodes") or 1)
    node_limit = min(len(nodes), partition.max_nodes or len(nodes))
    if n_nodes > node_limit:
        raise PoolStudyError(f"{request.describe('nodes')} cannot be satisfied: {where} has {node_limit} node(s) "
                             f"for one job. Ask for at most hydra.launcher.nodes={node_limit}, {other}.")
    tasks = int(p.get("tasks_per_node") or 1)
    needs: dict[str, tuple[int, Any]] = {}  # key -> (amount per node, how a node offers it)
    if not _unset(p.get("cpus_per_task")):
        needs["cpus_per_task"] = (int(p["cpus_per_task"]) * tasks, "cpus")
    if not _unset(p.get("mem_gb")):
        needs["mem_gb"] = (int(float(p["mem_gb"]) * 1024), "memory_mb")
    gpu_key = next((k for k in ("gpus_per_node", "gpus_per_task") if not _unset(p.get(k))), None)
    if gpu_key:
        needs[gpu_key] = (int(p[gpu_key]) * (tasks if gpu_key == "gpus_per_task" else 1), "gpus")
    caps = {"cpus": partition.max_cpus_per_node, "memory_mb": partition.max_mem_per_node_mb}
    for key, (amount, attr) in needs.items():
        best = max(getattr(n, attr) for n in nodes)
        if caps.get(attr) is not None:
            best = min(best, caps[attr])
        if amount > best:
            raise PoolStudyError(_too_big(request, key, amount, best, attr, where, other, tasks))
    fitting = [n for n in nodes if all(getattr(n, attr) >= amount for amount, attr in needs.values())]
    if len(fitting) < n_nodes:
        asked = ", ".join(request.describe(k) for k in needs)
        largest = "; ".join(f"{n.name}: {n.cpus} CPUs, {n.memory_mb // 1024} GB, {n.gpus} GPUs" for n in nodes[:5])
        raise PoolStudyError(f"No {n_nodes} node(s) of {where} have all of {asked} at once (nodes: {largest}). "
                             f"Lower one of these keys, {other}.")
    limit = partition.max_time_min
    if not _unset(p.get("timeout_min")) and limit is not None and int(p["timeout_min"]) > limit:
        raise PoolStudyError(f"{request.describe('timeout_min')} minutes exceeds the time limit of {where} "
                             f"({limit} minutes). Ask for at most hydra.launcher.timeout_min={limit} (jobs that "
                             f"reach it are requeued and resume from their checkpoint), {other}.")


def _too_big(request: Request, key: str, amount: int, best: int, attr: str, where: str, other: str,
             tasks: int) -> str:
    head = f"{request.describe(key)} cannot be satisfied: "
    if attr == "gpus":
        if best == 0:
            head += f"no node of {where} has GPUs (gpu GRES)."
            fix = (f"Leave it unset (hydra.launcher.{key}=null) for CPU jobs" if key not in request.origin
                   else "Use trainer.device=auto or trainer.device=cpu for CPU jobs")
            return f"{head} {fix}, {other}."
        head += f"the nodes of {where} have at most {best} GPUs."
        if key in request.origin:  # a job sees its GPUs as cuda:0 ... cuda:<n-1>
            return f"{head} Use trainer.device=cuda (one GPU per job), {other}."
        most = best // tasks if key == "gpus_per_task" else best
        return f"{head} Ask for at most hydra.launcher.{key}={most}, {other}."
    if attr == "cpus":
        most = best // tasks
        fix = (f"trainer.threads={most}" if key in request.origin else f"hydra.launcher.cpus_per_task={most}")
        return f"{head}the nodes of {where} have at most {best} CPUs. Ask for at most {fix}, {other}."
    return (f"{head}the nodes of {where} have at most {best} MB of memory. Ask for at most "
            f"hydra.launcher.mem_gb={best // 1024}, or leave it unset (hydra.launcher.mem_gb=null) for the "
            f"cluster's default, {other}.")


# ------------------------------------------------------------------ sbatch's refusals

# sbatch's error text -> the hydra.launcher keys that produce that part of the request
_SBATCH_ERRORS = [
    ("generic resource", GPU_KEYS),
    ("gres", GPU_KEYS),
    ("partition", ("partition",)),
    ("account", ("account",)),
    ("qos", ("qos",)),
    ("time limit", ("timeout_min",)),
    ("memory", ("mem_gb", "mem_per_cpu", "mem_per_gpu")),
    ("feature", ("constraint",)),
    ("node configuration", ("cpus_per_task", "mem_gb", "gpus_per_node", "gpus_per_task", "gres", "constraint",
                            "nodes", "tasks_per_node")),
]


def explain_sbatch_error(output: str, request: Request) -> str:
    """One paragraph for a refused submission: sbatch's own words and the keys that made that part of it."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip().lower().startswith("sbatch: error")]
    if lines:
        said = "; ".join(ln.split(":", 2)[-1].strip() for ln in lines)
    else:
        said = (output.strip().splitlines() or ["no message"])[-1]
    if any(t in said.lower() for t in ("contact slurm controller", "socket timed out", "zero bytes were transmitted")):
        return (f"SLURM's controller does not answer ({said.rstrip('.')}): nothing was submitted. Run the command on "
                f"the cluster's login node once `sinfo` answers there.")
    keys: list[str] = []
    for needle, candidates in _SBATCH_ERRORS:
        if needle in said.lower():
            keys += [k for k in candidates if k not in keys and not _unset(request.params.get(k))]
    named = ", ".join(request.describe(k) for k in keys) if keys else (
        "the hydra.launcher keys (partition, account, qos, constraint, cpus_per_task, mem_gb, gpus_per_node, "
        "timeout_min, additional_parameters)")
    return (f"SLURM refused the jobs: {said.rstrip('.')}. This comes from {named}; change it on the command line "
            f"(hydra.launcher.<key>=...) or in conf/hydra/launcher/slurm.yaml (sinfo and scontrol show partition "
            f"list what the cluster offers).")


def cpus_of_this_job() -> int | None:
    """CPUs SLURM gave the running job on this node (None outside a SLURM job)."""
    for var in ("SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE"):
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None
