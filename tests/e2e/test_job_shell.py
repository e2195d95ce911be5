"""How train.py jobs start and end, run as users run them (subprocesses): job identity, failures,
interrupts, launchers that die, two processes on one folder, a full disk, ``-m --cfg``."""

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

import pytest
import torch

from helpers import FAULTS, ROOT, trainpy
from helpers.datafiles import make_idx_dataset

QUICK = ["dataset=shapes", "dataset.train_subset=100", "dataset.test_subset=50", "trainer.epochs=1",
         "invariance.enabled=false", "trainer.progress=false", "trainer.threads=1"]
# epochs of a few seconds, so that a signal lands inside one
LONG = ["dataset=shapes", "dataset.train_subset=3000", "dataset.test_subset=50", "invariance.enabled=false",
        "trainer.progress=false", "trainer.threads=1"]



@pytest.fixture()
def env(cache_dir) -> dict[str, str]:
    env = {**os.environ, "POOLSTUDY_CACHE": str(cache_dir)}
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def train(env, *args: str, extra_env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return trainpy.run(args, cwd=ROOT, env={**env, **(extra_env or {})}, timeout=timeout)


def start(env, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_for(condition, timeout: float = 300, what: str = "") -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def files(folder: Path, skip: tuple[str, ...] = (".lock",)) -> dict[str, tuple[bytes, int]]:
    """Every file's bytes and mtime (the lock file holds its last holder, so it is left out)."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in skip}


def metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if text in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


# ------------------------------------------------------------------ job identity

@pytest.mark.slow
def test_single_run_into_a_folder_of_another_configuration(env, tmp_path):
    run = tmp_path / "run"
    first = train(env, "model=maxpool", *QUICK, f"hydra.run.dir={run}")
    assert first.returncode == 0, first.stderr[-3000:]
    before = files(run)

    other = train(env, "model=avgpool", *QUICK, f"hydra.run.dir={run}")
    assert other.returncode == 2 and "Traceback" not in other.stderr + other.stdout
    message = other.stderr.strip()
    assert message.startswith(f"error: {run} already holds metrics.json of another configuration; this run differs "
                              "in model.downsample.type: 'maxpool' -> 'avgpool'. Nothing was written there."), message
    assert "\n" not in message
    assert files(run) == before  # snapshot, metrics, log: same bytes, same mtimes
    assert metrics(run)["model"]["downsample"]["type"] == "maxpool"

    suggested = re.search(r"Run this configuration in another folder: (hydra\.run\.dir=\S+)", message).group(1)
    assert suggested == f"hydra.run.dir={run}-2"
    moved = train(env, "model=avgpool", *QUICK, suggested)  # the suggestion works when typed
    assert moved.returncode == 0, moved.stderr[-3000:]
    assert metrics(Path(f"{run}-2"))["model"]["downsample"]["type"] == "avgpool"
    # the same configuration reusing its results: tests/unit/jobs/test_job_folder.py and tests/e2e/test_resume.py


@pytest.mark.slow
def test_multirun_rerun_with_other_values_refuses_each_job_and_says_so(env, tmp_path):
    sweep = tmp_path / "sweep"
    first = train(env, "-m", "model=maxpool,strided", *QUICK, f"hydra.sweep.dir={sweep}")
    assert first.returncode == 0, first.stderr[-3000:]
    before = {job: files(sweep / job) for job in ("0", "1")}

    rerun = train(env, "-m", "model=avgpool,maxpool", *QUICK, f"hydra.sweep.dir={sweep}")
    assert rerun.returncode == 1 and "Traceback" not in rerun.stderr + rerun.stdout
    summary = rerun.stderr[rerun.stderr.index("error: 2 of 2 jobs of this multirun did not finish"):].splitlines()
    assert summary[1] == (f"  {sweep / '0'}: refused: already holds metrics.json of another configuration; this run "
                          "differs in model.downsample.type: 'maxpool' -> 'avgpool'")
    assert summary[2].startswith(f"  {sweep / '1'}: refused: already holds metrics.json of another configuration")
    assert f"hydra.sweep.dir={sweep}-2" in rerun.stderr
    assert {job: files(sweep / job) for job in ("0", "1")} == before
    assert not (sweep / ".outcomes").exists()


# ------------------------------------------------------------------ failures

@pytest.mark.slow
def test_an_unexpected_exception_fails_its_job_only(env, tmp_path):
    sweep = tmp_path / "sweep"
    faulty = {"PYTHONPATH": str(FAULTS), "POOLSTUDY_TEST_FAULT_SEED": "1"}
    proc = train(env, "-m", "seed=0,1,2", *QUICK, f"hydra.sweep.dir={sweep}", extra_env=faulty)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert json.loads((sweep / "1" / "status.json").read_text()) == {
        "status": "failed", "error": "RuntimeError: injected fault for seed 1"}
    assert not (sweep / "1" / "metrics.json").exists()
    assert [metrics(sweep / j)["seed"] for j in ("0", "2")] == [0, 2]  # the sweep went on
    assert proc.stderr.strip().splitlines()[-2:] == [
        "error: 1 of 3 jobs of this multirun did not finish (the full messages are above; a failed job's status.json "
        "and train.log say more; a refused job wrote nothing in its folder):",
        f"  {sweep / '1'}: failed: RuntimeError: injected fault for seed 1"]
    log = (sweep / "1" / "train.log").read_text()
    assert "Traceback (most recent call last)" in log and "RuntimeError: injected fault for seed 1" in log

    single = train(env, "seed=1", *QUICK, f"hydra.run.dir={tmp_path / 'run'}", extra_env=faulty)
    assert single.returncode == 1 and "Traceback" not in single.stderr + single.stdout
    assert single.stderr.strip() == (
        f"error: the job in {tmp_path / 'run'} failed with an unexpected error, RuntimeError: injected fault for seed 1. "
        f"It is recorded in status.json; the traceback is in {tmp_path / 'run' / 'train.log'}.")


@pytest.mark.slow
def test_a_failing_hpo_trial_records_its_status(env, tmp_path):
    sweep = tmp_path / "hpo"
    proc = train(env, "-m", "hparams_search=optuna", "hydra.sweeper.n_trials=1", "hydra.sweeper.final_seeds=0",
                 *QUICK, f"hydra.sweep.dir={sweep}",
                 extra_env={"PYTHONPATH": str(FAULTS), "POOLSTUDY_TEST_FAULT_SEED": "0"})
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    status = json.loads((sweep / "lenet-maxpool-shapes" / "trials" / "0" / "status.json").read_text())
    assert status == {"status": "failed", "error": "RuntimeError: injected fault for seed 0"}


# ------------------------------------------------------------------ interrupts

@pytest.mark.slow
def test_ctrl_c_during_an_epoch_leaves_the_checkpoint_and_the_command_to_resume(env, tmp_path):
    run = tmp_path / "run"
    proc = start(env, *LONG, "trainer.epochs=6", f"hydra.run.dir={run}")
    wait_for(lambda: (run / "checkpoint.pt").exists(), what="the first checkpoint")
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in out + err
    line = err.strip()
    assert "\n" not in line
    saved = torch.load(run / "checkpoint.pt", weights_only=True)["epoch"]  # intact and loadable
    assert 1 <= saved < 6 and not (run / "metrics.json").exists()
    held = f"epochs 1-{saved}" if saved > 1 else "epoch 1"
    assert line.startswith(f"interrupted: {run} stopped by Ctrl-C (SIGINT) during epoch {saved + 1} of 6; "
                           f"checkpoint.pt holds {held} of 6, so a re-run continues with epoch {saved + 1}. "
                           "Resume with: python train.py "), line
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "interrupted" and status["checkpoint_epoch"] == saved

    command = shlex.split(line.split("Resume with: ")[1])
    assert command[:2] == ["python", "train.py"] and command[-1] == f"hydra.run.dir={run}"
    resumed = subprocess.run([sys.executable, *command[1:]], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [e["epoch"] for e in metrics(run)["history"]] == [1, 2, 3, 4, 5, 6]
    assert f"Resumed from {run / 'checkpoint.pt'} after epoch {saved}." in (run / "train.log").read_text()
    assert not (run / "status.json").exists()  # the finished job's folder tells one story


def _children(pid: int) -> list[int]:
    kids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(proc.name))
        except (OSError, IndexError, ValueError):
            continue
    return kids


@pytest.mark.slow
@pytest.mark.parametrize("launcher,sig", [("local_parallel", signal.SIGKILL), ("submitit_local", signal.SIGTERM)])
def test_jobs_stop_when_their_launcher_dies(env, tmp_path, launcher, sig):
    sweep = tmp_path / "sweep"
    proc = start(env, "-m", f"hydra/launcher={launcher}", "seed=0,1", *LONG, "trainer.epochs=40",
                 f"hydra.sweep.dir={sweep}")
    try:
        wait_for(lambda: all((sweep / j / "checkpoint.pt").exists() for j in ("0", "1")), what="both jobs training")
        workers = processes_mentioning(str(sweep / ".submitit")) if launcher == "submitit_local" else \
            [p for p in _children(proc.pid) if "popen_loky" in Path(f"/proc/{p}/cmdline").read_text()]
        assert len(workers) >= 2, workers
        os.kill(proc.pid, sig)
        proc.communicate(timeout=120)
        wait_for(lambda: not any(alive(p) for p in workers), timeout=30, what="the jobs to stop")
    finally:
        for pid in processes_mentioning(str(sweep)):
            os.kill(pid, signal.SIGKILL)
    for job in ("0", "1"):
        status = json.loads((sweep / job / "status.json").read_text())
        assert status["status"] == "interrupted" and "the end of its launcher" in status["error"], status
        assert torch.load(sweep / job / "checkpoint.pt", weights_only=True)["epoch"] == status["checkpoint_epoch"]
        assert not (sweep / job / "metrics.json").exists()


# ------------------------------------------------------------------ one process per job folder

@pytest.mark.slow
def test_two_identical_multiruns_into_one_sweep_dir_train_each_job_once(env, tmp_path):
    """Each job folder is trained by one process; the other is refused with the holder's PID and goes on."""
    sweep = tmp_path / "sweep"
    args = ["-m", "seed=0,1,2", *LONG, "trainer.epochs=2", f"hydra.sweep.dir={sweep}"]
    a, b = start(env, *args), start(env, *args)
    outputs = [p.communicate(timeout=600) for p in (a, b)]
    for job, seed in (("0", 0), ("1", 1), ("2", 2)):
        assert metrics(sweep / job)["seed"] == seed
        assert (sweep / job / "train.log").read_text().count("epoch 1/2 ") == 1, job  # trained by one process only
    refusals = "".join(err for _, err in outputs)
    assert re.search(r"is in use by process (%d|%d) on host" % (a.pid, b.pid), refusals), refusals[-3000:]
    assert "Traceback" not in refusals


# ------------------------------------------------------------------ a full disk

@pytest.fixture()
def small_disk(tmp_path):
    """A 600 KiB tmpfs: room for the snapshot and the log, not for LeNet's checkpoint (0.66 MB)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()}); "
                    "tests/unit/jobs/test_job_folder.py::test_disk_full_leaves_the_previous_file_and_names_the_space_needed "
                    "simulates ENOSPC instead")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.slow
def test_disk_full_while_writing_the_checkpoint(env, tmp_path, small_disk):
    run = small_disk / "run"
    proc = train(env, *QUICK, f"hydra.run.dir={run}")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr + proc.stdout
    message = proc.stderr.strip()
    assert re.fullmatch(rf"error: no space left on the device of {run} while writing checkpoint\.pt \(0\.66 MB needed, "
                        r"0\.\d\d MB free\); checkpoint\.pt was left as it was \(written atomically, nothing "
                        r"half-written\)\. Free space on that disk or use a folder on another one", message), message
    assert json.loads((run / "status.json").read_text())["error"] == message[len("error: "):]
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp") or p.name == "checkpoint.pt"]


# ------------------------------------------------------------------ -m with --cfg

def test_multirun_with_cfg_prints_every_jobs_config(env, tmp_path):
    proc = train(env, "-m", "model=maxpool,strided", "seed=3", "--cfg", "job", f"hydra.sweep.dir={tmp_path / 's'}")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    parts = re.split(r"^# job (\d) of 2: (.*)$", proc.stdout, flags=re.M)
    assert parts[1:3] == ["0", "model=maxpool"] and parts[4:6] == ["1", "model=strided"]
    import yaml

    configs = [yaml.safe_load(parts[3]), yaml.safe_load(parts[6])]
    assert [c["model"]["downsample"]["type"] for c in configs] == ["maxpool", "strided"]
    assert [c["seed"] for c in configs] == [3, 3] and "hydra" not in configs[0]
    assert not (tmp_path / "s").exists()  # nothing ran


def suggested_forms(env, params: str, tmp_path) -> tuple[str, str | None, str]:
    """The refusal of ``-m hydra.sweeper.params=...`` under the basic sweeper: (message, HPO form or None, grid form)."""
    refused = train(env, "-m", params, *QUICK, f"hydra.sweep.dir={tmp_path / 'no'}")
    assert refused.returncode == 2 and not (tmp_path / "no").exists(), refused.stderr[-3000:]
    message = refused.stderr.strip()
    assert message.startswith(f"error: {params} is a search space, which needs the HPO sweeper") and "\n" not in message
    hpo = re.search(r"python train\.py -m (hparams_search=optuna .*?) \.\.\.\)", message)
    grid = re.search(r"give the values directly instead: (.+)\.$", message).group(1)
    return message, hpo.group(1) if hpo else None, grid


def assert_grid_form_runs_two_jobs(env, grid: str, expected: list[str]) -> None:
    shown = train(env, "-m", *shlex.split(grid), *QUICK, "--cfg", "job")  # composes each job of the grid
    assert shown.returncode == 0, shown.stderr[-3000:]
    assert re.findall(r"^# job \d of (\d): (.*)$", shown.stdout, flags=re.M) == [("2", e) for e in expected]


@pytest.mark.slow
def test_a_seed_search_space_without_hparams_search_suggests_only_the_grid(env, tmp_path):
    """The HPO sweeper refuses the seed as a search dimension: suggesting hparams_search would fail when typed."""
    message, hpo, grid = suggested_forms(env, "hydra.sweeper.params={seed:'0,1'}", tmp_path)
    assert hpo is None and "hparams_search=optuna \"" not in message, message
    assert "seed: the random seed is not a hyper-parameter" in message
    assert grid == "seed=0,1"
    assert_grid_form_runs_two_jobs(env, grid, ["seed=0", "seed=1"])
    # the HPO form the message no longer suggests fails when typed: the HPO sweeper refuses the seed
    tried = train(env, "-m", "hparams_search=optuna", "+hydra.sweeper.params={seed:'0,1'}", *QUICK,
                  f"hydra.sweep.dir={tmp_path / 'hpo'}")
    assert tried.returncode == 2 and "the random seed is not a hyper-parameter" in tried.stderr, tried.stderr[-3000:]


@pytest.mark.slow
def test_both_forms_suggested_for_a_hyperparameter_search_space_without_hparams_search_work(env, tmp_path):
    message, hpo, grid = suggested_forms(env, "hydra.sweeper.params={optimizer.lr:'0.01,0.02'}", tmp_path)
    assert hpo == "hparams_search=optuna \"+hydra.sweeper.params={optimizer.lr:'0.01,0.02'}\"", message
    assert grid == "optimizer.lr=0.01,0.02"
    sweep = tmp_path / "hpo"
    searched = train(env, "-m", *shlex.split(hpo), "hydra.sweeper.n_trials=1", "hydra.sweeper.final_seeds=0", *QUICK,
                     f"hydra.sweep.dir={sweep}")
    assert searched.returncode == 0, searched.stderr[-3000:]
    trial = metrics(sweep / "lenet-maxpool-shapes" / "trials" / "0")
    assert trial["status"] == "complete" and trial["optimizer"]["lr"] in (0.01, 0.02)
    assert_grid_form_runs_two_jobs(env, grid, ["optimizer.lr=0.01", "optimizer.lr=0.02"])


@pytest.mark.slow
def test_a_mixed_search_space_tunes_the_hyperparameters_and_puts_the_variant_on_the_command_line(env, tmp_path):
    """seed is dropped from the HPO form, model goes on the command line (one study per variant)."""
    message, hpo, grid = suggested_forms(
        env, "hydra.sweeper.params={seed:'0,1',model:'maxpool,strided',optimizer.lr:'0.01,0.02'}", tmp_path)
    assert "seed: the random seed is not a hyper-parameter" in message and "model selects what a study trains" in message
    assert hpo == "hparams_search=optuna \"+hydra.sweeper.params={optimizer.lr:'0.01,0.02'}\" model=maxpool,strided"
    assert grid == "seed=0,1 model=maxpool,strided optimizer.lr=0.01,0.02"
    sweep = tmp_path / "hpo"
    searched = train(env, "-m", *shlex.split(hpo), "hydra.sweeper.n_trials=1", "hydra.sweeper.final_seeds=0", *QUICK,
                     f"hydra.sweep.dir={sweep}")
    assert searched.returncode == 0, searched.stderr[-3000:]
    for study in ("lenet-maxpool-shapes", "lenet-strided-shapes"):
        assert metrics(sweep / study / "trials" / "0")["optimizer"]["lr"] in (0.01, 0.02)
    shown = train(env, "-m", *shlex.split(grid), *QUICK, "--cfg", "job")
    assert shown.returncode == 0 and len(re.findall(r"^# job \d of 8: ", shown.stdout, flags=re.M)) == 8


def test_a_kernel_grid_run_records_invalid_cells_and_goes_on(run_train, tmp_path):
    make_idx_dataset(tmp_path / "data", n_train=200, n_test=50)
    sweep_dir = tmp_path / "grid"
    result = run_train("-m", "experiment=kernel_stride_grid", "model=maxpool", "model.downsample.kernel_size=5,2",
                       "model.downsample.stride=2", "dataset=mnist", "seed=0", "trainer.epochs=1",
                       "dataset.test_subset=50", f"hydra.sweep.dir={sweep_dir}", data_dir=tmp_path / "data")
    # the multirun goes on after the invalid job, then names it and exits 1 (the job shell's rule)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "job 0" in result.stderr and "invalid" in result.stderr and "Traceback" not in result.stderr
    invalid = json.loads((sweep_dir / "0" / "status.json").read_text())
    assert invalid["status"] == "invalid"
    assert "layer 'conv3.0'" in invalid["error"] and "gets a 16x4x4 input" in invalid["error"]
    assert not (sweep_dir / "0" / "metrics.json").exists()
    metrics = json.loads((sweep_dir / "1" / "metrics.json").read_text())
    assert metrics["status"] == "complete" and metrics["model"]["downsample"]["kernel_size"] == 2
