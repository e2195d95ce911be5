"""A job folder's results belong to its configuration; one process per folder; sweep checks (in-process)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf, open_dict

from helpers import CONF_DIR
from poolstudy.errors import PoolStudyError
from poolstudy.jobs import multirun, sweep
from poolstudy.jobfolder import finished_metrics
from poolstudy.jobs.folder import JobFolderError, prepare
from poolstudy.jobs.identity import describe, differences, run_identity
from poolstudy.jobs.lock import FolderBusyError, JobLock
from poolstudy.utils import io


@pytest.fixture()
def job(tmp_path):
    """job(folder, *overrides) -> the task config of a job in ``folder``, with Hydra's config set as in a run."""

    def make(folder: Path, *overrides: str, mode: RunMode = RunMode.RUN):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="config", overrides=["dataset=shapes", *overrides], return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.mode = mode
            cfg.hydra.runtime.output_dir = str(folder)
            cfg.hydra.job.num = 0
            cfg.hydra.sweep.dir = str(folder.parent)
        HydraConfig.instance().set_config(cfg)
        task = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
        return task

    yield make
    HydraConfig.instance().cfg = None


def finish(folder: Path, cfg, **metrics) -> dict:
    """What a finished job leaves: the snapshot (via prepare) and a complete metrics.json."""
    assert prepare(folder, cfg) is None
    record = {"status": "complete", "val_acc": 0.5, "seed": int(cfg.seed), "epochs": int(cfg.trainer.epochs),
              "model": {"arch": cfg.model.arch,
                        "downsample": OmegaConf.to_container(cfg.model.downsample, resolve=True)}, **metrics}
    (folder / "metrics.json").write_text(json.dumps(record))
    return record


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_identity_ignores_where_data_lives_and_keeps_unresolvable_text():
    a = OmegaConf.create({"seed": 0, "data_dir": "/a", "trainer": {"threads": 1, "epochs": 2},
                          "x": "${oc.env:POOLSTUDY_SURELY_UNSET_VAR}"})
    b = OmegaConf.merge(a, {"data_dir": "/b", "trainer": {"threads": 4}})
    assert run_identity(a) == run_identity(b) == {"seed": 0, "trainer.epochs": 2,
                                                  "x": "${oc.env:POOLSTUDY_SURELY_UNSET_VAR}"}
    c = OmegaConf.merge(a, {"trainer": {"epochs": 3}, "y": 1})
    diffs = differences(run_identity(a), run_identity(c))
    assert describe(diffs) == "trainer.epochs: 2 -> 3, y: (absent) -> 1"


@pytest.mark.parametrize("second,named", [
    (["model=avgpool"], ["model.downsample.type: 'maxpool' -> 'avgpool'"]),
    (["trainer.epochs=3", "optimizer=sgd"], ["trainer.epochs: 1 -> 3", "optimizer._target_:"]),
])
def test_another_configuration_is_refused_before_anything_is_written(job, tmp_path, second, named):
    folder = tmp_path / "run"
    folder.mkdir()
    finish(folder, job(folder, "model=maxpool", "trainer.epochs=1"))
    before = snapshot(folder)
    with pytest.raises(JobFolderError) as err:
        prepare(folder, job(folder, "model=maxpool", "trainer.epochs=1", *second))
    message = str(err.value)
    assert message.startswith(f"{folder} already holds metrics.json of another configuration")
    for needle in named:
        assert needle in message
    assert f"hydra.run.dir={folder}-2" in message and "Nothing was written there" in message
    assert snapshot(folder) == before  # snapshot, metrics: same bytes, same mtimes


