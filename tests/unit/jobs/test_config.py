import itertools

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from helpers import CONF_DIR, compose
from poolstudy.jobs.config_checks import check_config
from poolstudy.errors import PoolStudyError
from poolstudy.training.schedule import build_scheduler


def options(group):
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def test_groups_exist():
    assert {"maxpool", "strided", "avgpool"} <= set(options("model"))
    assert {"mnist", "fashion_mnist", "cifar10", "imagefolder"} <= set(options("dataset"))
    assert {"sgd", "adam", "adamw"} <= set(options("optimizer"))
    assert {"none", "cosine", "step", "onecycle"} <= set(options("scheduler"))


@pytest.mark.parametrize("arch,model,dataset", list(itertools.product(options("arch"), options("model"), options("dataset"))))
def test_every_model_dataset_combination_composes_and_builds(arch, model, dataset):
    extra = ["dataset.root=/x"] if dataset == "imagefolder" else []
    cfg = compose([f"arch={arch}", f"model={model}", f"dataset={dataset}", *extra])
    check_config(cfg)
    channels = cfg.dataset.channels or 3
    net = instantiate(cfg.model, _convert_="all", in_channels=channels, num_classes=cfg.dataset.num_classes or 10)
    assert cfg.model.downsample.type == model
    first_conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.in_channels == channels
    size = cfg.dataset.image_size or 32
    assert net.eval()(torch.zeros(1, channels, size, size)).shape == (1, cfg.dataset.num_classes or 10)


@pytest.mark.parametrize("optimizer,scheduler", list(itertools.product(options("optimizer"), options("scheduler"))))
def test_every_optimizer_and_schedule_builds(optimizer, scheduler):
    import torch

    cfg = compose([f"optimizer={optimizer}", f"scheduler={scheduler}"])
    check_config(cfg)
    params = [torch.nn.Parameter(torch.zeros(3))]
    opt = instantiate(cfg.optimizer)(params)
    assert opt.param_groups[0]["lr"] == cfg.optimizer.lr
    assert opt.defaults["fused"] is True  # measured faster on the CPU (python -m benchmarks.bench --options)
    sched = build_scheduler(cfg.scheduler, opt, epochs=2, steps_per_epoch=5)
    assert (sched is None) == (scheduler == "none")
    for _ in range(10):
        opt.step()
        if sched:
            sched.step()


def test_channels_and_classes_come_from_the_dataset():
    cfg = compose(["dataset=cifar10"])
    assert (cfg.model.in_channels, cfg.model.num_classes) == (3, 10)
    cfg = compose(["dataset=mnist"])
    assert (cfg.model.in_channels, cfg.model.num_classes) == (1, 10)


@pytest.mark.parametrize("override,key", [
    ("trainer.epochs=abc", "trainer.epochs"),
    ("trainer.epochs=0", "trainer.epochs"),
    ("trainer.batch_size=0", "trainer.batch_size"),
    ("optimizer.lr=-0.1", "optimizer.lr"),
    ("optimizer.lr=nan", "optimizer.lr"),
    ("model.dropout=1.5", "model.dropout"),
    ("dataset.val_fraction=0", "dataset.val_fraction"),
    ("trainer.device=gpu", "trainer.device"),
    ("trainer.threads=0", "trainer.threads"),
    ("trainer.channels_last=sometimes", "trainer.channels_last"),
    ("trainer.keep_freed_memory=sometimes", "trainer.keep_freed_memory"),
    ("optimizer.fused=yes", "optimizer.fused"),
    ("seed=-1", "seed"),
])
def test_bad_values_name_the_key(override, key):
    cfg = compose([override])
    with pytest.raises(PoolStudyError, match=rf"^{key.replace('.', '[.]')} = .* is not valid: it must be"):
        check_config(cfg)


def test_defaults_are_the_seed_setup():
    cfg = compose([])
    assert cfg.model.arch == "lenet" and cfg.model.downsample.type == "maxpool"
    assert OmegaConf.to_container(cfg.model.downsample) == {"type": "maxpool", "kernel_size": 2, "stride": 2, "padding": 0}
    assert cfg.model.dropout == 0.4 and cfg.dataset.name == "mnist"


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 5, 7, 8, 13])
def test_onecycle_survives_tiny_step_counts(steps):
    import torch

    cfg = compose(["scheduler=onecycle"])
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = build_scheduler(cfg.scheduler, opt, epochs=1, steps_per_epoch=steps)
    assert (sched is None) == (steps < 4)
    for _ in range(steps):
        opt.step()
        if sched:
            sched.step()
    assert all(g["lr"] >= 0 for g in opt.param_groups)


def test_git_dirty_means_code_or_config_changed_not_docs(tmp_path, monkeypatch):
    import subprocess

    from poolstudy.utils import environment

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    for path in ("src/a.py", "conf/c.yaml", "README.md"):
        (tmp_path / path).parent.mkdir(exist_ok=True)
        (tmp_path / path).write_text("x\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    monkeypatch.setattr(environment, "_PROJECT_ROOT", tmp_path)
    states = []
    for path in ("README.md", "conf/c.yaml"):
        (tmp_path / path).write_text("changed\n")
        environment.git_state.cache_clear()
        states.append(environment.git_state()["git_dirty"])
    environment.git_state.cache_clear()
    assert states == [False, True]
