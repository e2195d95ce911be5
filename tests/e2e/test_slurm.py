"""``hydra/launcher=slurm`` through a real SLURM scheduler: a throw-away single-node cluster.

The cluster (tests/helpers/slurmcluster.py) runs on this machine: .ci/run starts one and exports
POOLSTUDY_TEST_SLURM (its folder) and POOLSTUDY_REQUIRE_SLURM=1; elsewhere the fixture starts
its own, or skips with the reason (not root, SLURM not installed). With POOLSTUDY_REQUIRE_SLURM=1
a cluster that cannot start fails the tests instead.

Every run prints its wall time ("slurm wall time: ..."); ``pytest -s tests/e2e/test_slurm.py``
shows them (README quotes them).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from helpers import CONF_DIR, FAULTS, ROOT
from helpers.slurmcluster import DEFAULT_TIME_MIN, MAX_TIME_MIN, PARTITION, Cluster, ClusterUnavailable, start
from poolstudy.errors import PoolStudyError
from poolstudy.slurm.resources import check_request, derive_request, query_partition


# tiny jobs: synthetic shapes, no files, one epoch of 600 images
QUICK = ["dataset=shapes", "dataset.train_subset=600", "trainer.epochs=1", "trainer.progress=false",
         "invariance.enabled=false"]
TIMING_KEYS = {"train_time_s", "images_per_s", "job_time_s", "time_breakdown_s", "environment"}


@pytest.fixture(scope="module")
def cluster():
    given = os.environ.get("POOLSTUDY_TEST_SLURM")
    if given:  # CI: the cluster must be there; a failure is a failure, not a skip
        found = Cluster(Path(given), owned=False)
        found.check()
        yield found
        return
    try:
        own = start()
    except ClusterUnavailable as exc:
        if os.environ.get("POOLSTUDY_REQUIRE_SLURM") == "1":
            pytest.fail(f"POOLSTUDY_REQUIRE_SLURM=1 but no SLURM cluster could be started: {exc}")
        pytest.skip(f"no SLURM cluster for the launcher tests: {exc}")
    try:
        yield own
    finally:
        own.stop()


@pytest.fixture()
def slurm_env(cluster, cache_dir, monkeypatch):
    """The environment of a user on the cluster's login node (SLURM_CONF points at it)."""
    for key, value in cluster.env().items():
        monkeypatch.setenv(key, value)
    yield {**os.environ, **cluster.env(), "POOLSTUDY_CACHE": str(cache_dir)}
    cluster.cancel_all_jobs()  # a failed test leaves no job behind for the next one


def train(env: dict, *args: str, timeout: float = 600) -> tuple[subprocess.CompletedProcess, float]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), "-m", "hydra/launcher=slurm", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)
    return proc, time.perf_counter() - started


def popen_train(env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), "-m", "hydra/launcher=slurm", *args], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def metrics(job_dir: Path) -> dict:
    m = json.loads((job_dir / "metrics.json").read_text())
    assert m["status"] == "complete"
    return m


def comparable(m: dict) -> dict:
    """Everything but wall-clock figures and the machine record."""
    out = {k: v for k, v in m.items() if k not in TIMING_KEYS}
    out["history"] = [{k: v for k, v in e.items() if k != "epoch_time_s"} for e in m["history"]]
    return out


def slurm_results(sweep: Path) -> dict[str, Path]:
    """submitit's result files, by SLURM job id (array tasks are <array id>_<index>)."""
    return {p.parent.name: p for p in (sweep / ".submitit").glob("*/*_result.pkl")}


def wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the launching command ended before {what}:\n{proc.stdout.read()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def slurm_job(sweep: Path) -> str:
    """The SLURM job id of a one-job sweep (submitit submits a single job, not an array, and names a
    folder after it)."""
    (found,) = [p.name for p in (sweep / ".submitit").iterdir() if p.is_dir()]
    return found


# ------------------------------------------------------------------ jobs through the scheduler

@pytest.mark.slow
def test_two_job_multirun_runs_as_a_slurm_job_array(slurm_env, tmp_path):
    sweep = tmp_path / "sweep"
    proc, wall = train(slurm_env, "model=maxpool,strided", *QUICK, f"hydra.sweep.dir={sweep}")
    print(f"\nslurm wall time: 2-job multirun (1 epoch of 600 shapes images each): {wall:.1f} s")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert {metrics(sweep / str(k))["model"]["downsample"]["type"] for k in (0, 1)} == {"maxpool", "strided"}
    # both ran as the two tasks of one SLURM job array, each leaving its result
    results = slurm_results(sweep)
    assert len(results) == 2 and len({job_id.split("_")[0] for job_id in results}) == 1
    assert sorted(job_id.split("_")[1] for job_id in results) == ["0", "1"]
    # resources the user did not set: no GPU (trainer.device=auto), the cluster's CPUs and memory,
    # the partition's default time limit
    (script,) = (sweep / ".submitit").glob("*/*_submission.sh")
    flags = [line for line in script.read_text().splitlines() if line.startswith("#SBATCH")]
    assert f"#SBATCH --time={DEFAULT_TIME_MIN}" in flags
    assert not [f for f in flags if re.search(r"gpus|gres|--mem|cpus-per-task", f)], flags
    assert f"timeout_min={DEFAULT_TIME_MIN} (from partition {PARTITION}'s DefaultTime)" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_requeued_and_preempted_jobs_resume_to_the_uninterrupted_metrics(slurm_env, tmp_path):
    """The same job (seed 0) launched three times at once, each its own command and SLURM job (a
    multirun may not repeat a value): one runs through, one is requeued by `scontrol requeue` (SLURM
    kills it), one gets submitit's preemption signal (SIGUSR2: submitit requeues it and exits)."""
    # SLURM kills a requeued job's step seconds after its SIGTERM (which submitit ignores), not at
    # once: the epochs after the first must take clearly longer, or the job finishes training first.
    # The fault-injecting sitecustomize adds 2 s to each of them (all three jobs alike; figures unchanged).
    env = {**slurm_env, "PYTHONPATH": os.pathsep.join(filter(None, [str(FAULTS), slurm_env.get("PYTHONPATH")])),
           "POOLSTUDY_TEST_EPOCH_DELAY": "2"}
    epochs = 6
    job = ["seed=0", "dataset=shapes", "dataset.train_subset=4500", f"trainer.epochs={epochs}", "trainer.batch_size=32",
           "trainer.progress=false", "invariance.enabled=false"]
    sweeps = {name: tmp_path / name for name in ("uninterrupted", "requeued", "preempted")}
    started = time.perf_counter()
    procs = {name: popen_train(env, *job, f"hydra.sweep.dir={sweep}") for name, sweep in sweeps.items()}
    try:
        # each is interrupted as soon as its first checkpoint is written (the jobs run at the same time)
        pending = {"requeued": ["scontrol", "requeue"], "preempted": ["scancel", "--signal=USR2"]}

        def interrupt_those_with_a_checkpoint() -> bool:
            for name in pending:
                if procs[name].poll() is not None:
                    pytest.fail(f"the {name} job's command ended before its first checkpoint:\n"
                                f"{procs[name].stdout.read()[-3000:]}")
            for name in [n for n in pending if (sweeps[n] / "0" / "checkpoint.pt").exists()]:
                done = subprocess.run([*pending.pop(name), slurm_job(sweeps[name])], env=slurm_env,
                                      capture_output=True, text=True, timeout=60)
                assert done.returncode == 0, done.stderr
            return not pending

        wait_for(interrupt_those_with_a_checkpoint, procs["uninterrupted"], "the first checkpoints")
        outputs = {name: proc.communicate(timeout=600)[0] for name, proc in procs.items()}
    finally:
        for proc in procs.values():
            proc.kill()
    wall = time.perf_counter() - started
    print(f"\nslurm wall time: 3 jobs of {epochs} epochs at once, one requeued and one preempted: {wall:.1f} s")
    for name, proc in procs.items():
        assert proc.returncode == 0, f"{name}:\n{outputs[name][-4000:]}"
    reference = comparable(metrics(sweeps["uninterrupted"] / "0"))
    assert reference["seed"] == 0 and [e["epoch"] for e in reference["history"]] == list(range(1, epochs + 1))
    assert "Resumed from" not in (sweeps["uninterrupted"] / "0" / "train.log").read_text()
    for name in ("requeued", "preempted"):
        job_dir = sweeps[name] / "0"
        log = (job_dir / "train.log").read_text()
        resumed = re.findall(r"Resumed from (\S+) after epoch (\d+)\.", log)
        assert len(resumed) == 1 and resumed[0][0] == str(job_dir / "checkpoint.pt"), log[-2000:]
        assert 1 <= int(resumed[0][1]) < epochs, log[-2000:]  # it resumed training, not just the end
        assert log.count(f"epoch 1/{epochs}") == 1  # the first epoch was not trained again
        assert comparable(metrics(job_dir)) == reference
        assert not (job_dir / "checkpoint.pt").exists()
        # the interrupted job started twice under the same SLURM job id
        job_id = slurm_job(sweeps[name])
        job_log = (sweeps[name] / ".submitit" / job_id / f"{job_id}_0_log.out").read_text()
        assert job_log.count("Starting with JobEnvironment") == 2, job_log[-2000:]
    job_id = slurm_job(sweeps["preempted"])
    submitit_log = (sweeps["preempted"] / ".submitit" / job_id / f"{job_id}_0_log.err").read_text()
    # submitit's handler requeued it (scontrol requeue), and SLURM ended that run at once
    assert "this job is preempted" in submitit_log and "DUE TO JOB REQUEUE" in submitit_log, submitit_log[-2000:]


@pytest.mark.slow
def test_hpo_trials_run_as_slurm_jobs_on_a_shared_journal_and_count_n_trials(slurm_env, tmp_path):
    sweep = tmp_path / "hpo"
    journal = tmp_path / "journal.log"
    n_trials = 3
    proc, wall = train(slurm_env, "hparams_search=optuna", "model=strided", *QUICK, f"hydra.sweep.dir={sweep}",
                       f"hydra.sweeper.storage=journal:{journal}", f"hydra.sweeper.n_trials={n_trials}",
                       f"hydra.sweeper.n_jobs={n_trials}", "hydra.sweeper.final_seeds=0")
    print(f"\nslurm wall time: HPO study, {n_trials} trials as one SLURM job array: {wall:.1f} s")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    from poolstudy.hpo.storage import open_storage

    study = optuna.load_study(study_name="lenet-strided-shapes", storage=open_storage(f"journal:{journal}"))
    trials = study.get_trials()
    assert len(trials) == n_trials and all(t.state == TrialState.COMPLETE for t in trials)
    for t in trials:  # each trial's job reported to its own trial and wrote its folder
        m = metrics(sweep / "lenet-strided-shapes" / "trials" / str(t.number))
        assert m["hpo"] == {"study_name": "lenet-strided-shapes", "role": "trial", "trial": t.number}
        assert m["val_acc"] == pytest.approx(t.value)
    # every trial ran as its own task of one SLURM job array, side by side, all writing to the journal
    results = slurm_results(sweep)
    assert len(results) == n_trials and len({job_id.split("_")[0] for job_id in results}) == 1
    summary = json.loads((sweep / "lenet-strided-shapes" / "study_summary.json").read_text())
    assert (summary["n_trials"], summary["n_complete"]) == (n_trials, n_trials)


@pytest.mark.slow
def test_a_job_that_dies_without_a_result_fails_the_command_with_a_message(slurm_env, tmp_path):
    """The batch script dies before Python starts (a broken `setup` line): no result file. On a
    cluster without accounting submitit alone would wait for it forever."""
    sweep = tmp_path / "sweep"
    proc, wall = train(slurm_env, *QUICK, f"hydra.sweep.dir={sweep}",
                       "hydra.launcher.setup=['echo module load failed >&2; exit 3']", timeout=300)
    print(f"\nslurm wall time: a job dying without a result reported: {wall:.1f} s")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    message = proc.stderr
    assert re.search(r"SLURM job \d+ \(job #0: .*\) ended without a result \(state FAILED, reason NonZeroExitCode\)",
                     message), message
    assert "module load failed" in message  # the tail of its log
    assert f"hydra.sweep.dir={sweep}" in message and not (sweep / "0" / "metrics.json").exists()


# ------------------------------------------------------------------ requests the cluster can never satisfy

@pytest.mark.parametrize("override,key,fix_key", [
    ("hydra.launcher.gpus_per_node=1", "hydra.launcher.gpus_per_node = 1 cannot", "hydra.launcher.gpus_per_node"),
    ("trainer.device=cuda", "hydra.launcher.gpus_per_node = 1 (from trainer.device=cuda) cannot", "trainer.device"),
    ("hydra.launcher.cpus_per_task=64", "hydra.launcher.cpus_per_task = 64 cannot", "hydra.launcher.cpus_per_task"),
    ("trainer.threads=64", "hydra.launcher.cpus_per_task = 64 (from trainer.threads=64) cannot", "trainer.threads"),
    ("hydra.launcher.mem_gb=100000", "hydra.launcher.mem_gb = 100000 cannot", "hydra.launcher.mem_gb"),
    ("hydra.launcher.timeout_min=100000", "hydra.launcher.timeout_min = 100000 minutes exceeds",
     "hydra.launcher.timeout_min"),
    ("hydra.launcher.nodes=5", "hydra.launcher.nodes = 5 cannot", "hydra.launcher.nodes"),
    ("hydra.launcher.partition=nope", "hydra.launcher.partition = 'nope' is not a partition", "hydra.launcher.partition"),
])
def test_a_request_the_cluster_cannot_satisfy_names_the_key(slurm_env, override, key, fix_key):
    message = _refusal(override)
    assert message is not None and message.startswith(key), message
    fixes = re.findall(re.escape(fix_key) + r"=([\w:-]+)", message[len(key):])
    assert fixes, message
    for value in fixes:  # every value the message suggests is accepted
        assert _refusal(f"{fix_key}={value}") is None, (fix_key, value)


def _refusal(override: str) -> str | None:
    """Check one override the way the launcher does before submitting; the message, or None when accepted."""
    from hydra import compose, initialize_config_dir

    from poolstudy.slurm.launcher import SlurmLauncher

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["hydra/launcher=slurm", override], return_hydra_config=True)
    params = {k: v for k, v in cfg.hydra.launcher.items() if k != "_target_"}
    launcher = SlurmLauncher(**params)
    launcher.config = cfg
    try:
        partition = query_partition(launcher.params.get("partition"))
        check_request(derive_request(launcher.params, launcher._job_settings([[]]), partition), partition)
    except PoolStudyError as exc:
        return str(exc)
    return None


