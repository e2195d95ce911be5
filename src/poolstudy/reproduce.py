"""Re-run a recorded job from its config snapshot and say whether its figures came out the same.

    python -m poolstudy.reproduce docs/studies/seed_replication/0
    python -m poolstudy.reproduce <job_dir> --out outputs/rerun --threads 2 --dry-run
    python -m poolstudy.reproduce <job_dir> --code record        # the record's own commit

The job is re-run with ``train.py --config-path <job_dir>/.hydra --config-name config`` on the
device and with the thread count the record names, into a new folder (never the record's), and
the new metrics.json is compared with the recorded one (poolstudy.results.reproducibility):

    identical                                    exit 0
    differs within seed noise, because <...>     exit 3
    differs beyond noise                         exit 4
    bad input (no record, --out not new, ...)    exit 2
    the re-run itself failed                     exit 5
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shlex
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from poolstudy.results.reproducibility import (CONFIG_IGNORES, EXIT_CODES, compare_configs, compare_runs,
                                                flatten, format_comparison)
from poolstudy.errors import PoolStudyError
from poolstudy.jobfolder import CONFIG_SNAPSHOT, METRICS_FILE, SNAPSHOT_DIR, read_json, under
from poolstudy.utils.io import atomic_write_json

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = CONFIG_SNAPSHOT
REPORT_FILE = "reproduce.json"
DEFAULT_OUT_ROOT = Path("outputs") / "reproduce"
CODE_PATHS = ("src", "conf", "train.py")  # what train.py needs of a commit
EXIT_BAD_INPUT, EXIT_RERUN_FAILED = 2, 5


@dataclass
class Record:
    path: Path
    config: dict[str, Any]  # the unresolved snapshot
    metrics: dict[str, Any]

    @property
    def environment(self) -> dict[str, Any]:
        env = self.metrics.get("environment")
        return env if isinstance(env, dict) else {}

    @property
    def is_hpo_trial(self) -> bool:
        return (self.config.get("hpo") or {}).get("role") == "trial"


def _read_json(path: Path) -> Any:
    return read_json(path)[0]


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None


def load_record(job_dir: Path) -> Record:
    """The job folder's snapshot and complete metrics; PoolStudyError naming what is missing."""
    if not job_dir.is_dir():
        raise PoolStudyError(f"{job_dir} is not a folder; give a job folder, one that holds .hydra/config.yaml "
                             f"and metrics.json (e.g. docs/studies/seed_replication/0).")
    config = _read_yaml(job_dir / SNAPSHOT)
    if not isinstance(config, dict):
        raise PoolStudyError(f"{job_dir / SNAPSHOT} is missing or not a readable config snapshot; a job folder "
                             f"written by train.py holds it (.hydra/config.yaml), and the re-run starts from it.")
    metrics = _read_json(job_dir / METRICS_FILE)
    if not isinstance(metrics, dict) or metrics.get("status") != "complete":
        raise PoolStudyError(f"{job_dir / METRICS_FILE} is missing or not a complete record (a finished job's "
                             f"metrics.json has \"status\": \"complete\"), so there is nothing to compare with; "
                             f"finish the job first (run its train.py command again to resume it).")
    return Record(job_dir.resolve(), config, metrics)


def _identity(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in flatten(config).items()
            if k != "seed" and not under(k, CONFIG_IGNORES)}


def sibling_seeds(record: Record) -> list[dict[str, Any]]:
    """Metrics of the jobs next to the record with its configuration but another seed, one per seed."""
    identity, seen, found = _identity(record.config), {record.metrics.get("seed")}, []
    for folder in sorted(p for p in record.path.parent.iterdir() if p.is_dir() and p != record.path):
        config = _read_yaml(folder / SNAPSHOT)
        if not isinstance(config, dict) or _identity(config) != identity:
            continue
        metrics = _read_json(folder / METRICS_FILE)
        if isinstance(metrics, dict) and metrics.get("status") == "complete" and metrics.get("seed") not in seen:
            seen.add(metrics.get("seed"))
            found.append(metrics)
    return found


def default_out_dir(record: Record, now: datetime | None = None) -> Path:
    """outputs/reproduce/<study>-<job>_<date>_<time>, relative to the working directory."""
    label = "-".join(record.path.parts[-2:])
    return DEFAULT_OUT_ROOT / f"{label}_{(now or datetime.now()):%Y-%m-%d_%H-%M-%S}"


