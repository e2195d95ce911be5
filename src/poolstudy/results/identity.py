"""When two job folders ran the same experiment: the settings that decide a job's result.

A job's settings are its config snapshot without the keys that do not change what it computes,
plus what its ``metrics.json`` recorded about the data it read and the code it ran: the config
alone cannot tell the official CIFAR-10 batches from the JPEG copy (both are ``dataset=cifar10``,
found through ``data_dir``), nor one code version from another.
"""

from __future__ import annotations

import re
from typing import Any

from poolstudy.jobfolder import NOT_RESULT_KEYS, under
from poolstudy.results.records import MISSING, Job

# What metrics.json recorded about the data, under the names the flags show.
DATA_SOURCE = "recorded data source"
SPLIT_SIZES = "recorded split sizes"
IMAGE_SHAPE = "recorded image shape"
CLASSES = "recorded classes"
CLASS_NAMES = "recorded class names"
CODE_VERSION = "code version"
RECORDED_DATA_KEYS = (DATA_SOURCE, SPLIT_SIZES, IMAGE_SHAPE, CLASSES, CLASS_NAMES)
RECORDED_KEYS = (*RECORDED_DATA_KEYS, CODE_VERSION)


def result_key(key: str) -> bool:
    """False for a config key that cannot change a job's result."""
    return not under(key, NOT_RESULT_KEYS)


def data_source(text: str) -> str:
    """A recorded data source without the location of its files: the same MNIST IDX files read from
    two folders are the same data, as is the CIFAR-10 JPEG copy read from its archive or from the
    extracted folder, while 'CIFAR-10' (the official batches) and 'CIFAR-10 (JPEG q75 copy)' are not.
    Older records name no location at all ('CIFAR-10 (JPEG q75 copy)'); they compare equal too."""
    text = re.sub(r"^image folder [^;]*", "image folder", text)
    return re.sub(r" (?:in|from) [^;]+", "", text).strip()


def recorded_data(job: Job) -> dict[str, Any]:
    """What metrics.json says about the data the job trained and was tested on; empty without it."""
    record = (job.metrics or {}).get("dataset")
    if not isinstance(record, dict):
        return {}
    facts: dict[str, Any] = {}
    if isinstance(record.get("source"), str):
        facts[DATA_SOURCE] = data_source(record["source"])
    sizes = [(split, record.get(split)) for split in ("train", "val", "test")]
    if all(isinstance(n, int) for _, n in sizes):
        facts[SPLIT_SIZES] = ", ".join(f"{split} {n}" for split, n in sizes)
    if isinstance(record.get("image_shape"), list):
        facts[IMAGE_SHAPE] = "x".join(str(d) for d in record["image_shape"])
    # The count and the names are separate facts: older records give only the count, and a fact is
    # compared only between jobs that recorded it, so the same 10 classes are not flagged as different
    # data because one record lists their names.
    classes = record.get("classes")
    if isinstance(classes, list):
        facts[CLASSES] = f"{len(classes)} classes"
        facts[CLASS_NAMES] = ", ".join(str(c) for c in classes)
    elif isinstance(record.get("num_classes"), int):
        facts[CLASSES] = f"{record['num_classes']} classes"
    return facts


def code_version(job: Job) -> str | None:
    commit = job.git_commit
    if not commit:
        return None
    return f"{commit[:10]}{' (dirty)' if job.git_dirty else ''}"


def settings(job: Job) -> dict[str, Any]:
    """Everything that decides the job's result, as {name: value}: result keys of the snapshot, the
    recorded data and the code version (the last two only where metrics.json has them)."""
    values = {key: value for key, value in job.config.items() if result_key(key)}
    values.update(recorded_data(job))
    version = code_version(job)
    if version is not None:
        values[CODE_VERSION] = version
    return values


def differences(a: Job, b: Job, skip: tuple[str, ...] = ("seed",)) -> list[str]:
    """The settings in which two jobs differ. Recorded facts count only where both jobs have them (a
    failed job has no metrics.json); a job placed by its metrics.json (broken snapshot) is compared on
    the keys metrics.json mirrors."""
    sa, sb = settings(a), settings(b)
    keys = sorted(set(sa) | set(sb))
    if not a.config or not b.config:  # a broken snapshot: compare what both jobs can show
        keys = [key for key in keys if key in RECORDED_KEYS or (a.config_value(key) is not MISSING
                                                                 and b.config_value(key) is not MISSING)]
        sa = {**{key: a.config_value(key) for key in keys if key not in RECORDED_KEYS}, **sa}
        sb = {**{key: b.config_value(key) for key in keys if key not in RECORDED_KEYS}, **sb}
    diffs = []
    for key in keys:
        if key in skip:
            continue
        va, vb = sa.get(key, MISSING), sb.get(key, MISSING)
        if key in RECORDED_KEYS and (va is MISSING or vb is MISSING):
            continue
        if va != vb:
            diffs.append(key)
    return diffs

