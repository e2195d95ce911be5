"""Fair HPO sweeper: real sweeps on a small real-data subset."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from helpers import ROOT, SHARED_DATA, require_real
from poolstudy.errors import PoolStudyError
from poolstudy.hpo.space import grid_cells, search_space
from poolstudy.hpo.storage import mask_password, open_storage

SMALL = ["dataset=mnist", "trainer.epochs=1", "dataset.train_subset=600", "dataset.test_subset=200",
         "trainer.progress=false"]


def hpo_args(sweep_dir: Path, *extra: str, n_trials: int = 3, final_seeds: int = 2,
             recipe: tuple[str, ...] = ("hparams_search=optuna",)) -> list[str]:
    return ["-m", *recipe, f"hydra.sweep.dir={sweep_dir}", f"hydra.sweeper.n_trials={n_trials}",
            f"hydra.sweeper.final_seeds={final_seeds}", *SMALL, *extra]


def lr_only_search(config_dir: Path, choices: str) -> tuple[str, ...]:
    """A test-made hparams_search recipe searching only the learning rate; returns its overrides.
    (It extends the optuna recipe, whose other dimensions a null leaves out.)"""
    (config_dir / "hparams_search").mkdir(parents=True, exist_ok=True)
    (config_dir / "hparams_search" / "lr_only.yaml").write_text(
        "# @package _global_\n"
        "defaults:\n  - optuna\n  - _self_\n"
        "hydra:\n  sweeper:\n    params:\n"
        "      optimizer: null\n      optimizer.weight_decay: null\n      trainer.batch_size: null\n"
        "      model.dropout: null\n"
        f"      optimizer.lr: choice({choices})\n"
    )
    return ("--config-dir", str(config_dir), "hparams_search=lr_only")


def load(sweep_dir: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{sweep_dir}/optuna.db")


def counted(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
            and not t.user_attrs.get("interrupted") and not t.user_attrs.get("over_budget")]


# ---------------------------------------------------------------- unit level

def test_params_syntax_maps_to_modern_distributions():
    space, fixed = search_space({
        "optimizer.lr": "tag(log, interval(1e-4, 1e-1))",
        "model.dropout": "interval(0.0, 0.5)",
        "trainer.batch_size": "choice(64, 128)",
        "optimizer": "choice(adam, sgd)",
        "trainer.epochs": "range(1, 4)",
        "seed": "3",
    })
    assert space["optimizer.lr"] == FloatDistribution(1e-4, 1e-1, log=True)
    assert space["model.dropout"] == FloatDistribution(0.0, 0.5)
    assert space["trainer.batch_size"] == CategoricalDistribution([64, 128])
    assert space["optimizer"] == CategoricalDistribution(["adam", "sgd"])
    assert space["trainer.epochs"] == IntDistribution(1, 3)
    assert fixed == ["seed=3"]


def test_grid_cells_cross_the_comma_lists():
    cells, swept = grid_cells(["model=maxpool,strided", "dataset=mnist,fashion_mnist", "trainer.epochs=2"])
    assert len(cells) == 4 and swept == {"model", "dataset"}
    assert ["model=strided", "dataset=fashion_mnist", "trainer.epochs=2"] in cells
    with pytest.raises(PoolStudyError, match="interval on the command line"):
        grid_cells(["optimizer.lr=interval(0.1, 0.2)"])


def test_storage_password_is_masked_and_bad_urls_are_clear(tmp_path):
    assert mask_password("postgresql://bob:s3cret@db.example/hpo") == "postgresql://bob:***@db.example/hpo"
    with pytest.raises(PoolStudyError) as err:
        open_storage("postgresql://bob:s3cret@127.0.0.1:1/hpo")
    assert "s3cret" not in str(err.value) and "bob:***@" in str(err.value)
    with pytest.raises(PoolStudyError, match="not a valid storage URL"):
        open_storage("not a url")
    assert open_storage(f"sqlite:///{tmp_path}/sub/optuna.db") is not None
    assert (tmp_path / "sub" / "optuna.db").exists()


def test_modern_optuna_and_the_sweeper_is_discovered():
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper

    assert int(optuna.__version__.split(".")[0]) >= 4
    names = {p.__name__ for p in Plugins.instance().discover(Sweeper)}
    assert "FairOptunaSweeper" in names and "OptunaSweeper" in names


# ---------------------------------------------------------------- real sweeps

@pytest.mark.realdata
@pytest.mark.slow
def test_one_study_per_cell_with_equal_budgets_and_final_seeds(run_train, tmp_path):
    require_real("MNIST")
    sweep = tmp_path / "hpo"
    proc = run_train(*hpo_args(sweep), "model=maxpool,strided")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Warning" not in proc.stderr, proc.stderr[-3000:]  # no deprecation spam from optuna or the plugin
    names = ["lenet-maxpool-mnist", "lenet-strided-mnist"]
    spaces = []
    for name in names:
        study = load(sweep, name)
        assert len(counted(study)) == 3 and len(study.trials) == 3
        spaces.append([t.distributions for t in study.trials])
        summary = json.loads((sweep / name / "study_summary.json").read_text())
        assert summary["n_trials"] == 3 and summary["n_complete"] + summary["n_pruned"] + summary["n_failed"] == 3
        assert summary["sampler"] == "optuna.samplers.TPESampler" and summary["sampler_seed"] == 0
        assert summary["best_val_acc"] == max(t.value for t in study.trials if t.state == TrialState.COMPLETE)
        finals = sorted((sweep / name / "final").iterdir())
        assert [f.name for f in finals] == ["seed0", "seed1"]
        for f in finals:
            m = json.loads((f / "metrics.json").read_text())
            assert m["hpo"] == {"study_name": name, "role": "final", "trial": summary["best_trial"]}
            assert 0 < m["test_acc"] <= 1
            for key, value in summary["best_params"].items():
                if key == "optimizer":
                    assert m["optimizer"]["name"].lower() == value
                elif key == "trainer.batch_size":
                    assert m["optimizer"]["batch_size"] == value
        trial_metrics = json.loads((sweep / name / "trials" / "0" / "metrics.json").read_text())
        assert trial_metrics["hpo"]["role"] == "trial"
    # the same search space for every cell, trial by trial
    assert spaces[0] == spaces[1]
    table = (sweep / "hpo_summary.md").read_text()
    assert all(name in table for name in names)
    # re-running the finished command trains nothing new
    proc = run_train(*hpo_args(sweep), "model=maxpool,strided")
    assert proc.returncode == 0
    assert all(len(load(sweep, n).trials) == 3 for n in names)
    assert "Launching" not in proc.stdout + proc.stderr


@pytest.mark.realdata
@pytest.mark.slow
def test_killed_sweep_resumes_with_exactly_the_missing_trials(cache_dir, tmp_path):
    require_real("MNIST")
    sweep = tmp_path / "hpo"
    args = [sys.executable, str(ROOT / "train.py"), *hpo_args(sweep, final_seeds=0), "model=maxpool,strided"]
    env = {**os.environ, "POOLSTUDY_DATA": str(SHARED_DATA), "POOLSTUDY_CACHE": str(cache_dir)}
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    db = sweep / "optuna.db"
    deadline = time.time() + 240
    while time.time() < deadline:  # kill while the second study is half done
        time.sleep(0.3)
        if db.exists():
            try:
                with sqlite3.connect(db, timeout=5) as con:
                    done = con.execute("select count(*) from trials where state='COMPLETE'").fetchone()[0]
            except sqlite3.OperationalError:
                continue
            if done >= 4:
                break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert time.time() < deadline, "sweep did not progress"

    before = {n: len(counted(load(sweep, n))) for n in ("lenet-maxpool-mnist", "lenet-strided-mnist")}
    assert before["lenet-maxpool-mnist"] == 3 and before["lenet-strided-mnist"] < 3

    rerun = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    for name in before:
        study = load(sweep, name)
        good = counted(study)
        assert len(good) == 3, [(t.number, t.state, t.user_attrs) for t in study.trials]
        numbers = [t.number for t in good]
        assert len(set(numbers)) == len(numbers)
        # every counted trial has exactly one job folder, with a finished outcome
        for t in good:
            job = sweep / name / "trials" / str(t.number)
            assert (job / "metrics.json").exists() or (job / "status.json").exists()
    # the trial that was running when killed was marked interrupted and redone
    strided = load(sweep, "lenet-strided-mnist")
    interrupted = [t for t in strided.trials if t.user_attrs.get("interrupted")]
    assert len(strided.trials) == 3 + len(interrupted)


@pytest.mark.realdata
@pytest.mark.slow
def test_nan_trial_fails_and_the_study_goes_on(run_train, tmp_path):
    require_real("MNIST")
    sweep = tmp_path / "hpo"
    proc = run_train(*hpo_args(sweep, n_trials=4, final_seeds=1, recipe=lr_only_search(tmp_path / "conf", "0.05, 1e30")),
                     "model=strided", "optimizer=sgd", "hydra.sweeper.sampler.seed=1",
                     "hydra.sweeper.max_failure_fraction=0.9")
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = load(sweep, "lenet-strided-mnist")
    assert len(study.trials) == 4
    assert all(set(t.params) == {"optimizer.lr"} for t in study.trials)  # lr only: optimizer=sgd holds
    states = {(t.params["optimizer.lr"], t.state) for t in study.trials}
    assert (1e30, TrialState.FAIL) in states and (0.05, TrialState.COMPLETE) in states
    assert all(t.state == TrialState.FAIL for t in study.trials if t.params["optimizer.lr"] == 1e30)
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert all("nan" in t.user_attrs["fail_reason"] for t in failed)
    assert (sweep / "lenet-strided-mnist" / "final" / "seed0" / "metrics.json").exists()


@pytest.mark.realdata
@pytest.mark.slow
def test_pruned_trials_are_recorded_as_pruned(run_train, tmp_path):
    require_real("MNIST")
    sweep = tmp_path / "hpo"
    proc = run_train(*hpo_args(sweep, n_trials=5, final_seeds=0, recipe=lr_only_search(tmp_path / "conf", "3e-3, 1e-7")),
                     "model=maxpool", "trainer.epochs=3", "hydra.sweeper.sampler.seed=0",
                     "hydra.sweeper.pruner.n_startup_trials=1", "hydra.sweeper.pruner.n_warmup_steps=0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = load(sweep, "lenet-maxpool-mnist")
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned, [(t.params, t.state, t.intermediate_values) for t in study.trials]
    assert any(t.params["optimizer.lr"] == 1e-7 for t in pruned)
    for t in pruned:
        assert len(t.intermediate_values) < 3
        status = json.loads((sweep / "lenet-maxpool-mnist" / "trials" / str(t.number) / "status.json").read_text())
        assert status["status"] == "pruned"
    summary = json.loads((sweep / "lenet-maxpool-mnist" / "study_summary.json").read_text())
    assert summary["n_pruned"] == len(pruned) and summary["n_failed"] == 0


@pytest.mark.realdata
@pytest.mark.slow
def test_changed_settings_are_refused_and_extension_is_explicit(run_train, tmp_path):
    require_real("MNIST")
    sweep = tmp_path / "hpo"
    assert run_train(*hpo_args(sweep, n_trials=2, final_seeds=0), "model=strided").returncode == 0
    proc = run_train(*hpo_args(sweep, n_trials=3, final_seeds=0), "model=strided")
    assert proc.returncode == 2 and "hydra.sweeper.extend=true" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_train(*hpo_args(sweep, n_trials=2, final_seeds=0), "model=strided", "trainer.epochs=2")
    assert proc.returncode == 2 and "different settings (" in proc.stderr and "epochs)" in proc.stderr
    proc = run_train(*hpo_args(sweep, n_trials=3, final_seeds=0), "model=strided", "hydra.sweeper.extend=true")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(counted(load(sweep, "lenet-strided-mnist"))) == 3


def test_unlabelled_running_trial_of_a_dead_worker_is_reclaimed(tmp_path):
    """A sweep killed between study.ask() and labelling the trial leaves it without a worker."""
    import socket

    from poolstudy.hpo.budget import WORKER_ATTR, reclaim_interrupted, register_worker

    storage = open_storage(f"sqlite:///{tmp_path}/o.db")
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    study.set_user_attr(f"{WORKER_ATTR}:{socket.gethostname()}:{int(dead.stdout)}", True)
    orphan = study.ask()
    assert reclaim_interrupted(study, storage) == 1
    reclaimed = study.trials[orphan.number]
    assert reclaimed.state == TrialState.FAIL and reclaimed.user_attrs["interrupted"]

    register_worker(study)  # this live process now owns the study too
    second = study.ask()
    assert reclaim_interrupted(study, storage) == 0
    assert study.trials[second.number].state == TrialState.RUNNING
