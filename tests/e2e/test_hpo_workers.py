"""Several HPO worker processes on one study: a real PostgreSQL server and Optuna's journal file.

Each worker is the documented recipe: `python train.py -m hparams_search=optuna ...` with the
same storage and study, its own hydra.sweep.dir. PostgreSQL runs as a throw-away local server
(tests/helpers/pgserver.py): .ci/run starts one and exports POOLSTUDY_TEST_POSTGRES; elsewhere the
fixture starts its own, or skips with the reason when the server programs are missing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from helpers import ROOT
from helpers.datafiles import make_idx_dataset
from helpers.pgserver import Server, ServerUnavailable, start
from poolstudy.hpo.budget import WORKER_ATTR, discarded

STUDY = "lenet-strided-mnist"
PASSWORD_ENV = "POOLSTUDY_TEST_PGPASSWORD"
JOB = ["model=strided", "dataset=mnist", "trainer.epochs=1", "trainer.threads=1", "trainer.device=cpu",
       "trainer.progress=false", "invariance.enabled=false", "trainer.bn_recalibration_batches=2"]


@pytest.fixture(scope="module")
def postgres():
    given = os.environ.get("POOLSTUDY_TEST_POSTGRES")
    if given:  # CI: the server must be there; a failure is a failure, not a skip
        yield Server.at(given)
        return
    try:
        server = start()
    except ServerUnavailable as exc:
        pytest.skip(f"no PostgreSQL server for the multi-worker test: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def idx_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("idx")
    make_idx_dataset(root, n_train=300, n_test=60)
    return root


def launch_worker(sweep_dir: Path, storage: str, n_trials: int, env: dict, *extra: str) -> subprocess.Popen:
    args = [sys.executable, str(ROOT / "train.py"), "-m", "hparams_search=optuna", f"hydra.sweep.dir={sweep_dir}",
            f"hydra.sweeper.storage='{storage}'", f"hydra.sweeper.n_trials={n_trials}", "hydra.sweeper.final_seeds=0",
            *JOB, *extra]
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def run_workers(dirs: list[Path], storage: str, n_trials: int, env: dict, *extra: str) -> tuple[float, str]:
    """Run one worker per folder concurrently; returns the wall time and their output."""
    started = time.perf_counter()
    procs = [launch_worker(d, storage, n_trials, env, *extra) for d in dirs]
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    wall = time.perf_counter() - started
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
    return wall, "\n".join(outputs)


def counted(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials() if t.state != TrialState.RUNNING and not discarded(t)]


def trial_folders(dirs: list[Path]) -> dict[int, list[Path]]:
    found: dict[int, list[Path]] = {}
    for d in dirs:
        for job in (d / STUDY / "trials").glob("*"):
            found.setdefault(int(job.name), []).append(job)
    return found


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["postgresql", "journal"])
def test_two_workers_share_one_study_and_its_budget(backend, request, idx_data, cache_dir, tmp_path):
    env = {**os.environ, "POOLSTUDY_DATA": str(idx_data), "POOLSTUDY_CACHE": str(cache_dir)}
    secret = None
    if backend == "postgresql":
        server = request.getfixturevalue("postgres")
        database = f"hpo_{os.getpid()}_{int(time.time() * 1000) % 10**8}"
        server.create_database(database)
        secret = server.password
        env[PASSWORD_ENV] = secret
        # the password reaches the sweeper through an interpolation, never as text on the command line
        storage = server.url(database, with_password=False).replace(
            "poolstudy@", f"poolstudy:${{oc.env:{PASSWORD_ENV}}}@")
        python_url = server.url(database)
    else:
        storage = python_url = f"journal:{tmp_path / 'journal.log'}"
    n_trials = 4
    workers = [tmp_path / "worker0", tmp_path / "worker1"]

    wall, output = run_workers(workers, storage, n_trials, env)
    print(f"\n{backend}: 2 workers, {n_trials} trials: {wall:.1f} s")

    from poolstudy.hpo.storage import open_storage

    study = optuna.load_study(study_name=STUDY, storage=open_storage(python_url))
    good = counted(study)
    assert len(good) == n_trials, [(t.number, t.state, t.user_attrs) for t in study.get_trials()]
    assert any(t.state == TrialState.COMPLETE for t in good)
    # both processes worked on the study (the worker id is host:pid)
    assert len({t.user_attrs[WORKER_ATTR] for t in good}) == 2
    # every counted trial ran exactly once: one job folder, in one worker's sweep dir, none for discarded ones
    folders = trial_folders(workers)
    assert sorted(folders) == sorted(t.number for t in good)
    for t in good:
        (job,) = folders[t.number]
        outcome = "metrics.json" if t.state == TrialState.COMPLETE else "status.json"
        assert (job / outcome).is_file(), (t.number, t.state, job)
        # the job reported its epoch to its own trial (pruning reaches the storage from the job)
        assert list(t.intermediate_values) == [1] or t.state == TrialState.FAIL

    # the study resumes from the storage: a larger budget adds exactly the missing trials
    old = {t.number: t.value for t in good}
    run_workers([tmp_path / "worker2"], storage, n_trials + 1, env, "hydra.sweeper.extend=true")
    study = optuna.load_study(study_name=STUDY, storage=open_storage(python_url))
    good = counted(study)
    assert len(good) == n_trials + 1
    assert {t.number: t.value for t in good if t.number in old} == old
    assert len(trial_folders([tmp_path / "worker2"])) == 1

    if secret:  # the password is in no log line, snapshot, summary or result file
        assert secret not in output
        for path in tmp_path.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path
        overrides = (folders[0][0] / ".hydra" / "overrides.yaml").read_text()
        assert "hpo.storage='postgresql://poolstudy:***@127.0.0.1" in overrides