def test_the_same_configuration_reuses_its_metrics_whatever_the_thread_count(job, tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    record = finish(folder, job(folder, "trainer.threads=1"))
    before = snapshot(folder)
    assert prepare(folder, job(folder, "trainer.threads=2", "data_dir=/elsewhere")) == record
    assert snapshot(folder) == before


def test_multirun_refusal_names_a_new_sweep_dir(job, tmp_path):
    folder = tmp_path / "sweep" / "0"
    folder.mkdir(parents=True)
    finish(folder, job(folder, "model=maxpool", mode=RunMode.MULTIRUN))
    (tmp_path / "sweep-2").mkdir()  # taken: the suggestion must be a folder that does not exist
    with pytest.raises(JobFolderError, match=f"hydra.sweep.dir={tmp_path / 'sweep'}-3"):
        prepare(folder, job(folder, "model=strided", mode=RunMode.MULTIRUN))


def test_checkpoint_or_failure_of_another_configuration_is_refused_too(job, tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    assert prepare(folder, job(folder, "seed=0")) is None
    (folder / "checkpoint.pt").write_bytes(b"state of seed 0")
    with pytest.raises(JobFolderError, match="already holds checkpoint.pt of another configuration.*seed: 0 -> 1"):
        prepare(folder, job(folder, "seed=1"))
    (folder / "checkpoint.pt").unlink()
    # without a snapshot the checkpoint's own record of its configuration decides
    import torch

    from poolstudy.training.checkpoint import JobCheckpoint, TrainingProgress

    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    JobCheckpoint(folder, job(folder, "seed=0")).save(model, optimizer, None, torch.Generator(), TrainingProgress(1))
    (folder / ".hydra" / "config.yaml").unlink()
    with pytest.raises(JobFolderError, match="holds a checkpoint.pt of another configuration.*seed: 0 -> 1"):
        prepare(folder, job(folder, "seed=1"))
    assert not (folder / ".hydra" / "config.yaml").exists()
    (folder / "checkpoint.pt").unlink()
    assert prepare(folder, job(folder, "seed=0")) is None  # an empty folder again, with seed 0's snapshot
    (folder / "status.json").write_text('{"status": "failed", "error": "diverged"}')
    with pytest.raises(JobFolderError, match="already holds status.json"):
        prepare(folder, job(folder, "seed=1"))
    # an invalid configuration computed nothing: another one may take the folder over
    (folder / "status.json").write_text('{"status": "invalid", "error": "bad value"}')
    assert prepare(folder, job(folder, "seed=1")) is None
    assert OmegaConf.load(folder / ".hydra" / "config.yaml").seed == 1 and not (folder / "status.json").exists()


@pytest.mark.parametrize("content", ["null", "[1, 2]", '{"status": "comp'])
def test_unusable_metrics_are_kept_aside_and_the_job_runs_again(job, tmp_path, content, caplog):
    folder = tmp_path / "run"
    folder.mkdir()
    cfg = job(folder)
    assert prepare(folder, cfg) is None
    (folder / "metrics.json").write_text(content)
    assert finished_metrics(folder) is None  # no AttributeError on null or a list
    assert prepare(folder, cfg) is None
    assert not (folder / "metrics.json").exists()
    assert (folder / "metrics.json.unusable").read_text() == content  # nothing lost
    assert "so the job is not finished; it was moved to metrics.json.unusable and the job runs again" in caplog.text


def test_metrics_disagreeing_with_an_overwritten_snapshot_are_not_reused(job, tmp_path):
    """A folder damaged by an earlier version: the snapshot says avgpool, metrics.json was made by maxpool."""
    folder = tmp_path / "run"
    folder.mkdir()
    finish(folder, job(folder, "model=maxpool"))
    avgpool = job(folder, "model=avgpool")
    (folder / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(avgpool))
    with pytest.raises(JobFolderError, match="disagrees with its .hydra/config.yaml.*'maxpool', "):
        prepare(folder, avgpool)


def test_a_second_process_is_refused_while_the_first_holds_the_folder(tmp_path):
    folder = tmp_path / "job"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from poolstudy.jobs.lock import JobLock; "
                               f"JobLock({str(folder)!r}).acquire(); print('locked', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(FolderBusyError) as err:
            JobLock(folder).acquire()
        assert f"{folder} is in use by process {holder.pid} on host " in str(err.value)
    finally:
        holder.kill()  # SIGKILL: no cleanup runs, the kernel drops the lock
        holder.wait()
    with JobLock(folder):  # free again
        with pytest.raises(FolderBusyError):  # and exclusive within one process too
            JobLock(folder).acquire()


# ------------------------------------------------------------------ sweep checks before any job

@pytest.mark.parametrize("overrides,needle", [
    (["model=maxpool,maxpool,strided,strided,strided"], "repeats values (maxpool 2 times, strided 3 times)"),
    (["optimizer.lr=0.001,1e-3"], "repeats values (0.001 2 times)"),
    (["seed=0,1", "seed=2"], "seed is given twice (seed=0,1 and seed=2)"),
    (["trainer.threads=1,2"], "trainer.threads=1,2 sweeps a setting that does not change a job's result"),
    (["data_dir=/a,/b"], "data_dir=/a,/b sweeps a setting"),
])
def test_sweeps_that_would_repeat_a_configuration_are_refused(overrides, needle):
    with pytest.raises(PoolStudyError) as err:
        sweep.check_overrides(overrides, multirun=True)
    assert needle in str(err.value)


def test_the_deduplicated_sweep_suggested_passes():
    with pytest.raises(PoolStudyError) as err:
        sweep.check_overrides(["model=maxpool,maxpool,strided"], multirun=True)
    suggested = str(err.value).split("Give each value once, ")[1].split(",", 1)[0] + ",strided"
    assert suggested == "model=maxpool,strided"
    sweep.check_overrides([suggested, "seed=0,1,2"], multirun=True)
    sweep.check_overrides(["seed=0", "seed=1"], multirun=True)  # a plain value repeated: the last wins, as in Hydra


def test_unset_environment_variables_are_named_with_their_key(monkeypatch):
    monkeypatch.delenv("POOLSTUDY_DB_PASSWORD", raising=False)
    monkeypatch.setenv("POOLSTUDY_SET", "x")
    cfg = OmegaConf.create({"hydra": {"sweeper": {"storage": "postgresql://u:${oc.env:POOLSTUDY_DB_PASSWORD}@h/db"},
                                      "overrides": {"task": ["seed=${oc.env:POOLSTUDY_DB_PASSWORD}"]}},
                            "a": "${oc.env:POOLSTUDY_SET}", "b": "${oc.env:POOLSTUDY_DB_PASSWORD,default}",
                            "c": ["${oc.env:POOLSTUDY_DB_PASSWORD}"]})
    assert sweep.unset_env_refs(cfg) == [("hydra.sweeper.storage", "POOLSTUDY_DB_PASSWORD"),
                                         ("c[0]", "POOLSTUDY_DB_PASSWORD")]


# ------------------------------------------------------------------ multirun outcomes

def test_multirun_ledger_collects_each_jobs_outcome_and_names_the_unfinished(tmp_path, monkeypatch):
    monkeypatch.delenv(multirun.ENV, raising=False)
    info = multirun.start(tmp_path / "sweep", "python train.py -m seed=0,1,2 hydra.sweep.dir=x")
    for num, status, reason in [(0, "complete", ""), (2, "failed", "RuntimeError: boom\nsecond line"),
                                (1, "refused", f"{tmp_path / 'sweep' / '1'} already holds metrics.json of another "
                                               "configuration; this run differs in seed: 0 -> 1. Nothing was written "
                                               "there. Run this configuration in another folder: ...")]:
        multirun.record(tmp_path / "sweep" / str(num), num, status, reason)
    multirun.record(tmp_path / "elsewhere", 5, "failed", "not this multirun's job")
    entries = multirun.finish(info)
    assert [e["num"] for e in entries] == [0, 1, 2] and multirun.ENV not in os.environ
    assert not (tmp_path / "sweep" / multirun.LEDGER_DIR).exists()
    text = multirun.summary(entries)
    assert text.splitlines()[0].startswith("error: 2 of 3 jobs of this multirun did not finish")
    assert text.splitlines()[1:] == [
        f"  {tmp_path / 'sweep' / '1'}: refused: already holds metrics.json of another configuration; this run "
        "differs in seed: 0 -> 1",
        f"  {tmp_path / 'sweep' / '2'}: failed: RuntimeError: boom second line"]
    assert multirun.summary(entries[:1]) is None


# ------------------------------------------------------------------ disk full

def test_disk_full_leaves_the_previous_file_and_names_the_space_needed(tmp_path, monkeypatch):
    """Simulated ENOSPC (the write of the temporary file fails as on a full disk); the real-tmpfs
    version is tests/e2e/test_job_shell.py::test_disk_full_while_writing_the_checkpoint."""
    target = tmp_path / "checkpoint.pt"
    target.write_bytes(b"epoch 1")
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io.os, "fdopen", lambda fd, mode: Full(real_fdopen(fd, mode)))
    with pytest.raises(io.NoSpaceError) as err:
        io.atomic_write_bytes(target, b"x" * 700_000)
    assert err.value.errno == errno.ENOSPC and err.value.needed == 700_000
    assert str(err.value).startswith(f"no space left on the device of {tmp_path} while writing checkpoint.pt "
                                     "(0.70 MB needed, ")
    assert target.read_bytes() == b"epoch 1" and [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_lock_file_records_its_holder(tmp_path):
    with JobLock(tmp_path):
        record = json.loads((tmp_path / ".lock").read_text())
        assert record["pid"] == os.getpid() and time.strptime(record["since"], "%Y-%m-%d %H:%M:%S")
