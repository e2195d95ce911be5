"""tests/helpers/trainpy.py runs train.py as a fork of a pre-imported server: it must be indistinguishable
from ``python train.py`` for what the tests look at (exit status, stdout, stderr, files written)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from helpers import ROOT, trainpy


def _real(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("args,exit_code", [
    (["model=no_such_operator"], 1),                       # Hydra's composition error
    (["trainer.epochs=0"], 2),                             # the project's one-paragraph error
    (["-m", "model=maxpool,strided", "--cfg", "job"], 0),  # every job's config
], ids=["hydra_error", "project_error", "jobs_listed"])
def test_a_forked_train_py_prints_and_exits_as_a_real_one(args, exit_code, tmp_path):
    env = {**os.environ, "POOLSTUDY_CACHE": str(tmp_path / "cache")}
    env.pop("HYDRA_FULL_ERROR", None)
    assert trainpy._forkable(env)
    forked, real = trainpy.run(args, env=env), _real(args, env)
    assert (forked.returncode, forked.stdout, forked.stderr) == (real.returncode, real.stdout, real.stderr)
    assert real.returncode == exit_code, real.stderr[-2000:]


def test_a_job_trains_the_same_forked_and_real(tmp_path):
    """The same tiny job, forked and real: the same metrics (its history and test accuracy)."""
    import json

    env = {**os.environ, "POOLSTUDY_CACHE": str(tmp_path / "cache")}
    env.pop("HYDRA_FULL_ERROR", None)
    tiny = ["dataset=shapes", "trainer.epochs=1", "dataset.train_subset=200", "invariance.enabled=false",
            "trainer.progress=false"]
    forked = trainpy.run([*tiny, f"hydra.run.dir={tmp_path / 'forked'}"], env=env)
    real = _real([*tiny, f"hydra.run.dir={tmp_path / 'real'}"], env)
    assert forked.returncode == real.returncode == 0, forked.stderr[-2000:] + real.stderr[-2000:]
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("forked", "real"))
    figures = ("train_loss", "train_acc", "val_loss", "val_acc")
    assert [{k: h[k] for k in figures} for h in a["history"]] == [{k: h[k] for k in figures} for h in b["history"]]
    assert a["test_acc"] == b["test_acc"]
    assert a["environment"]["torch_threads"] == b["environment"]["torch_threads"]


def test_an_environment_read_at_start_up_gets_a_real_interpreter():
    assert not trainpy._forkable({**os.environ, "PYTHONPATH": "/somewhere"})
    assert not trainpy._forkable({**os.environ, "OMP_NUM_THREADS": "7"})
    assert not trainpy._forkable({**os.environ, "POOLSTUDY_TEST_REAL_PROCESSES": "1"})
    assert trainpy._forkable({**os.environ, "POOLSTUDY_DATA": "/data", "CUBLAS_WORKSPACE_CONFIG": ":4096:8"})
