"""A job's identity: the resolved configuration entries that determine its result.

Two runs with the same identity compute the same thing, so one may resume or reuse the other's
checkpoint and metrics. Entries in RESUME_IGNORES (``poolstudy.jobfolder``, with the reason) may differ
between them.
"""

from __future__ import annotations

import json
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from poolstudy.data.catalogue import SOURCES
from poolstudy.jobfolder import RESUME_IGNORES, under
from poolstudy.training.schedule import SCHEDULES

ABSENT = object()  # a key one of two configurations does not have


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: node}


def ignored(key: str) -> bool:
    """True for a key a resumed or reused job may change (RESUME_IGNORES)."""
    return under(key, RESUME_IGNORES)


def _resolve(cfg: DictConfig, key: str, raw: Any) -> dict[str, Any]:
    """``key``'s resolved value (flattened when it is a node); its text when it cannot be resolved."""
    if "${" not in json.dumps(raw, default=str):
        return {key: raw}
    try:
        value = OmegaConf.select(cfg, key, throw_on_missing=True)
    except Exception:  # an unset ${oc.env:...} and the like: compare the text as written
        return {key: raw}
    if isinstance(value, (DictConfig, ListConfig)):
        return _flatten(OmegaConf.to_container(value, resolve=True), f"{key}.") if isinstance(value, DictConfig) \
            else {key: OmegaConf.to_container(value, resolve=True)}
    return {key: value}


def run_identity(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config entries that determine the training result, flattened to dotted keys.

    Entries that cannot be resolved (e.g. an unset environment variable) keep their text, so that
    a snapshot can always be compared.
    """
    identity: dict[str, Any] = {}
    for key, raw in _flatten(OmegaConf.to_container(cfg, resolve=False)).items():
        if not ignored(key):
            identity.update({k: v for k, v in _resolve(cfg, key, raw).items() if not ignored(k)})
    return identity


# Config nodes that gained a ``_target_`` picked by their ``name`` (the name alone picks it in older snapshots):
# node -> (name -> target, the other keys the node gained)
NAMED_TARGETS = {"scheduler": (SCHEDULES, {"_partial_": True}), "dataset": (SOURCES, {})}


def upgraded(identity: dict[str, Any]) -> dict[str, Any]:
    """An identity as this version's config states the same computation: a snapshot or checkpoint written
    before schedules and datasets had a ``_target_`` gets the one its ``name`` picks."""
    for node, (targets, extra) in NAMED_TARGETS.items():
        name = identity.get(f"{node}.name")
        if f"{node}._target_" not in identity and isinstance(name, str) and name in targets:
            identity = {**identity, f"{node}._target_": targets[name], **{f"{node}.{k}": v for k, v in extra.items()}}
    return identity


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, old value, new value) for every key whose value differs; ABSENT for a missing key. Both
    identities are compared as this version states them (``upgraded``)."""
    old, new = upgraded(old), upgraded(new)
    return [(k, old.get(k, ABSENT), new.get(k, ABSENT)) for k in sorted(old.keys() | new.keys())
            if old.get(k, ABSENT) != new.get(k, ABSENT)]


def _show(value: Any) -> str:
    return "(absent)" if value is ABSENT else repr(value)


def describe(diffs: list[tuple[str, Any, Any]], limit: int = 6) -> str:
    """``key: old -> new`` for the first ``limit`` differences, then how many more."""
    shown = [f"{k}: {_show(a)} -> {_show(b)}" for k, a, b in diffs[:limit]]
    if len(diffs) > limit:
        shown.append(f"and {len(diffs) - limit} more")
    return ", ".join(shown)
