"""Optuna storages: an embedded default (SQLite file or journal file) or a database URL."""

from __future__ import annotations

import os
import time
from pathlib import Path

import optuna
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from poolstudy.errors import PoolStudyError
from poolstudy.utils import db_url

JOURNAL_SUFFIXES = (".log", ".jsonl", ".journal")
# How the sweeper hands its jobs a storage URL that holds a password: in the environment, which
# child processes, joblib workers and SLURM jobs (sbatch --export=ALL, the default) inherit and
# Hydra never writes to disk; hpo.storage in the job's config carries the masked URL.
STORAGE_ENV = "POOLSTUDY_HPO_STORAGE"


def mask_password(url: str) -> str:
    """The storage URL with any password replaced by ***, safe for logs and snapshots."""
    if not url or _is_journal(url):
        return url
    return db_url.mask_password(url)


def refuse_written_password(raw_url: str, key: str = "hydra.sweeper.storage") -> None:
    """Refuse a password typed into the storage URL (poolstudy.utils.db_url.refuse_written_password)."""
    db_url.refuse_written_password(raw_url, key)


def url_for_jobs(url: str) -> str:
    """The value the sweeper passes to its jobs as hpo.storage (see STORAGE_ENV)."""
    if not db_url.password(url):
        return url
    os.environ[STORAGE_ENV] = url
    return mask_password(url)


def url_in_job(value: str) -> str:
    """The storage URL a job connects to, given its hpo.storage (undoes url_for_jobs)."""
    if db_url.password(value) != "***":
        return value
    real = os.environ.get(STORAGE_ENV)
    if real and mask_password(real) == value:
        return real
    raise PoolStudyError(
        f"hpo.storage = {value!r} has its password masked; the sweeper hands the real URL to its jobs in the "
        f"environment variable {STORAGE_ENV}, which this job does not have. Run the jobs with the sweeper's "
        f"environment (SLURM: sbatch --export=ALL, the default), or give the password through PGPASSWORD."
    )


def sqlite_path(url: str) -> Path | None:
    """The database file of an SQLite URL (None for other storages and in-memory SQLite)."""
    if not url or _is_journal(url):
        return None
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database).expanduser()


def damaged_storage_message(path: Path, reason: str, kind: str = "storage file") -> str:
    return (f"The Optuna {kind} {path} cannot be used: {reason}. It is damaged or not an Optuna storage; "
            f"nothing in it was changed and nothing is deleted. Move it aside (mv {path} {path}.damaged) and either "
            f"restore it from a backup or start the search afresh in another folder (hydra.sweep.dir=...): "
            f"the job folders next to it belong to the studies it recorded.")


def check_sqlite_file(path: Path) -> None:
    """Refuse an SQLite storage file that SQLite cannot read or that holds no Optuna tables.

    Run before Optuna opens it: Optuna reports a malformed file only later, as a failed commit
    ("check server/credentials").
    """
    import sqlite3

    if not path.exists() or path.stat().st_size == 0:
        return
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60) as con:
            result = con.execute("PRAGMA quick_check").fetchone()
            tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        con.close()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            return  # another worker is writing; Optuna's own timeout handles it
        raise PoolStudyError(damaged_storage_message(path, f"SQLite cannot read it ({exc})")) from None
    except sqlite3.DatabaseError as exc:  # "file is not a database", "database disk image is malformed"
        raise PoolStudyError(damaged_storage_message(path, f"SQLite says \"{exc}\"")) from None
    if not result or result[0] != "ok":
        raise PoolStudyError(damaged_storage_message(path, f"SQLite's integrity check says \"{result[0] if result else '?'}\""))
    if tables and not {"studies", "trials"} <= tables:
        raise PoolStudyError(damaged_storage_message(
            path, f"it is an SQLite database without Optuna's tables (it holds {', '.join(sorted(tables)[:5])})"))


def study_names(url: str) -> set[str] | None:
    """Names of the studies in the storage, without creating anything: None when an SQLite or journal
    file does not exist yet (no studies), else opens the storage."""
    path = sqlite_path(url) or (Path(url.removeprefix("journal:")).expanduser() if _is_journal(url) else None)
    if path is not None and not path.exists():
        return None
    storage = open_storage(url)
    return {s.study_name for s in storage.get_all_studies()}


def is_damage(exc: BaseException) -> bool:
    """Whether an error raised while using an SQLite storage means the file is damaged."""
    text = f"{exc} {exc.__cause__ or ''}".lower()
    return any(s in text for s in ("malformed", "file is not a database", "disk image"))


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

            try:
                return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
            except (ValueError, KeyError, TypeError) as exc:  # a log line that is not one of Optuna's records
                raise PoolStudyError(damaged_storage_message(
                    path, f"a line of it is not an Optuna journal record ({type(exc).__name__}: {exc})",
                    kind="journal file")) from None
        parsed = make_url(url)
        engine_kwargs = {}
        if parsed.get_backend_name() == "sqlite":
            path = sqlite_path(url)
            if path is not None:
                check_sqlite_file(path)
                path.parent.mkdir(parents=True, exist_ok=True)
            engine_kwargs = {"connect_args": {"timeout": 60}}
        else:
            engine_kwargs = {"pool_pre_ping": True}
        return _rdb_storage(db_url.with_installed_driver(url), engine_kwargs)
    except PoolStudyError:
        raise
    except (ArgumentError, ValueError) as exc:
        raise PoolStudyError(
            f"hydra.sweeper.storage = {mask_password(url)!r} is not a valid storage URL ({exc}); use e.g. "
            f"sqlite:///outputs/hpo/optuna.db, postgresql://user@host/db or journal:outputs/hpo/journal.log."
        ) from None
    except Exception as exc:  # sqlalchemy OperationalError, missing driver, permissions
        reason = str(exc).splitlines()[0]
        if sqlite_path(url) is not None and is_damage(exc):
            raise PoolStudyError(damaged_storage_message(sqlite_path(url), reason)) from None
        for secret in filter(None, [db_url.password(url)]):
            reason = reason.replace(secret, "***")
        raise PoolStudyError(
            f"Cannot open the Optuna storage {mask_password(url)!r}: {reason}. Check that the database server "
            f"is reachable, the credentials are right and the driver is installed (psycopg2 for PostgreSQL)."
        ) from None


def _rdb_storage(url: str, engine_kwargs: dict, attempts: int = 5) -> optuna.storages.RDBStorage:
    """Optuna's RDBStorage; workers starting together on an empty database race to create its
    tables (the loser sees a duplicate table or key), so that case is retried."""
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
        except (IntegrityError, ProgrammingError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")
