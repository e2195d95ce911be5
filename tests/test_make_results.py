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
                 ("kernel_stride_grid", 0): 36, ("allcnn_c_family", 0): 12, ("beyond_lenet_resnet", 0): 12,
                 ("beyond_lenet_vgg", 0): 12}


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
    if study.startswith("beyond_lenet"):
        assert (cfg.model.arch, cfg.dataset.name, cfg.dataset.train_subset, cfg.trainer.epochs) == (
            study.rsplit("_", 1)[1], "cifar10", 10000, 5)


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


def test_gpu_commands_of_beyond_lenet_are_the_full_budget(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    out = subprocess.run([sys.executable, str(ROOT / "sweeps" / "make_results.py"), "--list", "--gpu", "--only",
                          "beyond_lenet_resnet", "beyond_lenet_vgg"], capture_output=True, text=True, check=True).stdout
    lines = dict(line.split(": ", 1) for line in out.strip().splitlines())
    for study, line in lines.items():
        words = line.split()[2:]
        cfg = compose_with([w for w in words if not w.startswith(("hydra", "-m"))])
        assert (cfg.dataset.train_subset, cfg.trainer.epochs, cfg.optimizer.lr, cfg.trainer.device) == (
            None, 182, 0.1, "cuda"), study
        assert cfg.optimizer._target_ == "torch.optim.SGD" and cfg.optimizer.weight_decay == 1e-4
        assert cfg.model.arch == study.rsplit("_", 1)[1] and "local_parallel" not in line
    assert "model.width=1.0" in lines["beyond_lenet_vgg"]


def test_a_pending_report_block_becomes_a_real_one_once_its_records_exist():
    text = ("# Report\n\n<!-- pending: poolstudy.collect docs/studies/beyond_lenet_resnet --out x --by model -->\n"
            "*Records pending.*\n<!-- pending: /poolstudy.collect -->\n\n"
            "<!-- pending: poolstudy.collect docs/studies/beyond_lenet_vgg --out y -->\n"
            "<!-- pending: /poolstudy.collect -->\n")
    done = make_results.enable_pending(text, "beyond_lenet_resnet")
    assert ("<!-- poolstudy.collect docs/studies/beyond_lenet_resnet --out x --by model -->\n*Records pending.*\n"
            "<!-- /poolstudy.collect -->") in done
    assert done.count("<!-- pending: ") == 2  # the other study's block stays pending
    assert make_results.enable_pending(done, "beyond_lenet") == done  # a prefix of a name is not the name
    from poolstudy.publish import find_blocks

    assert len(find_blocks(done, "r")) == 1 and find_blocks(text, "r") == []
