"""Schedules are picked by their config's _target_ (as optimizers are); snapshots that name them only still work."""

import pytest
import torch
from omegaconf import OmegaConf

from helpers import compose
from poolstudy.errors import PoolStudyError
from poolstudy.jobs.identity import differences, run_identity
from poolstudy.training.schedule import SCHEDULES, build_scheduler


def _optimizer():
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)


def _lrs(scheduler, optimizer, steps=10):
    lrs = []
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    return lrs


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_a_snapshot_that_names_the_schedule_only_gets_the_same_schedule(name):
    cfg = compose([f"scheduler={name}"]).scheduler
    assert cfg._target_ == SCHEDULES[name] and cfg.name == name
    legacy = {k: v for k, v in OmegaConf.to_container(cfg).items() if not k.startswith("_")}  # before _target_
    new_opt, old_opt = _optimizer(), _optimizer()
    new, old = build_scheduler(cfg, new_opt, 2, 5), build_scheduler(legacy, old_opt, 2, 5)
    assert type(new) is type(old)
    if new is not None:
        assert _lrs(new, new_opt) == _lrs(old, old_opt)


def test_a_name_that_is_not_its_targets_is_refused():
    cfg = compose(["scheduler=onecycle", "scheduler.name=cosine"]).scheduler
    with pytest.raises(PoolStudyError, match=r"scheduler.name = 'cosine' is not the name of scheduler._target_ = "
                                             r"'poolstudy.training.schedule.one_cycle' \('onecycle'\).*scheduler="):
        build_scheduler(cfg, _optimizer(), 1, 5)
    with pytest.raises(PoolStudyError, match=r"scheduler.name = 'linear' is not known; valid names are: none, "
                                             r"onecycle, cosine, step."):
        build_scheduler({"name": "linear"}, _optimizer(), 1, 5)
    with pytest.raises(PoolStudyError, match=r"scheduler 'step' .* cannot be built from its settings"):
        build_scheduler({"_target_": SCHEDULES["step"], "name": "step", "gamma": 0.1}, _optimizer(), 1, 5)


def test_a_folder_of_a_snapshot_before_target_has_the_same_identity():
    """A job folder (or checkpoint) written before schedules had a _target_ is resumed and reused, not refused."""
    new = run_identity(compose([]))
    old = {k: v for k, v in new.items() if not k.startswith(("scheduler._target_", "scheduler._partial_"))}
    assert "scheduler._target_" in new and differences(old, new) == []
    other = {**old, "scheduler.name": "cosine", "scheduler.min_lr": 0.0}
    other.pop("scheduler.pct_start")
    assert [d[0] for d in differences(other, new)] == ["scheduler._target_", "scheduler.min_lr", "scheduler.name",
                                                       "scheduler.pct_start"]


def test_a_folder_of_a_snapshot_before_the_dataset_target_has_the_same_identity():
    new = run_identity(compose(["dataset=cifar10"]))
    old = {k: v for k, v in new.items() if k != "dataset._target_"}
    assert new["dataset._target_"] == "poolstudy.data.cifar10.locate" and differences(old, new) == []
