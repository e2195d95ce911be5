"""sweeps/make_results.py: every study's commands compose, expand to the jobs RESULTS.md describes, and
share the budget the tuned/untuned comparisons rely on."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from conftest import ROOT
from test_zoo import compose_with

spec = importlib.util.spec_from_file_location("make_results", ROOT / "sweeps" / "make_results.py")
make_results = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_results)


def expand(step: list[str]) -> list[list[str]]:
    """Job overrides as Hydra's BasicSweeper builds them: the sweep file's grid, then the command line's
    values (a later value of a key replaces an earlier one)."""
    job_args = [a for a in step if not a.startswith("hydra")]
    sweep = next((a.split("=", 1)[1] for a in job_args if a.startswith("+sweeps=")), None)
    grid = []
    if sweep:
        params = compose_with([], sweep).hydra.sweeper.params
        grid = [f"{k}={v}" for k, v in params.items()]
    parsed = OverridesParser.create().parse_overrides(grid + [a for a in job_args if not a.startswith("+sweeps=")])
    (jobs,) = BasicSweeper.split_arguments(parsed, max_batch_size=None)
    return [[*([f"+sweeps={sweep}"] if sweep else []), *job] for job in jobs]


EXPECTED_JOBS = {("seed_replication", 0): 30, ("seed_replication_tuned", 0): 30, ("operator_zoo", 0): 48,
                 ("kernel_stride_grid", 0): 36, ("allcnn_c_family", 0): 12,
                 ("dropout_fixes", 0): 18, ("dropout_fixes", 1): 18, ("operator_zoo_cifar10", 0): 30}


@pytest.mark.parametrize("study, index", sorted(EXPECTED_JOBS))
def test_every_study_expands_to_its_jobs_and_each_composes(study, index, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    step = make_results.STUDIES[study][index]
    jobs = expand(step)
    assert len(jobs) == EXPECTED_JOBS[(study, index)]
    assert any(a.startswith("hydra.sweep.dir=outputs/results/") for a in step)
    assert "hydra/launcher=local_parallel" in step
    cfg = compose_with(jobs[-1])
    if study in ("seed_replication_tuned", "operator_zoo", "kernel_stride_grid"):
        assert (cfg.dataset.train_subset, cfg.trainer.epochs) == (10000, 3)
    if study == "kernel_stride_grid":
        assert {j for job in jobs for j in job if j.startswith("dataset=")} == {"dataset=fashion_mnist"}
    if study == "seed_replication":
        assert (cfg.dataset.train_subset, cfg.trainer.epochs) == (None, 5)
    if study == "allcnn_c_family":
        assert (cfg.model.arch, cfg.model.width, cfg.trainer.epochs) == ("allcnn_c", 0.25, 4)
    if study in ("dropout_fixes", "operator_zoo_cifar10"):  # the trainer's defaults, as seed_replication
        assert (cfg.dataset.train_subset, cfg.trainer.epochs, cfg.trainer.bn_recalibration) == (None, 5, True)
    if study == "dropout_fixes":
        cells = {(job_value(j, "model"), job_value(j, "dataset"), job_value(j, "seed")) for j in jobs}
        assert cells == {(m, d, str(s)) for m in ("maxpool", "strided") for d in ("mnist", "fashion_mnist", "cifar10")
                         for s in range(3)}
        fix = [compose_with(job) for job in (jobs[0], jobs[-1])]
        expected = [(0.0, "before_bn"), (0.4, "after_bn")][index]  # (c) no dropout, (d) dropout after the BNs
        assert {(c.model.dropout, c.model.dropout_position) for c in fix} == {expected}
        assert step[-1].startswith("hydra.sweep.dir=outputs/results/dropout_fixes/")
    if study == "operator_zoo_cifar10":
        from poolstudy.models import DOWNSAMPLERS

        assert {job_value(j, "model") for j in jobs} == set(DOWNSAMPLERS) and len(DOWNSAMPLERS) == 10
        assert {job_value(j, "dataset") for j in jobs} == {"cifar10"}
        assert {job_value(j, "seed") for j in jobs} == {"0", "1", "2"}


def job_value(job: list[str], key: str) -> str:
    """The last value a job's overrides give ``key`` (the command line's, after the sweep file's)."""
    return [o.split("=", 1)[1] for o in job if o.split("=", 1)[0] == key][-1]


def test_the_two_dropout_fixes_share_everything_but_the_fix(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    no_dropout, after_bn = (expand(step) for step in make_results.STUDIES["dropout_fixes"])
    strip = lambda job: [o for o in job if not o.startswith("model.dropout")]  # noqa: E731
    assert [strip(j) for j in no_dropout] == [strip(j) for j in after_bn]
    seed = compose_with(strip(no_dropout[0]))
    assert (seed.model.dropout, seed.model.dropout_position) == (0.4, "before_bn")  # the seed's model otherwise


def test_tuned_and_untuned_runs_share_one_budget(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    untuned, hpo = make_results.STUDIES["seed_replication_tuned"]
    assert set(make_results.BUDGET) <= set(untuned) and set(make_results.BUDGET) <= set(hpo)
    single = [a for a in hpo if not a.startswith("hydra") and "," not in a]  # one cell of the grid
    cfg = compose_with(single + ["model=maxpool", "dataset=cifar10"])
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("FairOptunaSweeper") and sweeper.final_seeds == 5
    assert "hydra.sweeper.n_trials=8" in hpo
    zoo_tuning = make_results.STUDIES["operator_zoo"][1]
    assert callable(zoo_tuning)  # chosen from the zoo's results, on validation accuracy


def test_list_prints_every_command_without_running_anything():
    out = subprocess.run([sys.executable, str(ROOT / "sweeps" / "make_results.py"), "--list"], capture_output=True,
                         text=True, check=True).stdout
    lines = out.strip().splitlines()
    assert len(lines) == sum(len(steps) for steps in make_results.STUDIES.values())
    assert all(line.split(": ", 1)[1].startswith("python train.py -m ") for line in lines)
    gpu = subprocess.run([sys.executable, str(ROOT / "sweeps" / "make_results.py"), "--list", "--gpu"],
                         capture_output=True, text=True, check=True).stdout
    assert "dataset.train_subset=10000" not in gpu and gpu.count("trainer.device=cuda") == len(lines)
