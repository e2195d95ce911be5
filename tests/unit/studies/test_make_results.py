"""sweeps/make_results.py: every study's steps are experiment configs that compose, expand to the jobs
RESULTS.md describes, and share the budget the tuned/untuned comparisons rely on; --list prints them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from helpers import ROOT, load_script
from helpers.studies import compose_job, expansion, train_args
from poolstudy.jobs.sweep import expand_jobs, grid_params

make_results = load_script(ROOT / "sweeps" / "make_results.py")

EXPECTED_JOBS = {("seed_replication", 0): 30, ("seed_replication_tuned", 0): 30, ("seed_replication_tuned", 1): 6,
                 ("operator_zoo", 0): 48, ("operator_zoo", 1): 4, ("kernel_stride_grid", 0): 36,
                 ("allcnn_c_family", 0): 12, ("dropout_fixes", 0): 18, ("dropout_fixes", 1): 18,
                 ("operator_zoo_cifar10", 0): 30, ("beyond_lenet_resnet", 0): 12, ("beyond_lenet_vgg", 0): 12}
BUDGET = (10000, 3)  # dataset.train_subset, trainer.epochs of every tuned/untuned comparison


def step_args(study: str, index: int) -> list[str]:
    experiment, folder = make_results.STUDIES[study][index]
    chosen = ["model=conv,convpool"] if experiment in make_results.CHOSEN else None
    argv = make_results.command(study, experiment, folder, chosen)
    assert argv[1:3] == ["train.py", "-m"] and argv[-1] == f"hydra.sweep.dir=outputs/results/{study}" + (
        f"/{folder}" if folder else "")
    assert "hydra/launcher=local_parallel" in argv
    return train_args(" ".join(["python", *argv[1:]]))


def jobs_of(args: list[str]) -> list[list[str]]:
    return expand_jobs([*grid_params(compose_job(args)), *args])


def job_value(job: list[str], key: str) -> str:
    """The last value a job's overrides give ``key``."""
    return [o.split("=", 1)[1] for o in job if o.split("=", 1)[0] == key][-1]


def test_every_step_is_listed():
    assert sorted((s, i) for s, steps in make_results.STUDIES.items() for i in range(len(steps))) == sorted(EXPECTED_JOBS)