def check_out_dir(out: Path, record: Record) -> None:
    resolved = out.resolve()
    if resolved == record.path or record.path in resolved.parents:
        raise PoolStudyError(f"--out {out}: is the record's own folder or inside it; the record is never "
                             f"written to. Give a new folder, e.g. --out {default_out_dir(record)}.")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PoolStudyError(f"--out {out}: already exists and is not an empty folder; the re-run needs a new "
                             f"folder (it never overwrites), e.g. --out {default_out_dir(record)}.")


def _override_value(value: Any) -> str:
    """A Hydra override value: plain when the grammar allows it, else single-quoted."""
    text = str(value)
    if re.fullmatch(r"[\w./+:-]+", text):
        return text
    return "'" + text.replace("'", "\\'") + "'"  # inside quotes only a quote needs a backslash


@dataclass
class Plan:
    """The re-run: its command and what it sets beyond the snapshot."""

    argv: list[str]
    out: Path
    notes: list[str]
    code_commit: str | None  # set when the record's commit runs (--code record)
    exclude: tuple[str, ...]  # figures not compared
    config_ignores: tuple[str, ...]

    def shell(self) -> str:
        if not self.code_commit:
            return shlex.join(self.argv)
        # The temporary export the run makes, written out so that it can be typed as it is.
        code = '"$CODE"'
        train = shlex.join(self.argv).replace(shlex.quote(self.argv[1]), f'{code}/train.py', 1)
        return (f"CODE=$(mktemp -d) && git -C {shlex.quote(str(PROJECT_ROOT))} archive {self.code_commit} "
                f"{' '.join(CODE_PATHS)} | tar -x -C {code} && PYTHONPATH={code}/src {train}")


def plan_rerun(record: Record, out: Path, *, threads: int | None = None, device: str | None = None,
               code: str = "current", overrides: tuple[str, ...] = ()) -> Plan:
    """How to re-run ``record`` into ``out``: the snapshot, the recorded device and threads, ``overrides``."""
    env, notes = record.environment, []
    threads = threads if threads is not None else env.get("torch_threads")
    device = device or env.get("device")
    args = [f"hydra.run.dir={_override_value(out.resolve())}"]
    if isinstance(threads, int):
        args.append(f"++trainer.threads={threads}")
    else:
        notes.append("the record does not say how many threads it used; torch's default is used")
    if device:
        args.append(f"++trainer.device={_override_value(device)}")
    exclude, ignores = (), ()
    if record.is_hpo_trial:  # a trial's re-run must not report to (or need) its Optuna storage
        args.append("hpo.role=null")
        exclude, ignores = ("hpo",), ("hpo.role",)
        notes.append("an HPO trial: re-run detached from its study (hpo.role=null); its hpo entry is not compared")
    code_commit = None
    if code == "record":
        code_commit = env.get("git_commit")
        if not code_commit:
            raise PoolStudyError(f"--code record: {record.path / METRICS_FILE} names no git commit "
                                 f"(environment.git_commit); re-run with the current code (--code current).")
        known = subprocess.run(["git", "-C", str(PROJECT_ROOT), "cat-file", "-e", f"{code_commit}^{{commit}}"],
                               capture_output=True, timeout=60)
        if known.returncode != 0:
            raise PoolStudyError(f"--code record: commit {code_commit[:7]} (environment.git_commit of "
                                 f"{record.path / METRICS_FILE}) is not in the git repository at {PROJECT_ROOT}; "
                                 f"fetch it (git fetch) or re-run with the current code (--code current).")
        if env.get("git_dirty"):
            notes.append(f"the record was made with uncommitted changes on top of {code_commit[:7]}, "
                         f"so that commit's code may not be what ran")
    train = PROJECT_ROOT / "train.py"
    if code == "current" and not train.is_file():
        raise PoolStudyError(f"{train} not found: poolstudy.reproduce re-runs jobs with the project's train.py, "
                             f"so run it from a checkout of the project (pip install -e .).")
    argv = [sys.executable, str(train), "--config-path", str(record.path / SNAPSHOT_DIR), "--config-name", "config",
            *args, *overrides]
    return Plan(argv, out, notes, code_commit, exclude, ignores)


def export_code(commit: str, dest: Path) -> None:
    """Write CODE_PATHS of ``commit`` of this checkout's repository into ``dest`` (git archive)."""
    proc = subprocess.run(["git", "-C", str(PROJECT_ROOT), "archive", "--format=tar", commit, "--", *CODE_PATHS],
                          capture_output=True, timeout=120)
    if proc.returncode != 0:
        reason = proc.stderr.decode(errors="replace").strip().splitlines()
        raise PoolStudyError(f"--code record: cannot export commit {commit[:7]} from the git repository at "
                             f"{PROJECT_ROOT} ({reason[-1] if reason else 'git failed'}); fetch that commit "
                             f"(git fetch) or re-run with the current code (--code current).")
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as archive:
        archive.extractall(dest, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))


