"""A job folder belongs to the configuration that first ran in it.

Its ``.hydra/config.yaml`` snapshot, ``checkpoint.pt``, ``metrics.json`` and ``status.json`` were
made with that configuration. A later run in the same folder may resume the checkpoint or reuse
the finished metrics only when its identity (``poolstudy.jobs.identity``) equals the snapshot's;
any other run is refused before it writes anything, with the keys that differ and another folder
to use. Only a folder without results (no metrics, checkpoint or status other than ``invalid``)
may be taken over by another configuration.

Hydra itself saves the snapshot before the task function runs, which would overwrite the first
run's record; ``conf/config.yaml`` therefore sets ``hydra.output_subdir: null`` and
``write_snapshot`` saves the same three files (``config.yaml``, ``hydra.yaml``,
``overrides.yaml``) after the check, in every process that runs a job (any launcher or sweeper).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from poolstudy.errors import PoolStudyError
from poolstudy.jobfolder import (CHECKPOINT_FILE, CONFIG_SNAPSHOT, METRICS_FILE, SNAPSHOT_DIR, STATUS_FILE,
                                 finished_metrics, read_json, read_status)
from poolstudy.jobs.identity import describe, differences, run_identity
from poolstudy.utils.io import atomic_write_text

log = logging.getLogger(__name__)

NO_RESULT_STATES = ("invalid",)  # a status.json that records nothing computed


class JobFolderError(PoolStudyError):
    """This run may not use the job folder (it holds another configuration's results, or is inconsistent).

    Nothing was written; the message names the folder, the differing keys and another folder to use.
    """


def another_folder() -> str:
    """The override that puts this run in a folder of its own: ``hydra.run.dir=...`` or ``hydra.sweep.dir=...``."""
    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    base = Path(hydra_cfg.sweep.dir if multirun else hydra_cfg.runtime.output_dir).absolute()
    n = 2
    while Path(f"{base}-{n}").exists():
        n += 1
    return f"{key}={base}-{n}"


def _status(folder: Path) -> str | None:
    record = read_status(folder)
    return record.get("status") if record is not None else None


def results_in(folder: Path) -> list[str]:
    """The files in ``folder`` that record something computed by the configuration of its snapshot."""
    found = [name for name in (METRICS_FILE, CHECKPOINT_FILE) if (folder / name).is_file()]
    if (folder / STATUS_FILE).is_file() and _status(folder) not in NO_RESULT_STATES:
        found.append(STATUS_FILE)
    return found


def snapshot_identity(folder: Path) -> dict[str, Any]:
    """Identity of the configuration in ``folder``'s snapshot; raises OSError/ValueError when unreadable."""
    snapshot = OmegaConf.load(folder / CONFIG_SNAPSHOT)
    if not isinstance(snapshot, DictConfig):
        raise ValueError("not a YAML mapping")
    return run_identity(snapshot)


# metrics.json entries that restate config values: checked against the config before reuse, so that a
# folder whose snapshot was overwritten (by a poolstudy version before this check) is not reused.
_RESTATED = {
    "seed": "seed", "epochs": "trainer.epochs", "model.arch": "model.arch", "model.downsample": "model.downsample",
    "dataset.name": "dataset.name", "optimizer.lr": "optimizer.lr", "optimizer.weight_decay": "optimizer.weight_decay",
    "optimizer.batch_size": "trainer.batch_size", "optimizer.scheduler": "scheduler.name",
}


def _restated_differences(metrics: dict, cfg: DictConfig) -> list[tuple[str, Any, Any]]:
    diffs = []
    for metrics_key, cfg_key in _RESTATED.items():
        recorded: Any = metrics
        for part in metrics_key.split("."):
            recorded = recorded.get(part, None) if isinstance(recorded, dict) else None
        try:
            value = OmegaConf.select(cfg, cfg_key, default=None)
        except Exception:
            continue
        if isinstance(value, DictConfig):
            value = OmegaConf.to_container(value, resolve=True)
        if recorded is not None and value is not None and recorded != value:
            diffs.append((cfg_key, recorded, value))
    return diffs


def _set_aside(path: Path, why: str) -> Path:
    """Rename an unusable file so that nothing is lost when the job writes a new one."""
    n, target = 1, path.with_name(f"{path.name}.unusable")
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.unusable-{n}")
    path.rename(target)
    log.warning("%s %s, so the job is not finished; it was moved to %s and the job runs again.", path, why,
                target.name)
    return target


def _unusable_metrics(path: Path) -> str | None:
    metrics, why = read_json(path)
    if why:
        return why
    if not isinstance(metrics, dict):
        return f"holds {json.dumps(metrics)[:40]}, not a metrics record (a JSON object)"
    if metrics.get("status") != "complete":
        return f"has status {metrics.get('status')!r}, not 'complete'"
    return None


def _checkpoint_identity(folder: Path) -> dict[str, Any] | None:
    """The identity recorded in the folder's checkpoint (None when unreadable: it is not resumed then)."""
    try:
        import torch

        return torch.load(folder / CHECKPOINT_FILE, map_location="cpu", weights_only=True)["identity"]
    except Exception:
        return None


def _refuse(folder: Path, what: str, todo: str) -> JobFolderError:
    return JobFolderError(f"{folder} {what}. Nothing was written there. {todo}")


def prepare(folder: Path, cfg: DictConfig) -> dict | None:
    """Make sure ``folder`` may hold this job; save the snapshot; return finished metrics to reuse, else None.

    Call with the folder's lock held. Raises JobFolderError, before writing anything, when the
    folder holds another configuration's results or its files disagree with each other.
    An unusable ``metrics.json`` (null, a list, truncated) is renamed to ``metrics.json.unusable``
    with a warning; a ``status.json`` of an earlier attempt of this configuration is logged and removed.
    """
    folder = Path(folder)
    new = run_identity(cfg)
    results = results_in(folder)
    move = f"Run this configuration in another folder: {another_folder()}"
    snapshot_ok = False
    if (folder / CONFIG_SNAPSHOT).is_file():
        try:
            old = snapshot_identity(folder)
        except Exception as exc:
            if results:
                raise _refuse(folder, f"holds {', '.join(results)} but its {CONFIG_SNAPSHOT} cannot be read "
                              f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}), so nobody can "
                              "tell which configuration made them", move) from None
            old = None
        diffs = differences(old, new) if old is not None else []
        if diffs and results:
            raise _refuse(folder, f"already holds {', '.join(results)} of another configuration; this run "
                          f"differs in {describe(diffs)}", move + " (a job folder belongs to the configuration "
                          "that first ran in it; only an identical configuration resumes or reuses its results)")
        snapshot_ok = old is not None and not diffs
        if not snapshot_ok:
            log.warning("%s held the snapshot of another configuration that left no result (%s); it is replaced.",
                        folder, describe(diffs) if diffs else "unreadable snapshot")
    elif METRICS_FILE in results:
        raise _refuse(folder, f"holds a {METRICS_FILE} but no {CONFIG_SNAPSHOT}, so nobody can tell which "
                      "configuration made it", move)
    elif CHECKPOINT_FILE in results:  # no snapshot: the checkpoint records its own configuration
        diffs = differences(_checkpoint_identity(folder) or new, new)
        if diffs:
            raise _refuse(folder, f"holds a {CHECKPOINT_FILE} of another configuration; this run differs in "
                          f"{describe(diffs)}", move)

    done = finished_metrics(folder)
    if done is not None:
        restated = _restated_differences(done, cfg)
        if restated:
            raise _refuse(folder, f"holds a {METRICS_FILE} that disagrees with its {CONFIG_SNAPSHOT} "
                          f"(metrics.json -> snapshot: {describe(restated)}): the snapshot was overwritten by a "
                          "later run", "Move the folder aside (its metrics belong to another configuration) and "
                          "run this configuration again")
        if not snapshot_ok:
            write_snapshot(folder, cfg)
        return done
    if (folder / METRICS_FILE).is_file():
        _set_aside(folder / METRICS_FILE, _unusable_metrics(folder / METRICS_FILE) or "is not finished")
    if (folder / STATUS_FILE).is_file():
        previous, _ = read_json(folder / STATUS_FILE)
        log.info("An earlier attempt of this job ended %s; trying again.",
                 json.dumps(previous) if previous is not None else "with an unreadable status.json")
        (folder / STATUS_FILE).unlink()
    if not snapshot_ok:
        write_snapshot(folder, cfg)
    return None


def write_snapshot(folder: Path, cfg: DictConfig) -> None:
    """Save ``.hydra/config.yaml``, ``hydra.yaml`` and ``overrides.yaml`` as Hydra does (unresolved)."""
    hydra_root = HydraConfig.instance().cfg  # {"hydra": ...}, what Hydra saves as hydra.yaml
    target = Path(folder) / SNAPSHOT_DIR
    atomic_write_text(target / "config.yaml", OmegaConf.to_yaml(cfg))
    atomic_write_text(target / "hydra.yaml", OmegaConf.to_yaml(hydra_root))
    atomic_write_text(target / "overrides.yaml", OmegaConf.to_yaml(hydra_root.hydra.overrides.task))
