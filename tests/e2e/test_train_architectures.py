"""One short training per surgery architecture (arch=resnet, vgg, torchvision) on the synthetic shapes:
the job completes and its metrics.json and log list every downsampling point."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from helpers import compose
from poolstudy.jobfolder import METRICS_FILE
from poolstudy.jobs.run import train_and_evaluate
from poolstudy.models import create_model
from poolstudy.models.profile import count_params


@pytest.mark.slow
@pytest.mark.parametrize("arch_args", [
    ["arch=resnet", "model=blurpool"],
    ["arch=vgg", "model=strided", "model.width=0.125"],
    ["arch=torchvision", "model.name=squeezenet1_1", "model=avgpool"],
])
def test_short_training_records_the_downsampling_points(arch_args, tmp_path, caplog):
    cfg = compose([*arch_args, "dataset=shapes", "dataset.train_subset=100", "dataset.test_subset=50",
                   "trainer.epochs=1", "trainer.batch_size=50", "trainer.bn_recalibration=false",
                   "invariance.enabled=false", "trainer.progress=false"], cache=tmp_path / "cache")
    with caplog.at_level("INFO", logger="poolstudy.jobs.run"):
        metrics = train_and_evaluate(cfg, tmp_path)
    assert metrics["status"] == "complete" and 0 <= metrics["test_acc"] <= 1
    assert json.loads((tmp_path / METRICS_FILE).read_text())["downsampling_points"] == metrics["downsampling_points"]
    points = [p for p in metrics["downsampling_points"] if p["kind"] != "stem"]
    assert points and all(set(p) == {"name", "kind", "was", "became", "output"} for p in points)
    assert all(p["output"] and p["was"] and p["became"] for p in points)
    assert metrics["params"] == count_params(create_model(**{k: v for k, v in OmegaConf.to_container(
        cfg.model, resolve=True).items() if k != "_target_"}))
    assert "downsampling points:" in caplog.text and points[-1]["became"] in caplog.text