def execute(plan: Plan) -> int:
    """Run the plan's command (its output goes to this terminal); the exit status."""
    if not plan.code_commit:
        plan.out.mkdir(parents=True, exist_ok=True)
        return subprocess.run(plan.argv).returncode
    with tempfile.TemporaryDirectory(prefix=f"poolstudy-code-{plan.code_commit[:7]}-") as code:
        export_code(plan.code_commit, Path(code))
        plan.out.mkdir(parents=True, exist_ok=True)
        argv = [plan.argv[0], str(Path(code) / "train.py"), *plan.argv[2:]]
        path = os.pathsep.join(filter(None, [str(Path(code) / "src"), os.environ.get("PYTHONPATH")]))
        return subprocess.run(argv, env={**os.environ, "PYTHONPATH": path}).returncode


def compare_with_record(record: Record, out: Path, plan: Plan):
    """The Comparison of the re-run in ``out`` with ``record``."""
    rerun = _read_json(out / METRICS_FILE)
    if not isinstance(rerun, dict) or rerun.get("status") != "complete":
        return None
    rerun_config = _read_yaml(out / SNAPSHOT)
    config_diffs = compare_configs(record.config, rerun_config, plan.config_ignores) if isinstance(rerun_config, dict) else []
    comparison = compare_runs(record.metrics, rerun, sibling_seeds(record), config_differences=config_diffs,
                              exclude=plan.exclude, code_from_record=bool(plan.code_commit))
    comparison.notes[:0] = plan.notes
    if plan.code_commit:
        comparison.notes.append(f"ran the record's own commit {plan.code_commit[:7]} (--code record)")
    return comparison


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m poolstudy.reproduce",
        description="Re-run a recorded job from its .hydra snapshot into a new folder and compare its metrics.json "
                    "with the record: 'identical' (exit 0), 'differs within seed noise, because <condition>' "
                    "(exit 3) or 'differs beyond noise' (exit 4). Bad input exits 2, a failed re-run 5.")
    parser.add_argument("job_dir", type=Path, help="the recorded job folder (holds .hydra/config.yaml and metrics.json)")
    parser.add_argument("overrides", nargs="*", metavar="OVERRIDE",
                        help="extra train.py overrides, e.g. data_dir=/data (config changes are listed as conditions)")
    parser.add_argument("--out", type=Path, help=f"a new folder for the re-run (default: "
                                                 f"{DEFAULT_OUT_ROOT}/<study>-<job>_<date>_<time>)")
    parser.add_argument("--threads", type=int, help="torch threads (default: the record's environment.torch_threads)")
    parser.add_argument("--device", help="device (default: the record's environment.device)")
    parser.add_argument("--code", choices=("current", "record"), default="current",
                        help="current: this checkout's code (default); record: the record's git commit, "
                             "exported from this repository, to rule out code changes")
    parser.add_argument("--dry-run", "--print-command", dest="dry_run", action="store_true",
                        help="print the train.py command and the folder, run nothing")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)  # overrides may come before or after options
    try:
        record = load_record(args.job_dir)
        out = args.out or default_out_dir(record)
        check_out_dir(out, record)
        if args.threads is not None and args.threads < 1:
            raise PoolStudyError(f"--threads {args.threads}: give a positive number of threads, e.g. --threads 1.")
        plan = plan_rerun(record, out, threads=args.threads, device=args.device, code=args.code,
                          overrides=tuple(args.overrides))
        print(f"record: {record.path}\nre-run: {out.resolve()}", flush=True)
        for note in plan.notes:
            print(f"note: {note}")
        print(f"command: {plan.shell()}", flush=True)
        if args.dry_run:
            return 0
        status = execute(plan)
        comparison = compare_with_record(record, out, plan) if status == 0 else None
    except PoolStudyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if comparison is None:
        print(f"error: the re-run failed (exit {status}) and wrote no complete {METRICS_FILE} in {out}; its "
              f"output above says why. Nothing was compared.", file=sys.stderr)
        return EXIT_RERUN_FAILED
    report = {"record": str(record.path), "rerun": str(out.resolve()), "command": plan.shell(),
              **comparison.to_json()}
    atomic_write_json(out / REPORT_FILE, report)
    print(format_comparison(comparison))
    print(f"(also in {out / REPORT_FILE})")
    return EXIT_CODES[comparison.verdict]


if __name__ == "__main__":
    sys.exit(main())