@pytest.mark.parametrize("study, index", sorted(EXPECTED_JOBS))
def test_every_step_expands_to_its_jobs_with_its_settings(study, index, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    found = expansion(step_args(study, index))
    assert found["jobs"] == EXPECTED_JOBS[(study, index)]
    cfg = found["first"]
    settings = (cfg["dataset"]["train_subset"], cfg["trainer"]["epochs"])
    if study in ("seed_replication_tuned", "operator_zoo", "kernel_stride_grid"):
        assert settings == BUDGET
    if study == "kernel_stride_grid":
        assert cfg["dataset"]["name"] == "fashion_mnist" and "dataset" not in dict(found["varying"][0])
    if study in ("seed_replication", "dropout_fixes", "operator_zoo_cifar10"):  # the trainer's defaults
        assert settings == (None, 5) and cfg["trainer"]["bn_recalibration"] is True
    if study == "allcnn_c_family":
        assert (cfg["model"]["arch"], cfg["model"]["width"], cfg["trainer"]["epochs"]) == ("allcnn_c", 0.25, 4)
    if study.startswith("beyond_lenet"):
        assert (cfg["model"]["arch"], cfg["dataset"]["name"], cfg["dataset"]["train_subset"],
                cfg["trainer"]["epochs"]) == (study.rsplit("_", 1)[1], "cifar10", 10000, 5)
    if study == "dropout_fixes":
        expected = [(0.0, "before_bn"), (0.4, "after_bn")][index]  # (c) no dropout, (d) dropout after the BNs
        assert (cfg["model"]["dropout"], cfg["model"]["dropout_position"]) == expected
        cells = {(job_value(j, "model"), job_value(j, "dataset"), job_value(j, "seed"))
                 for j in jobs_of(step_args(study, index))}
        assert cells == {(m, d, str(s)) for m in ("maxpool", "strided") for d in ("mnist", "fashion_mnist", "cifar10")
                         for s in range(3)}
    if study == "operator_zoo_cifar10":
        from poolstudy.models import DOWNSAMPLERS

        jobs = jobs_of(step_args(study, index))
        built_in = {name for name, cls in DOWNSAMPLERS.items() if cls.at_points != "published"}
        assert {job_value(j, "model") for j in jobs} == built_in and len(built_in) == 10
        assert {job_value(j, "dataset") for j in jobs} == {"cifar10"}
        assert {job_value(j, "seed") for j in jobs} == {"0", "1", "2"}


def test_the_two_dropout_fixes_share_everything_but_the_fix(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    no_dropout, after_bn = (expansion(step_args("dropout_fixes", i)) for i in (0, 1))
    assert no_dropout["varying"] == after_bn["varying"]
    strip = lambda cfg: {**cfg, "model": {k: v for k, v in cfg["model"].items() if not k.startswith("dropout")}}  # noqa: E731
    assert strip(no_dropout["first"]) == strip(after_bn["first"])
    seed = compose_job(["experiment=dropout_fixes"])
    assert (seed.model.dropout, seed.model.dropout_position) == (0.4, "before_bn")  # the seed's model otherwise


def test_tuned_and_untuned_runs_share_one_budget(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    untuned, hpo = (expansion(step_args("seed_replication_tuned", i)) for i in (0, 1))
    for found in (untuned, hpo):
        assert (found["first"]["dataset"]["train_subset"], found["first"]["trainer"]["epochs"]) == BUDGET
    sweeper = hpo["sweeper"]
    assert sweeper["_target_"].endswith("FairOptunaSweeper") and sweeper["final_seeds"] == 5
    assert (sweeper["n_trials"], sweeper["n_jobs"]) == (8, 2)
    assert expansion(step_args("operator_zoo", 1))["sweeper"] == sweeper  # the zoo's tuning: the same budget
    assert make_results.CHOSEN["results/operator_zoo_tuned"]  # chosen from the zoo's results, on validation accuracy


def test_list_prints_every_command_without_running_anything():
    out = subprocess.run([sys.executable, str(ROOT / "sweeps" / "make_results.py"), "--list"], capture_output=True,
                         text=True, check=True).stdout
    lines = out.strip().splitlines()
    assert len(lines) == sum(len(steps) for steps in make_results.STUDIES.values())
    assert all(line.split(": ", 1)[1].startswith("python train.py -m experiment=") for line in lines)
    gpu = subprocess.run([sys.executable, str(ROOT / "sweeps" / "make_results.py"), "--list", "--gpu"],
                         capture_output=True, text=True, check=True).stdout
    assert "local_parallel" not in gpu and gpu.count("trainer.device=cuda") == len(lines)
    assert gpu.count("dataset.train_subset=null") == len(make_results.FULL_SCALE)


def test_gpu_commands_of_beyond_lenet_are_the_full_budget(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    out = subprocess.run([sys.executable, str(ROOT / "sweeps" / "make_results.py"), "--list", "--gpu", "--only",
                          "beyond_lenet_resnet", "beyond_lenet_vgg"], capture_output=True, text=True, check=True).stdout
    lines = dict(line.split(": ", 1) for line in out.strip().splitlines())
    assert sorted(lines) == ["beyond_lenet_resnet", "beyond_lenet_vgg"]
    for study, line in lines.items():
        cfg = compose_job(train_args(line))
        assert (cfg.dataset.train_subset, cfg.trainer.epochs, cfg.optimizer.lr, cfg.invariance.subset) == (
            None, 182, 0.1, 2000), study
        assert cfg.optimizer._target_ == "torch.optim.SGD" and cfg.optimizer.weight_decay == 1e-4
        assert cfg.scheduler.name == "cosine" and "trainer.device=cuda" in line
        assert cfg.model.arch == study.rsplit("_", 1)[1] and "local_parallel" not in line
    assert compose_job(train_args(lines["beyond_lenet_vgg"])).model.width == 1.0
