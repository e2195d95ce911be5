"""Database URLs as the Optuna storage (poolstudy.hpo.storage) and the MLflow tracking store
(poolstudy.tracking.mlflow_store) take them: one password rule and one driver choice for both."""

from __future__ import annotations

import importlib.util
import re

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from poolstudy.errors import PoolStudyError


def mask_password(url: str) -> str:
    """The URL with any password replaced by ***, safe for logs and snapshots (text that is no URL unchanged)."""
    if not url:
        return url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def password(url: str) -> str | None:
    """The URL's password (None without one, or for text that is no URL)."""
    try:
        return make_url(url).password
    except ArgumentError:
        return None


def refuse_written_password(raw_url: str, key: str) -> None:
    """Refuse a password typed into the URL itself: Hydra saves the value as written in every
    .hydra snapshot. A password drawn from an interpolation (${oc.env:VAR}) stays out of them.

    Raises PoolStudyError naming ``key`` and the ways to give the password instead."""
    match = re.match(r"^[A-Za-z][\w+.-]*://[^:/@]*:(.*)@[^@]*$", raw_url or "")
    if match and match.group(1) and "${" not in match.group(1):
        raise PoolStudyError(
            f"{key} = {mask_password(raw_url)!r} contains a password, which Hydra would save in every job's "
            f".hydra snapshot and log line. Leave it out of the URL: libpq reads it from PGPASSWORD or "
            f"~/.pgpass (postgresql://user@host/db), or write it as an interpolation, which snapshots keep "
            f"unresolved: {key}='postgresql://user:${{oc.env:POOLSTUDY_DB_PASSWORD}}@host/db'."
        )


def with_installed_driver(url: str) -> str:
    """SQLAlchemy >= 2.1 reads postgresql:// as psycopg 3; use psycopg2 (the project's driver,
    psycopg2-binary) when only that one is installed. Other URLs unchanged."""
    parsed = make_url(url)
    if (parsed.drivername == "postgresql" and importlib.util.find_spec("psycopg") is None
            and importlib.util.find_spec("psycopg2") is not None):
        return parsed.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
    return url
