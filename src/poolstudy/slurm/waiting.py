"""Waiting for submitted SLURM jobs without relying on SLURM's accounting.

submitit learns that a job ended from ``sacct``. On a cluster without accounting (``sacct``:
"Slurm accounting storage is disabled") a job that dies without writing its result, killed or
failing before Python starts, is never seen as finished, and the launching command waits
forever. Here a job is done when submitit's result file exists; a job that has left squeue's
pending and running jobs without one, and still has none after ``grace_s`` (shared file systems
show new files late), ended without a result. A requeued job stays in squeue (pending) and is
waited for. A pending job whose reason says it can never start (the request exceeds the
partition: ``PartitionConfig``, ``PartitionTimeLimit``, ...) is reported too.

squeue is asked every 2 s at first, then less often (a quarter of the time waited so far, at
most every ``max_interval_s``), as submitit does with sacct, so that long studies do not load
the controller.
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

# states in which a job has ended (squeue --states=all keeps them for MinJobAge, 300 s by default)
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
                "PREEMPTED", "REVOKED"}
# pending reasons that do not go away without a change of the cluster's configuration
NEVER_STARTS = {"PartitionConfig", "PartitionTimeLimit", "PartitionNodeLimit", "BadConstraints"}


@dataclass
class Ended:
    """A job that ended without a result (or can never start)."""

    job_id: str
    state: str   # SLURM's state, or "unknown" once squeue has forgotten the job
    reason: str  # SLURM's reason ("None" when it gives none)
    never_started: bool = False


def queue_states(job_ids: Sequence[str]) -> dict[str, tuple[str, str]] | None:
    """{job id: (state, reason)} for the jobs squeue still knows; None when squeue cannot answer."""
    main_ids = sorted({j.split("_")[0] for j in job_ids})
    try:
        proc = subprocess.run(["squeue", "-h", "-r", "--states=all", "-o", "%i|%T|%r", "-j", ",".join(main_ids)],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.debug("squeue failed: %s", exc)
        return None
    if proc.returncode != 0:
        if "Invalid job id" in proc.stderr:  # every job already forgotten (MinJobAge)
            return {}
        log.debug("squeue failed: %s", proc.stderr.strip())
        return None
    states = {}
    for line in proc.stdout.splitlines():
        job_id, _, rest = line.strip().partition("|")
        state, _, reason = rest.partition("|")
        states[job_id] = (state, reason)
    return states


def wait_for_jobs(jobs: Sequence[Any], grace_s: float = 5.0, poll_s: float = 1.0,
                  max_interval_s: float = 60.0) -> dict[str, Ended]:
    """Wait until every submitit job has its result file or has ended without one.

    Returns the jobs that ended without a result (or can never start), by job id; the others
    have their result file and ``job.results()`` returns at once.
    """
    remaining = {job.job_id: job for job in jobs}
    ended: dict[str, Ended] = {}
    left_queue: dict[str, float] = {}  # job id -> when squeue first showed it ended or absent
    last_state: dict[str, tuple[str, str]] = {}
    start = time.monotonic()
    next_query = start
    warned = False
    while remaining:
        for job_id, job in list(remaining.items()):
            if _has_result(job):
                del remaining[job_id]
        now = time.monotonic()
        if not remaining:
            break
        if now >= next_query or left_queue:
            states = queue_states(list(remaining))
            if states is None:
                if not warned:
                    log.warning("squeue does not answer; still waiting for SLURM jobs %s", ", ".join(remaining))
                    warned = True
            else:
                for job_id in list(remaining):
                    state, reason = states.get(job_id, ("", ""))
                    if state:
                        last_state[job_id] = (state, reason)
                    if state and state not in FINAL_STATES:
                        left_queue.pop(job_id, None)
                        if state == "PENDING" and reason in NEVER_STARTS:
                            ended[job_id] = Ended(job_id, state, reason, never_started=True)
                            del remaining[job_id]
                        continue
                    since = left_queue.setdefault(job_id, now)
                    if now - since >= grace_s and not _has_result(remaining[job_id]):
                        final, why = last_state.get(job_id, ("unknown", "no longer listed by squeue"))
                        ended[job_id] = Ended(job_id, final, why)
                        del remaining[job_id]
            next_query = now + min(max_interval_s, max(2.0, (now - start) / 4))
        time.sleep(poll_s)
    return ended


def _has_result(job: Any) -> bool:
    folder = job.paths.folder
    try:
        folder.chmod(folder.stat().st_mode)  # refreshes a network file system's cached view of the folder
    except OSError:
        pass
    return job.paths.result_pickle.exists()


def cancel(job_ids: Sequence[str]) -> None:
    if job_ids:
        subprocess.run(["scancel", *job_ids], capture_output=True, text=True, timeout=60)
