"""Per-epoch checkpoints: train.py killed with SIGKILL and re-run with the same command resumes
and ends with exactly the metrics of an uninterrupted run (CPU)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import ROOT
from helpers.datafiles import make_idx_dataset
from poolstudy.jobfolder import CHECKPOINT_FILE
from poolstudy.training.checkpoint import JobCheckpoint, TrainingProgress

# Big enough that an epoch takes a noticeable time (the kill must land mid-run), small enough
# for a fast test: 1,800 noise images of label-coded brightness, one torch thread.
JOB = ["dataset=mnist", "trainer.epochs=4", "trainer.batch_size=32", "trainer.threads=1", "trainer.device=cpu",
       "trainer.progress=false", "invariance.subset=100", "invariance.passes=1", "invariance.layerwise=true"]
TIMING_KEYS = {"train_time_s", "images_per_s", "job_time_s", "time_breakdown_s", "environment"}


@pytest.fixture(scope="module")
def idx_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("idx")
    make_idx_dataset(root, n_train=2000, n_test=100)
    return root


def train_cmd(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), *args]


def env_for(data: Path, cache: Path) -> dict[str, str]:
    return {**os.environ, "POOLSTUDY_DATA": str(data), "POOLSTUDY_CACHE": str(cache)}


def kill_when(proc: subprocess.Popen, ready, timeout: float = 300) -> None:
    """SIGKILL the process group of ``proc`` as soon as ``ready()`` holds."""
    deadline = time.time() + timeout
    while not ready():
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline, "the run did not reach the kill point"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def comparable(metrics: dict) -> dict:
    """Everything but wall-clock figures."""
    out = {k: v for k, v in metrics.items() if k not in TIMING_KEYS}
    out["history"] = [{k: v for k, v in e.items() if k != "epoch_time_s"} for e in metrics["history"]]
    out["invariance"] = {k: v for k, v in metrics["invariance"].items() if k != "time_s"}
    return out


@pytest.mark.slow
def test_sigkilled_run_resumes_to_exactly_the_uninterrupted_metrics(idx_data, cache_dir, tmp_path):
    env = env_for(idx_data, cache_dir)
    reference = tmp_path / "reference"
    done = subprocess.run(train_cmd(*JOB, f"hydra.run.dir={reference}"), cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not (reference / CHECKPOINT_FILE).exists()  # deleted once metrics.json is written

    run_dir = tmp_path / "killed"
    cmd = train_cmd(*JOB, f"hydra.run.dir={run_dir}")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    kill_when(proc, lambda: (run_dir / CHECKPOINT_FILE).exists())
    assert proc.returncode == -signal.SIGKILL
    assert not (run_dir / "metrics.json").exists(), "killed too late: the run had finished"
    saved = torch.load(run_dir / CHECKPOINT_FILE, weights_only=True)
    assert 1 <= saved["epoch"] < 4 and len(saved["history"]) == saved["epoch"]

    resumed = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = (run_dir / "train.log").read_text()
    assert f"Resumed from {run_dir / CHECKPOINT_FILE} after epoch {saved['epoch']}." in log
    assert log.count("epoch 1/4") == 1  # epoch 1 was not trained twice
    a = json.loads((reference / "metrics.json").read_text())
    b = json.loads((run_dir / "metrics.json").read_text())
    assert [e["epoch"] for e in b["history"]] == [1, 2, 3, 4]
    assert comparable(a) == comparable(b)
    assert not (run_dir / CHECKPOINT_FILE).exists()


@pytest.mark.slow
def test_killed_multirun_skips_finished_jobs_and_resumes_the_interrupted_one(idx_data, cache_dir, tmp_path):
    env = env_for(idx_data, cache_dir)
    sweep = tmp_path / "sweep"
    cmd = train_cmd("-m", "seed=0,1,2", *JOB, "trainer.epochs=3", "invariance.enabled=false",
                    f"hydra.sweep.dir={sweep}")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    kill_when(proc, lambda: (sweep / "1" / CHECKPOINT_FILE).exists())
    first = sweep / "0" / "metrics.json"
    finished_bytes, finished_mtime = first.read_bytes(), first.stat().st_mtime_ns
    assert not (sweep / "1" / "metrics.json").exists() and not (sweep / "2").exists()
    interrupted_at = torch.load(sweep / "1" / CHECKPOINT_FILE, weights_only=True)["epoch"]

    rerun = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    # the finished job is skipped: its results are not rewritten
    assert first.read_bytes() == finished_bytes and first.stat().st_mtime_ns == finished_mtime
    assert "already holds a complete metrics.json" in (sweep / "0" / "train.log").read_text()
    # the interrupted job continued after its last checkpoint, the last job ran from scratch
    assert f"after epoch {interrupted_at}." in (sweep / "1" / "train.log").read_text()
    for job, seed in (("1", 1), ("2", 2)):
        m = json.loads((sweep / job / "metrics.json").read_text())
        assert m["status"] == "complete" and m["seed"] == seed and [e["epoch"] for e in m["history"]] == [1, 2, 3]
        assert not (sweep / job / CHECKPOINT_FILE).exists()


# ---------------------------------------------------------------- in-process

def _tiny_setup(seed: int):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    return model, optimizer, scheduler, torch.Generator().manual_seed(seed)


def _step(model, optimizer, scheduler, generator) -> None:
    x = torch.randn(16, 4, generator=generator)
    model.train()
    loss = model(x).pow(2).mean()  # dropout draws from the global torch RNG
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    scheduler.step()


def test_checkpoint_round_trip_restores_every_state(tmp_path):
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"seed": 0, "trainer": {"epochs": 3}, "checkpoint": {"enabled": True, "keep": True}})
    straight = _tiny_setup(0)
    for _ in range(3):
        _step(*straight)

    interrupted = _tiny_setup(0)
    _step(*interrupted)
    JobCheckpoint(tmp_path, cfg).save(*interrupted, TrainingProgress(1, [{"epoch": 1}], 0.5, 0.7))
    resumed = _tiny_setup(123)  # different initial weights and RNG states: all must be overwritten
    progress = JobCheckpoint(tmp_path, cfg).restore(*resumed)
    assert (progress.epoch, progress.history, progress.train_seconds, progress.wall_seconds) == (1, [{"epoch": 1}],
                                                                                                 0.5, 0.7)
    for _ in range(2):
        _step(*resumed)
    for p, q in zip(straight[0].parameters(), resumed[0].parameters()):
        assert torch.equal(p, q)
    assert straight[2].get_last_lr() == resumed[2].get_last_lr()
    JobCheckpoint(tmp_path, cfg).finish()
    assert (tmp_path / CHECKPOINT_FILE).exists()  # keep: true


def test_checkpoint_of_another_config_is_refused_and_an_unreadable_one_not_resumed(tmp_path):
    from omegaconf import OmegaConf

    from poolstudy.jobs.folder import JobFolderError

    cfg = OmegaConf.create({"seed": 0, "optimizer": {"lr": 0.1}, "data_dir": "/a", "checkpoint": {"enabled": True}})
    state = _tiny_setup(0)
    JobCheckpoint(tmp_path, cfg).save(*state, TrainingProgress(2, [], 0, 0))
    moved = OmegaConf.merge(cfg, {"data_dir": "/elsewhere"})  # where data is read from does not matter
    assert JobCheckpoint(tmp_path, moved).restore(*_tiny_setup(0)).epoch == 2
    changed = OmegaConf.merge(cfg, {"optimizer": {"lr": 0.2}})
    saved = (tmp_path / CHECKPOINT_FILE).read_bytes()
    with pytest.raises(JobFolderError, match=r"written by a different configuration than this run's "
                                             r"\(optimizer.lr: 0.1 -> 0.2\)"):
        JobCheckpoint(tmp_path, changed).restore(*_tiny_setup(0))
    assert (tmp_path / CHECKPOINT_FILE).read_bytes() == saved  # neither resumed nor overwritten
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"torn")
    assert JobCheckpoint(tmp_path, cfg).restore(*_tiny_setup(0)).epoch == 0
    JobCheckpoint(tmp_path, cfg).finish()
    assert not (tmp_path / CHECKPOINT_FILE).exists()  # keep defaults to false
