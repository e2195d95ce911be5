"""Optuna storages: an embedded default (SQLite file or journal file) or a database URL."""

from __future__ import annotations

from pathlib import Path

import optuna
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from poolstudy.errors import PoolStudyError

JOURNAL_SUFFIXES = (".log", ".jsonl", ".journal")


def mask_password(url: str) -> str:
    """The storage URL with any password replaced by ***, safe for logs and snapshots."""
    if not url or _is_journal(url):
        return url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _is_journal(url: str) -> bool:
    return url.startswith("journal:") or url.endswith(JOURNAL_SUFFIXES)


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """Open (and create where needed) the storage behind ``url``.

    ``sqlite:///path.db``, ``postgresql://user:pw@host/db`` and other SQLAlchemy URLs use
    Optuna's RDB storage; ``journal:path`` or a path ending in .log/.jsonl uses Optuna's
    journal file storage (safe for several processes on one file system, no server).
    """
    if not url:
        raise PoolStudyError("hydra.sweeper.storage is empty; give a URL such as sqlite:///outputs/hpo/optuna.db.")
    try:
        if _is_journal(url):
            path = Path(url.removeprefix("journal:")).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            from optuna.storages.journal import JournalFileBackend

            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        parsed = make_url(url)
        engine_kwargs = {}
        if parsed.get_backend_name() == "sqlite":
            if parsed.database:
                Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine_kwargs = {"connect_args": {"timeout": 60}}
        else:
            engine_kwargs = {"pool_pre_ping": True}
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
    except (ArgumentError, ValueError) as exc:
        raise PoolStudyError(
            f"hydra.sweeper.storage = {mask_password(url)!r} is not a valid storage URL ({exc}); use e.g. "
            f"sqlite:///outputs/hpo/optuna.db, postgresql://user:password@host/db or journal:outputs/hpo/journal.log."
        ) from None
    except Exception as exc:  # sqlalchemy OperationalError, missing driver, permissions
        reason = str(exc).splitlines()[0]
        for secret in filter(None, [_password(url)]):
            reason = reason.replace(secret, "***")
        raise PoolStudyError(
            f"Cannot open the Optuna storage {mask_password(url)!r}: {reason}. Check that the database server "
            f"is reachable, the credentials are right and the driver is installed (psycopg2 for PostgreSQL)."
        ) from None


def _password(url: str) -> str | None:
    try:
        return make_url(url).password
    except ArgumentError:
        return None