@pytest.mark.slow
@pytest.mark.parametrize("override,key", [
    ("hydra.launcher.gpus_per_node=1", "hydra.launcher.gpus_per_node = 1 cannot be satisfied"),  # the launcher's check
    ("hydra.launcher.gres=gpu:1", "SLURM refused the jobs: Invalid generic resource (gres) specification. This comes "
                                  "from hydra.launcher.gres = 'gpu:1'"),  # sbatch's refusal, explained
])
def test_an_impossible_request_stops_train_py_with_one_message(slurm_env, tmp_path, override, key):
    sweep = tmp_path / "sweep"
    proc, _ = train(slurm_env, *QUICK, f"hydra.sweep.dir={sweep}", override, timeout=300)
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: ") and key in errors[0], proc.stderr
    assert not (sweep / ".submitit").exists() and not list(sweep.rglob("metrics.json"))
    assert not subprocess.run(["squeue", "-h"], env=slurm_env, capture_output=True, text=True).stdout.strip()


def test_the_launcher_reads_the_partition_limits_from_scontrol(slurm_env):
    partition = query_partition(None)  # the default partition
    assert partition.name == PARTITION
    assert (partition.default_time_min, partition.max_time_min) == (DEFAULT_TIME_MIN, MAX_TIME_MIN)
    (node,) = partition.nodes
    assert node.cpus == os.cpu_count() and node.gpus == 0
    assert node.memory_mb * 1024 ** 2 <= os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


