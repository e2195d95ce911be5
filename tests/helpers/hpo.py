"""Small real HPO sweeps on the synthetic shapes data (no files, seconds per trial) for the HPO tests."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from helpers import ROOT, trainpy

# deterministic on the CPU (one thread), so a trial's value is the same in every sweep that runs it
TINY = ["dataset=shapes", "dataset.train_subset=300", "dataset.test_subset=100", "trainer.epochs=1",
        "trainer.threads=1", "trainer.device=cpu", "trainer.progress=false", "invariance.enabled=false"]


def sweep_args(sweep_dir: Path, *extra: str, n_trials: int = 2, final_seeds: int = 0) -> list[str]:
    return ["-m", "hparams_search=optuna", f"hydra.sweep.dir={sweep_dir}", f"hydra.sweeper.n_trials={n_trials}",
            f"hydra.sweeper.final_seeds={final_seeds}", *TINY, *extra]


def env_for(cache_dir: Path) -> dict[str, str]:
    env = {**os.environ, "POOLSTUDY_CACHE": str(cache_dir)}
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def train(args: list[str], cache_dir: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    return trainpy.run(args, cwd=ROOT, env=env_for(cache_dir), timeout=timeout)


def interrupt_during_trial(args: list[str], cache_dir: Path, trial_dir: Path, delay: float = 0.5,
                           timeout: float = 300) -> subprocess.CompletedProcess:
    """Start ``train.py args`` and send SIGINT (Ctrl-C: to the whole process group, as a terminal does)
    once ``trial_dir`` exists, i.e. while that trial's job runs."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, env=env_for(cache_dir),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + timeout
    while not (trial_dir / ".hydra").is_dir() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, f"the sweep ended before {trial_dir} started: {proc.stderr.read()[-3000:]}"
    time.sleep(delay)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def load(sweep_dir: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{sweep_dir}/optuna.db")


def counted(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The trials that count toward the budget, in order."""
    return [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
            and not t.user_attrs.get("interrupted") and not t.user_attrs.get("over_budget")]


def messages(stderr: str) -> list[str]:
    """What the user reads on stderr, without library warnings and Optuna's info lines."""
    return [ln for ln in stderr.splitlines()
            if ln.strip() and "Warning" not in ln and "optuna_warn" not in ln and not ln.startswith("[I ")]


def suggested_command(message: str) -> list[str]:
    """The last command an error message suggests (``python train.py ...`` up to the end of its sentence)."""
    starts = [m.start() for m in re.finditer(r"python \S*train\.py ", message)]
    assert starts, f"no command in: {message}"
    match = re.match(r"(python \S*train\.py .*?)(?: ;|\.?$)", message[starts[-1]:])
    args = shlex.split(match.group(1))
    assert args[0] == "python" and args[1].endswith("train.py"), args
    return args[2:]


def metrics(job_dir: Path) -> dict:
    return json.loads((job_dir / "metrics.json").read_text())


def files_under(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
