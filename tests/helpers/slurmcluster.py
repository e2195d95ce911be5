"""A throw-away single-node SLURM cluster for the tests and CI.

Everything lives in a fresh temporary folder: its own munge key and munged (socket in the
folder), slurm.conf, the controller's state and the node's spool, logs and PID files. Both
daemons listen on free ports; the node is this machine as ``slurmd -C`` describes it. Clients
(sbatch, squeue, scontrol, srun inside jobs) find the cluster through ``SLURM_CONF``; sbatch
exports it to the jobs with the rest of the environment.

Where it differs from a production cluster, for a small, fast test: no accounting (so no
``sacct``), ``proctrack/linuxproc`` and ``task/none`` (no cgroups needed), ``cred_expire=10``
(a requeued job restarts after 10 s, not 120 s), a 1 s ``KillWait``, a scheduler that looks at
pending jobs every second, and up to 4 jobs per core. Like many clusters it leaves
``EnforcePartLimits`` off and gives its partition a DefaultTime and a MaxTime, so the launcher's
own check of resource requests and its time-limit rule are what the tests exercise.

Needs root (slurmd starts jobs as their user) and Debian's ``slurmctld slurmd slurm-client munge``.

    python tests/helpers/slurmcluster.py start      # prints the cluster's folder (its slurm.conf is inside)
    python tests/helpers/slurmcluster.py stop DIR   # cancels its jobs, stops the daemons, deletes DIR
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PARTITION = "debug"
DEFAULT_TIME_MIN, MAX_TIME_MIN = 60, 120
DAEMONS = ("slurmd", "slurmctld", "munged")  # stopped in this order
PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "scontrol", "sinfo", "scancel")
INSTALL = "Debian: apt-get install -y slurmctld slurmd slurm-client munge"


class ClusterUnavailable(RuntimeError):
    """A SLURM cluster cannot be started here; the message says why."""


@dataclass
class Cluster:
    folder: Path
    owned: bool = True  # False: a cluster this process did not start (stop() leaves it running)

    @property
    def conf(self) -> Path:
        return self.folder / "slurm.conf"

    def env(self) -> dict[str, str]:
        """Variables that point SLURM's clients at this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    def run(self, *cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a SLURM client command against this cluster."""
        proc = subprocess.run(list(cmd), env={**os.environ, **self.env()}, capture_output=True, text=True,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise ClusterUnavailable(f"{' '.join(cmd)} failed: {(proc.stderr or proc.stdout).strip()[-500:]}")
        return proc

    def node_states(self) -> list[str]:
        proc = self.run("sinfo", "-h", "-N", "-o", "%T", check=False, timeout=20)
        return proc.stdout.split() if proc.returncode == 0 else []

    def check(self) -> None:
        """Raise ClusterUnavailable unless the node answers (idle, mixed or allocated)."""
        if not self.conf.is_file():
            raise ClusterUnavailable(f"{self.conf} does not exist")
        states = self.node_states()
        if not states or not all(s.rstrip("*~#") in ("idle", "mixed", "allocated", "completing") for s in states):
            raise ClusterUnavailable(f"the node is not up (sinfo: {states or 'no answer'}):\n{self.log_tails()}")

    def log_tails(self, lines: int = 8) -> str:
        out = []
        for name in ("munged.log", "slurmctld.log", "slurmd.log"):
            path = self.folder / name
            if path.is_file():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {name}\n" + "\n".join(tail))
        return "\n".join(out)

    def cancel_all_jobs(self, timeout: float = 15) -> None:
        self.run("scancel", "--full", "--partition", PARTITION, check=False, timeout=20)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.run("squeue", "-h", "-o", "%i", check=False, timeout=20)
            if proc.returncode != 0 or not proc.stdout.strip():
                return
            time.sleep(0.5)

    def stop(self) -> None:
        if self.owned:
            stop(self.folder)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_line() -> str:
    """This machine as SLURM sees it (CPUs, sockets, cores, threads, RealMemory)."""
    proc = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, timeout=30)
    first = proc.stdout.splitlines()[0] if proc.stdout else ""
    if proc.returncode != 0 or not first.startswith("NodeName="):
        raise ClusterUnavailable(f"slurmd -C failed: {(proc.stderr or proc.stdout).strip()[-300:]}")
    return first