# ------------------------------------------------------------------ the rules, without a cluster

@pytest.mark.parametrize("text,minutes", [("UNLIMITED", None), ("NONE", None), ("30", 30), ("2:00:00", 120),
                                          ("1-00:00:00", 1440), ("45:30", 46), ("1-02:03:00", 1563)])
def test_slurm_durations_are_read_in_minutes(text, minutes):
    from poolstudy.slurm.resources import parse_minutes

    assert parse_minutes(text) == minutes


@pytest.mark.parametrize("gres,gpus", [("(null)", 0), ("gpu:4", 4), ("gpu:a100:4(S:0-1)", 4),
                                       ("gpu:a100:4(S:0,1),gpu:v100:2", 6), ("shard:8,gpu:2", 2), ("mps:100", 0)])
def test_gpus_are_counted_from_a_nodes_gres(gres, gpus):
    from poolstudy.slurm.resources import gpu_count

    assert gpu_count(gres) == gpus


def test_unset_resources_follow_the_jobs_or_stay_with_the_cluster():
    from poolstudy.slurm.resources import Partition

    part = Partition("p", (), max_time_min=240, default_time_min=None)
    unset = {"gpus_per_node": None, "cpus_per_task": None, "mem_gb": None, "timeout_min": None}
    plain = derive_request(unset, [("auto", None), ("cpu", None)], part)
    assert plain.params == {**unset, "timeout_min": 240}  # no GPU, cluster's CPUs and memory, the MaxTime
    assert plain.origin == {"timeout_min": "partition p's MaxTime"}
    gpu = derive_request(unset, [("auto", None), ("cuda:1", 3), ("cuda", 2)], Partition("p", (), 240, 60))
    assert (gpu.params["gpus_per_node"], gpu.params["cpus_per_task"], gpu.params["timeout_min"]) == (2, 3, 60)
    assert gpu.origin["gpus_per_node"] == "trainer.device=cuda:1" and gpu.origin["cpus_per_task"] == "trainer.threads=3"
    # what the user set is kept, including an explicit 0 GPUs or a gres string
    mine = derive_request({**unset, "gpus_per_node": 0, "cpus_per_task": 8, "timeout_min": 30}, [("cuda", 2)], part)
    assert (mine.params["gpus_per_node"], mine.params["cpus_per_task"], mine.params["timeout_min"]) == (0, 8, 30)
    assert derive_request({**unset, "gres": "gpu:a100:1"}, [("cuda", None)], None).params["gpus_per_node"] is None


