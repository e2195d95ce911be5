import itertools

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from helpers import CONF_DIR, compose
from poolstudy.errors import InvalidModelError, PoolStudyError
from poolstudy.jobs.config_checks import check_config
from poolstudy.models.profile import check_batch_statistics, trace_shapes
from poolstudy.training.schedule import build_scheduler


def options(group):
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def test_groups_exist():
    assert {"maxpool", "strided", "avgpool"} <= set(options("model"))
    assert {"mnist", "fashion_mnist", "cifar10", "imagefolder"} <= set(options("dataset"))
    assert {"sgd", "adam", "adamw"} <= set(options("optimizer"))
    assert {"none", "cosine", "step", "onecycle"} <= set(options("scheduler"))


SMALL_ARCHS = ("lenet", "allcnn_c")  # built from the registry; the others by surgery on a published network
SURGERY_ARCHS = [a for a in options("arch") if a not in SMALL_ARCHS]
COMBINATIONS = [
    *itertools.product(SMALL_ARCHS, [m for m in options("model") if m != "published"], options("dataset")),
    # the published networks: every operator on CIFAR-10 (tests/unit/models/test_architectures.py covers the
    # builders, other sizes and the rule)
    *itertools.product(SURGERY_ARCHS, options("model"), ["cifar10"]),
]
# VGG's fifth pooling point gets a 2x2 map from a 32x32 image, less than fractional max-pooling's 3x3 window
TOO_SMALL = {("vgg", "fracmaxpool", "cifar10")}


@pytest.mark.parametrize("arch,model,dataset", COMBINATIONS)
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
    if (arch, model, dataset) in TOO_SMALL:  # the job's shape check refuses it, naming the layer
        with pytest.raises(InvalidModelError, match="The model cannot run on this input size: layer 'features"):
            trace_shapes(net, (channels, size, size))
        return
    assert net.eval()(torch.zeros(1, channels, size, size)).shape == (1, cfg.dataset.num_classes or 10)


def test_a_network_too_deep_for_the_images_is_refused_by_the_jobs_shape_check():
    """VGG's five 2x2 pools take a 28x28 MNIST image to 0x0: the job's shape trace names the layer."""
    cfg = compose(["arch=vgg", "model=avgpool", "dataset=mnist"])
    net = instantiate(cfg.model, _convert_="all", in_channels=1, num_classes=10)
    with pytest.raises(InvalidModelError) as refused:
        trace_shapes(net, (1, 28, 28))
    assert str(refused.value).startswith("The model cannot run on this input size: layer 'features.28' (AvgPool2d")


@pytest.mark.parametrize("arch,model,batch_size,refused", [
    ("vgg", "strided", 1, True),     # the last convolution at stride 2 leaves 1x1 for its BatchNorm
    ("vgg", "strided", 2, False),    # two images give it two values per channel
    ("vgg", "maxpool", 1, False),    # as published, the last BatchNorm sees 2x2 (the pool comes after it)
    ("resnet", "published", 1, False),
])
def test_a_batch_that_gives_a_batchnorm_one_value_per_channel_is_refused(arch, model, batch_size, refused):
    """torch stops such a training step with "Expected more than 1 value per channel": the job says which
    layer and what batch size works before it trains."""
    cfg = compose([f"arch={arch}", f"model={model}", "dataset=cifar10", f"trainer.batch_size={batch_size}"])
    rows = trace_shapes(instantiate(cfg.model, _convert_="all", in_channels=3, num_classes=10), (3, 32, 32))
    if not refused:
        check_batch_statistics(rows, batch_size)
        return
    with pytest.raises(InvalidModelError) as error:
        check_batch_statistics(rows, batch_size)
    assert str(error.value) == (
        "trainer.batch_size = 1 cannot train this model: BatchNorm layer 'features.26' gets a 512x1x1 map "
        "(channels x H x W), so a batch of 1 image gives it one value per channel, and batch statistics need at "
        "least two. Use trainer.batch_size=2 or more.")


@pytest.mark.parametrize("arch", SMALL_ARCHS)
def test_published_is_refused_for_the_registry_built_architectures(arch):
    cfg = compose([f"arch={arch}", "model=published"])
    check_config(cfg)
    with pytest.raises(Exception) as refused:  # noqa: PT011 - the error, wrapped by Hydra's instantiate
        instantiate(cfg.model, _convert_="all", in_channels=1, num_classes=10)
    assert "model=published keeps the downsampling of a network built elsewhere" in str(refused.value)
    assert "Its original design is model=maxpool" in str(refused.value)


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
