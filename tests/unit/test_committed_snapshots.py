"""Every committed record still works with this code: each job snapshot under docs/studies composes, its model
builds with the parameter count (and, where recorded, the downsampling points) its metrics.json recorded, and
each multirun.yaml's Hydra callbacks import.

Committed snapshots name ``poolstudy.models.create_model`` and ``poolstudy.hydra_callbacks.<Callback>``;
moving either breaks ``python -m poolstudy.reproduce`` and every re-run of a record. Hydra composes one
snapshot of each distinct model configuration (its ``.hydra`` folder as the config directory, as
``python train.py --config-path <job>/.hydra --config-name config`` does); every snapshot is loaded,
resolved and its model built.
"""

import json

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.utils import get_class
from omegaconf import OmegaConf

from helpers import ROOT
from poolstudy.jobfolder import CONFIG_SNAPSHOT, METRICS_FILE, MULTIRUN_YAML
from poolstudy.jobs.run import build_model
from poolstudy.models.profile import trace_shapes
from poolstudy.models.surgery import point_records

RECORDS = [ROOT / "docs" / "studies", ROOT / "docs" / "bn_shift"]
SNAPSHOTS = sorted(p for root in RECORDS for p in root.rglob(CONFIG_SNAPSHOT))
MULTIRUNS = sorted(p for root in RECORDS for p in root.rglob(MULTIRUN_YAML))
# The recorded image shape of each dataset (metrics.json's dataset.image_shape, num_classes).
SHAPES = {"mnist": (1, 10), "fashion_mnist": (1, 10), "cifar10": (3, 10), "shapes": (1, 4)}


def _model_group(snapshot) -> str:
    """Snapshots whose models differ only in dropout rates build the same layers: one Hydra composition each."""
    cfg = yaml.safe_load(snapshot.read_text())
    model = {k: v for k, v in cfg["model"].items() if k not in ("dropout", "input_dropout")}
    return json.dumps(model, sort_keys=True) + cfg["dataset"]["name"]


def _representatives() -> list:
    groups: dict[str, object] = {}
    for snapshot in SNAPSHOTS:
        groups.setdefault(_model_group(snapshot), snapshot)
    return list(groups.values())


def test_the_records_are_there():
    assert len(SNAPSHOTS) >= 286 and len(MULTIRUNS) >= 5


def test_every_snapshot_resolves_and_builds_the_recorded_model():
    checked = 0
    for snapshot in SNAPSHOTS:
        cfg = OmegaConf.load(snapshot)
        OmegaConf.resolve(cfg)
        assert cfg.model._target_ == "poolstudy.models.create_model", snapshot
        channels, classes = SHAPES[cfg.dataset.name]
        model = build_model(cfg, channels, classes)
        metrics_path = snapshot.parent.parent / METRICS_FILE
        if metrics_path.is_file():  # invalid jobs have a status.json only
            recorded = json.loads(metrics_path.read_text())
            assert sum(p.numel() for p in model.parameters()) == recorded["params"], snapshot
            if "downsampling_points" in recorded:  # since arch=resnet/vgg/torchvision: each point as it was built
                shape = tuple(recorded["dataset"]["image_shape"])
                assert point_records(model, trace_shapes(model, shape)) == recorded["downsampling_points"], snapshot
            checked += 1
    assert checked >= 200


@pytest.mark.parametrize("snapshot", _representatives(), ids=lambda p: str(p.parent.parent.relative_to(ROOT)))
def test_hydra_composes_the_snapshot_as_a_rerun_does(snapshot):
    with initialize_config_dir(config_dir=str(snapshot.parent), version_base="1.3"):
        cfg = compose(config_name="config")
    channels, classes = SHAPES[cfg.dataset.name]
    assert build_model(cfg, channels, classes) is not None
    assert get_class(cfg.optimizer._target_) is not None


@pytest.mark.parametrize("multirun", MULTIRUNS, ids=lambda p: str(p.parent.relative_to(ROOT)))
def test_the_multirun_callbacks_still_import(multirun):
    callbacks = yaml.safe_load(multirun.read_text())["hydra"]["callbacks"]
    targets = [c["_target_"] for c in callbacks.values()]
    assert targets and all(get_class(target) for target in targets)
