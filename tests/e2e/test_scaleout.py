"""Launchers (submitit local and SLURM configs) and GPU placement of parallel jobs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import open_dict

from helpers import CONF_DIR, ROOT
from helpers.datafiles import make_idx_dataset
from poolstudy.training import placement
from poolstudy.training.placement import resolve_device


@pytest.mark.parametrize("setting,device,expected", [
    ("auto", "cpu", True), ("auto", "cuda", False), ("auto", "mps", False),
    (True, "cuda", True), (False, "cpu", False),
])
def test_channels_last_auto_means_the_cpu_only(setting, device, expected):
    import torch

    assert placement.uses_channels_last(setting, torch.device(device)) is expected


def test_job_numbers_go_round_robin_over_the_visible_gpus():
    assert [placement.cuda_index_for_job(n, 4) for n in range(6)] == [0, 1, 2, 3, 0, 1]
    assert [placement.cuda_index_for_job(n, 1) for n in range(3)] == [0, 0, 0]  # the launcher picked the GPU
    assert placement.cuda_index_for_job(None, 4) is None  # a single run keeps the current device


@pytest.fixture()
def fake_gpus(monkeypatch):
    """A machine with 3 visible GPUs, as far as the placement code can tell."""
    current = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    return current


def _hydra_job(mode: RunMode, num: int) -> None:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.mode = mode
        cfg.hydra.job.num = num
    HydraConfig.instance().set_config(cfg)


def test_auto_device_of_a_multirun_job_follows_its_job_number(fake_gpus):
    try:
        _hydra_job(RunMode.MULTIRUN, 7)
        assert placement.multirun_job_number() == 7
        assert resolve_device("auto") == torch.device("cuda", 1)
        assert fake_gpus == [torch.device("cuda", 1)]  # made current, for allocations without a device
        _hydra_job(RunMode.RUN, 7)
        assert resolve_device("auto") == torch.device("cuda")
    finally:
        HydraConfig.instance().cfg = None


def test_slurm_launcher_config_sets_the_usual_keys():
    from hydra.utils import instantiate

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                                                       "hydra.launcher.timeout_min=30"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.poolstudy_slurm.slurm_launcher.PoolstudySlurmLauncher"
    # resources left unset: the cluster's defaults, or derived from the jobs (poolstudy.slurm.resources)
    assert (launcher.partition, launcher.timeout_min, launcher.cpus_per_task, launcher.gpus_per_node,
            launcher.mem_gb, launcher.array_parallelism, launcher.max_num_timeout) == ("gpu", 30, None, None, None, 32, 3)
    built = instantiate(launcher)  # the plugin accepts every key (nothing is submitted)
    # by name: Hydra's plugin scan re-executes plugin modules, so class objects may be duplicated
    assert "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher" in {
        f"{c.__module__}.{c.__qualname__}" for c in type(built).__mro__}


@pytest.mark.slow
def test_submitit_local_runs_a_two_job_sweep(cache_dir, tmp_path):
    data = tmp_path / "data"
    make_idx_dataset(data, n_train=300, n_test=60)
    sweep = tmp_path / "sweep"
    env = {**os.environ, "POOLSTUDY_DATA": str(data), "POOLSTUDY_CACHE": str(cache_dir)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "-m", "hydra/launcher=submitit_local", "model=maxpool,strided",
         "trainer.epochs=1", "trainer.threads=1", "trainer.progress=false", "invariance.enabled=false",
         f"hydra.sweep.dir={sweep}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Submitit 'local' sweep output dir" in proc.stdout + proc.stderr
    types = set()
    for job in ("0", "1"):
        m = json.loads((sweep / job / "metrics.json").read_text())
        assert m["status"] == "complete" and m["epochs"] == 1 and 0 <= m["test_acc"] <= 1
        types.add(m["model"]["downsample"]["type"])
    assert types == {"maxpool", "strided"}
    # each job ran in its own submitit process, which left its result there
    results = list((sweep / ".submitit").glob("*/*_result.pkl"))
    assert len(results) == 2 and len({r.parent for r in results}) == 2
