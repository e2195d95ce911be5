"""train.py run the way users run it: subprocesses on real (subset) data."""

import json
from pathlib import Path

import pytest

from helpers import require_real
from helpers.datafiles import make_image_folder, make_tar_gz

QUICK = ["trainer.epochs=1", "dataset.train_subset=1500", "dataset.test_subset=500", "trainer.progress=false"]
METRIC_KEYS = {"val_acc", "test_acc", "test_loss", "params", "macs", "train_time_s", "images_per_s", "epochs", "seed",
               "history", "model", "dataset", "optimizer", "environment", "val_acc_raw", "test_acc_raw",
               "bn_recalibrated", "feature_maps", "status"}


def load_metrics(job: Path) -> dict:
    return json.loads((job / "metrics.json").read_text())


@pytest.mark.realdata
@pytest.mark.slow
def test_multirun_models_by_datasets_on_real_data(run_train, tmp_path):
    require_real("MNIST", "FashionMNIST")
    sweep = tmp_path / "sweep"
    proc = run_train("-m", "model=maxpool,strided", "dataset=mnist,fashion_mnist", *QUICK, f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [j.name for j in jobs] == ["0", "1", "2", "3"]
    seen = set()
    for job in jobs:
        m = load_metrics(job)
        assert METRIC_KEYS <= set(m)
        assert (job / ".hydra" / "config.yaml").is_file() and (job / ".hydra" / "overrides.yaml").is_file()
        seen.add((m["model"]["downsample"]["type"], m["dataset"]["name"]))
        assert m["params"] == 52_174 and m["epochs"] == 1 and len(m["history"]) == 1
        assert m["dataset"]["train"] + m["dataset"]["val"] == 1500 and m["dataset"]["test"] == 500
        assert 0.5 < m["test_acc"] <= 1.0, m["test_acc"]  # 10 classes: chance is 0.1
        assert m["macs"] == (1_021_200 if m["model"]["downsample"]["type"] == "maxpool" else 580_200)
        env = m["environment"]
        assert env["packages"]["torch"] and env["device"] == "cpu" and "git_commit" in env
        phases = m["time_breakdown_s"]
        assert list(phases) == ["setup", "data", "model", "training", "test", "bn_recalibration", "probes"]
        assert all(seconds >= 0 for seconds in phases.values())
        assert sum(phases.values()) == pytest.approx(m["job_time_s"], abs=0.01)
        assert phases["training"] == pytest.approx(m["train_time_s"], abs=0.01)
    assert seen == {("maxpool", "mnist"), ("strided", "mnist"), ("maxpool", "fashion_mnist"), ("strided", "fashion_mnist")}


@pytest.mark.realdata
@pytest.mark.slow
def test_snapshot_rerun_reproduces_metrics_exactly(run_train, tmp_path):
    require_real("MNIST")
    first = tmp_path / "first"
    proc = run_train("model=strided", *QUICK, "trainer.epochs=2", "seed=7", f"hydra.run.dir={first}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    second = tmp_path / "second"
    proc = run_train("--config-path", str(first / ".hydra"), "--config-name", "config", f"hydra.run.dir={second}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = load_metrics(first), load_metrics(second)
    for key in ("val_acc", "test_acc", "test_loss", "val_acc_raw", "test_acc_raw", "params", "macs"):
        assert a[key] == b[key], key
    strip = lambda h: [{k: v for k, v in e.items() if k != "epoch_time_s"} for e in h]  # noqa: E731
    assert strip(a["history"]) == strip(b["history"])
    assert a["seed"] == b["seed"] == 7


@pytest.mark.realdata
def test_channels_last_option_trains_in_nhwc(run_train, tmp_path):
    require_real("MNIST")
    job = tmp_path / "nhwc"
    proc = run_train("trainer.channels_last=true", *QUICK, "invariance.enabled=false", "checkpoint.keep=true",
                     f"hydra.run.dir={job}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = load_metrics(job)
    assert metrics["status"] == "complete" and metrics["test_acc"] > 0.5  # 1,350 images, one epoch: well above 10 %
    import torch

    state = torch.load(job / "checkpoint.pt", weights_only=False)["model"]
    conv = next(v for k, v in state.items() if k.endswith("weight") and v.dim() == 4 and v.shape[1] > 1)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()


@pytest.mark.slow
def test_cifar10_path_on_test_made_jpeg_archive(run_train, tmp_path):
    folder = make_image_folder(tmp_path / "src" / "cifar10-jpeg",
                               classes=tuple(f"c{i}" for i in range(10)), per_class=(10, 3), ext="jpg")
    data = tmp_path / "data"
    data.mkdir()
    make_tar_gz(folder, data / "cifar10-jpeg.tar.gz")
    run_dir = tmp_path / "run"
    proc = run_train("dataset=cifar10", "model=strided", "trainer.epochs=1", "trainer.batch_size=16",
                     "dataset.mean=null", "dataset.std=null", f"hydra.run.dir={run_dir}", data_dir=data)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = load_metrics(run_dir)
    assert m["dataset"]["source"] == f"CIFAR-10 (JPEG q75 copy) from {data / 'cifar10-jpeg.tar.gz'}"
    assert m["dataset"]["image_shape"] == [3, 32, 32] and m["params"] == 52_174 + 2 * 6 * 25
    assert (m["dataset"]["train"], m["dataset"]["val"], m["dataset"]["test"]) == (90, 10, 30)


def test_missing_data_exits_with_one_clear_message(run_train, tmp_path):
    proc = run_train("trainer.epochs=1", "dataset.download=false", f"hydra.run.dir={tmp_path / 'run'}",
                     data_dir=tmp_path / "empty")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "MNIST not found" in proc.stderr and str(tmp_path / "empty" / "MNIST" / "raw") in proc.stderr
    assert not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.parametrize("args,needle", [
    (["model=maxpooll"], "Could not find 'model/maxpooll'"),
    (["trainer.epochs=abc"], "trainer.epochs = 'abc' is not valid"),
    (["model.downsample.stride=0"], "model.downsample.stride = 0 is not valid"),
    (["model.downsample.kernel_size=9", "model.downsample.stride=9"], "layer 'conv2.3' (FastCPUMaxPool2d: kernel_size=9"),
])
def test_bad_input_is_one_message_without_traceback(run_train, tmp_path, args, needle):
    require_real("MNIST")
    proc = run_train(*args, "dataset.train_subset=200", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode != 0
    assert needle in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_help_lists_every_group(run_train):
    proc = run_train("--help")
    assert proc.returncode == 0
    for group in ("arch", "model", "dataset", "optimizer", "scheduler", "trainer"):
        assert f"\n{group}: " in proc.stdout
    # Hydra's own groups too, the launchers a multirun runs on among them
    launchers = next(line for line in proc.stdout.splitlines() if line.startswith("hydra/launcher: "))
    assert {"basic", "local_parallel", "slurm", "submitit_local"} <= set(launchers.split(": ")[1].split(", "))
    proc = run_train("--cfg", "job")
    for key in ("downsample:", "kernel_size:", "val_fraction:", "bn_recalibration:", "data_dir:"):
        assert key in proc.stdout


def test_the_batch_size_a_batchnorm_refusal_suggests_trains(run_train, tmp_path):
    """VGG with stride-2 convolutions leaves its last BatchNorm a 1x1 map on 32x32 images: batch size 1 is
    refused before training (tests/e2e/test_bad_input.py), and the batch size the message suggests trains."""
    from helpers.datafiles import make_gray_folder

    root = make_gray_folder(tmp_path / "imgs", size=32)
    args = ["dataset=imagefolder", f"dataset.root={root}", "arch=vgg", "model=strided", "model.width=0.125",
            "trainer.epochs=1", "trainer.progress=false", "invariance.enabled=false"]
    refused = run_train(*args, "trainer.batch_size=1", f"hydra.run.dir={tmp_path / 'one'}")
    assert refused.returncode == 2 and "Use trainer.batch_size=2 or more" in refused.stderr, refused.stderr[-2000:]
    proc = run_train(*args, "trainer.batch_size=2", f"hydra.run.dir={tmp_path / 'two'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "two" / "metrics.json").read_text())["status"] == "complete"
