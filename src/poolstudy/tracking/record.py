"""What a tracker records of a job, computed the same way live (during the job) and from a finished
job folder (``python -m poolstudy.collect --to-mlflow``), so both give the same run.

- params: the flattened configuration, without the ``logger.*`` keys (how the job was tracked) and
  with any password in a URL masked;
- tags: study or cell, HPO role and trial, architecture, operator, dataset, seed, git commit, folder;
- per-epoch metrics: the ``history`` records of ``metrics.json`` (step = epoch);
- final metrics: test and validation accuracy and loss with and without BatchNorm re-estimation,
  the invariance probes, parameters, MACs and times, under ``final/`` (``acc_vs_shift`` as a series
  whose step is the shift in pixels).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any

from poolstudy.jobfolder import LOGGER_KEY

EPOCH_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time_s")
FINAL_KEYS = ("val_acc", "val_loss", "test_acc", "test_loss", "val_acc_raw", "val_loss_raw", "test_acc_raw",
              "test_loss_raw", "shift_consistency", "prediction_distance_1px", "params", "macs", "train_time_s",
              "job_time_s", "images_per_s", "epochs")
FINAL_PREFIX = "final/"
SHIFT_SERIES = "final/acc_vs_shift"  # step = shift in pixels
TIME_PREFIX = "final/time_s/"  # time_breakdown_s per phase
NOT_PARAMS = (LOGGER_KEY,)  # how the job is tracked is no parameter of the experiment
MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value
TAG = "poolstudy."
RECORD_TAG = TAG + "record_sha256"  # the metrics.json a run was made from: back-filling skips it
FOLDER_TAG = TAG + "job_dir"
STUDY_TAG = TAG + "study"
ROLE_TAG = TAG + "role"
STATUS_TAG = TAG + "status"
GIT_TAG = "mlflow.source.git.commit"  # MLflow's own tag, shown in its UI
PARENT_ROLE = "study"  # the role tag of an HPO study's parent run
_URL_PASSWORD = re.compile(r"^([A-Za-z][\w+.-]*://[^:/@]*:)([^@]*)(@.*)$")


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys; lists kept as values."""
    if isinstance(tree, dict) and tree:
        flat: dict[str, Any] = {}
        for key, value in tree.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: tree} if prefix else {}


def mask_url_password(text: str) -> str:
    """``scheme://user:secret@host/...`` -> ``scheme://user:***@host/...``; other text unchanged."""
    match = _URL_PASSWORD.match(text)
    if not match or not match.group(2):
        return text
    return f"{match.group(1)}***{match.group(3)}"


def _text(value: Any) -> str:
    """A config value as text, spelled as in the YAML snapshot (null, true, [1, 2] as JSON)."""
    if isinstance(value, (list, dict, bool)) or value is None:
        return json.dumps(value, sort_keys=True)
    return str(value)


def params(config: dict[str, Any]) -> dict[str, str]:
    """The params of a run: ``config`` (flattened) without ``logger.*``, as text, passwords masked."""
    out = {}
    for key, value in sorted(config.items()):
        if key.split(".", 1)[0] in NOT_PARAMS or key.startswith("hydra."):
            continue
        text = mask_url_password(_text(value))
        out[key] = text if len(text) <= MAX_PARAM_LENGTH else text[: MAX_PARAM_LENGTH - 1] + "…"
    return out


def study_or_cell(config: dict[str, Any]) -> str:
    """The HPO study a job belongs to, else its cell named as the sweeper names studies:
    ``<arch>-<downsample type>-<dataset>``."""
    study = config.get("hpo.study_name")
    if study:
        return str(study)
    return "-".join(str(config.get(k)) for k in ("model.arch", "model.downsample.type", "dataset.name"))


def job_tags(config: dict[str, Any], folder: Path, git_commit: str | None = None) -> dict[str, str]:
    """The tags of a job's run (MLflow): labels to group and filter by."""
    role = config.get("hpo.role") or "none"
    tags = {
        STUDY_TAG: study_or_cell(config), ROLE_TAG: str(role),
        TAG + "arch": _text(config.get("model.arch")), TAG + "operator": _text(config.get("model.downsample.type")),
        TAG + "dataset": _text(config.get("dataset.name")), TAG + "seed": _text(config.get("seed")),
        FOLDER_TAG: str(folder),
    }
    if config.get("hpo.trial") is not None:
        tags[TAG + "trial"] = _text(config.get("hpo.trial"))
    if git_commit:
        tags[GIT_TAG] = git_commit
    return tags


def run_name(config: dict[str, Any]) -> str:
    """``trial 3`` / ``final seed 1`` inside an HPO study's parent run, else ``<cell> seed <s>``."""
    role = config.get("hpo.role")
    if role == "trial":
        return f"trial {config.get('hpo.trial')}"
    if role == "final":
        return f"final seed {config.get('seed')}"
    return f"{study_or_cell(config)} seed {config.get('seed')}"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def epoch_metrics(record: dict[str, Any]) -> dict[str, float]:
    """The scalars of one epoch's history record (step: ``record['epoch']``)."""
    return {key: v for key in EPOCH_KEYS if (v := _number(record.get(key))) is not None}


def final_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The final scalars of a metrics.json (single values, no step)."""
    out = {FINAL_PREFIX + key: v for key in FINAL_KEYS if (v := _number(metrics.get(key))) is not None}
    for phase, seconds in sorted((metrics.get("time_breakdown_s") or {}).items()):
        if (v := _number(seconds)) is not None:
            out[TIME_PREFIX + phase] = v
    return out


def shift_series(metrics: dict[str, Any]) -> list[tuple[int, float]]:
    """``acc_vs_shift`` as (shift in pixels, accuracy), by shift."""
    points = []
    for shift, acc in (metrics.get("acc_vs_shift") or {}).items():
        try:
            step = int(float(shift))
        except ValueError:
            continue
        if (v := _number(acc)) is not None:
            points.append((step, v))
    return sorted(points)


def history(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in metrics.get("history") or [] if isinstance(r, dict) and isinstance(r.get("epoch"), int)]


def git_commit(metrics: dict[str, Any]) -> str | None:
    env = metrics.get("environment")
    return env.get("git_commit") if isinstance(env, dict) else None


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