def test_sbatch_refusals_are_explained_with_the_keys_that_were_set():
    from poolstudy.slurm.resources import Request, explain_sbatch_error

    request = Request({"mem_gb": 64, "cpus_per_task": 4, "gpus_per_node": None, "partition": None})
    text = explain_sbatch_error("sbatch: error: Memory specification can not be satisfied\n"
                                "sbatch: error: Batch job submission failed: Requested node configuration is not "
                                "available", request)
    assert text.startswith("SLURM refused the jobs: Memory specification can not be satisfied; Batch job")
    assert "hydra.launcher.mem_gb = 64, hydra.launcher.cpus_per_task = 4;" in text and "gpus_per_node" not in text
    down = explain_sbatch_error("sbatch: error: Batch job submission failed: Unable to contact slurm controller "
                                "(connect failure)", request)
    assert down.startswith("SLURM's controller does not answer (Batch job submission failed: Unable to contact")


class _FakeJob:
    def __init__(self, folder: Path, job_id: str):
        from types import SimpleNamespace

        self.job_id = job_id
        self.paths = SimpleNamespace(folder=folder, result_pickle=folder / f"{job_id}_result.pkl")


def test_waiting_tells_finished_requeued_dead_and_never_starting_jobs_apart(tmp_path, monkeypatch):
    from poolstudy.slurm import waiting

    jobs = [_FakeJob(tmp_path, f"7_{k}") for k in range(4)]
    jobs[0].paths.result_pickle.write_text("done")
    calls = []

    def squeue(ids):
        calls.append(sorted(ids))
        if len(calls) >= 3:  # the requeued job ran again and left its result
            jobs[1].paths.result_pickle.write_text("done")
        return {"7_1": ("PENDING", "BeginTime"),          # requeued: waits for its credential to expire
                "7_2": ("FAILED", "NonZeroExitCode"),     # died without writing a result
                "7_3": ("PENDING", "PartitionConfig")}    # asks for more than the partition allows

    monkeypatch.setattr(waiting, "queue_states", squeue)
    ended = waiting.wait_for_jobs(jobs, grace_s=0.2, poll_s=0.05, max_interval_s=0.1)
    assert sorted(ended) == ["7_2", "7_3"]
    assert (ended["7_2"].state, ended["7_2"].reason, ended["7_2"].never_started) == ("FAILED", "NonZeroExitCode", False)
    assert ended["7_3"].never_started and ended["7_3"].reason == "PartitionConfig"
    assert "7_0" not in calls[0]  # a job with its result is not asked about


def test_slurm_launcher_without_slurm_says_where_to_run(monkeypatch, capsys):
    import shutil

    from hydra import compose, initialize_config_dir

    from poolstudy.slurm.launcher import SlurmLauncher

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    launcher = SlurmLauncher(**{k: v for k, v in cfg.hydra.launcher.items() if k != "_target_"})
    with pytest.raises(SystemExit) as stop:
        launcher.setup(hydra_context=None, task_function=None, config=cfg)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: hydra/launcher=slurm submits the jobs to SLURM, but sbatch, srun, squeue, scontrol")
    assert "hydra/launcher=submitit_local" in err