def slurm_conf(folder: Path, node_line: str, ctld_port: int, slurmd_port: int) -> str:
    host = node_line.split()[0].split("=", 1)[1]
    settings = {
        "ClusterName": "poolstudy",
        "SlurmctldHost": f"{host}(127.0.0.1)",
        "SlurmctldPort": ctld_port,
        "SlurmdPort": slurmd_port,
        "SlurmUser": "root",
        "SlurmdUser": "root",
        "AuthType": "auth/munge",
        "CredType": "cred/munge",
        # a requeued job may only start again once its old credential has expired
        "AuthInfo": f"socket={folder / 'munge.socket'},cred_expire=10",
        "StateSaveLocation": folder / "state",
        "SlurmdSpoolDir": folder / "spool",
        "SlurmctldPidFile": folder / "slurmctld.pid",
        "SlurmdPidFile": folder / "slurmd.pid",
        "SlurmctldLogFile": folder / "slurmctld.log",
        "SlurmdLogFile": folder / "slurmd.log",
        "ProctrackType": "proctrack/linuxproc",
        "TaskPlugin": "task/none",
        "SelectType": "select/cons_tres",
        "SelectTypeParameters": "CR_Core",
        "AccountingStorageType": "accounting_storage/none",
        "JobAcctGatherType": "jobacct_gather/none",
        "JobCompType": "jobcomp/none",
        "MpiDefault": "none",
        "SwitchType": "switch/none",
        "MailProg": "/bin/true",
        "ReturnToService": 2,
        "KillWait": 1,  # seconds from SIGTERM to SIGKILL (submitit ignores SIGTERM)
        "SchedulerType": "sched/backfill",
        "SchedulerParameters": "sched_interval=1,bf_interval=1",
        "SlurmctldDebug": "info",
        "SlurmdDebug": "info",
    }
    lines = [f"{k}={v}" for k, v in settings.items()]
    lines.append(f"{node_line} NodeAddr=127.0.0.1 State=UNKNOWN")
    # time limits as on real clusters: the launcher takes DefaultTime for jobs that set none
    # OverSubscribe: up to 4 jobs share a core, so that a test's jobs all start at once on a small machine
    lines.append(f"PartitionName={PARTITION} Nodes=ALL Default=YES DefaultTime={DEFAULT_TIME_MIN} "
                 f"MaxTime={MAX_TIME_MIN} OverSubscribe=FORCE:4 State=UP")
    return "\n".join(lines) + "\n"


def _spawn(cmd: list[str], env: dict[str, str], what: str) -> None:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise ClusterUnavailable(f"{what} did not start: {(proc.stderr or proc.stdout).strip()[-500:]}")


def start(timeout: float = 60) -> Cluster:
    """Start a cluster; raises ClusterUnavailable with the reason when that is impossible here."""
    missing = [p for p in PROGRAMS if shutil.which(p) is None]
    if missing:
        raise ClusterUnavailable(f"{', '.join(missing)} not installed ({INSTALL})")
    if os.geteuid() != 0:
        raise ClusterUnavailable("slurmd must run as root to start jobs, and this process is not root")
    node_line = _node_line()
    folder = Path(tempfile.mkdtemp(prefix="poolstudy-slurm-"))
    cluster = Cluster(folder)
    try:
        for sub in ("state", "spool"):
            (folder / sub).mkdir()
        key = folder / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        conf = slurm_conf(folder, node_line, _free_port(), _free_port())
        cluster.conf.write_text(conf)
        env = {**os.environ, **cluster.env()}
        _spawn(["munged", "--force", f"--socket={folder / 'munge.socket'}", f"--key-file={key}",
                f"--pid-file={folder / 'munged.pid'}", f"--log-file={folder / 'munged.log'}",
                f"--seed-file={folder / 'munged.seed'}"], env, "munged")
        _spawn(["slurmctld", "-f", str(cluster.conf)], env, "slurmctld")
        _spawn(["slurmd", "-f", str(cluster.conf)], env, "slurmd")
        deadline = time.monotonic() + timeout
        while True:
            try:
                cluster.check()
                return cluster
            except ClusterUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
    except BaseException as exc:
        detail = cluster.log_tails()
        stop(folder)
        if isinstance(exc, ClusterUnavailable) and detail and detail not in str(exc):
            raise ClusterUnavailable(f"{exc}\n{detail}") from None
        raise


def _pid(folder: Path, daemon: str) -> int | None:
    try:
        return int((folder / f"{daemon}.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int, daemon: str) -> bool:
    """Whether ``pid`` is still that daemon (a stale PID file may name a reused PID)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == daemon
    except OSError:
        return False


def stop(folder: Path) -> None:
    """Cancel the cluster's jobs, stop its daemons (by the PIDs in their PID files), delete the folder."""
    folder = Path(folder)
    if (folder / "slurm.conf").is_file() and _pid(folder, "slurmctld"):
        Cluster(folder).cancel_all_jobs()
    for daemon in DAEMONS:
        pid = _pid(folder, daemon)
        if pid is None or not _alive(pid, daemon):
            continue
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _alive(pid, daemon) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid, daemon):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str]) -> int:
    if argv[:1] == ["start"]:
        try:
            cluster = start()
        except ClusterUnavailable as exc:
            print(f"error: cannot start a SLURM cluster: {exc}", file=sys.stderr)
            return 1
        print(cluster.folder)
        return 0
    if len(argv) == 2 and argv[0] == "stop":
        stop(Path(argv[1]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
