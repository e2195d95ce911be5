"""The database-URL rules the Optuna storage and the MLflow tracking store share (poolstudy.utils.db_url)."""

import importlib.util

import pytest

from poolstudy.errors import PoolStudyError
from poolstudy.utils import db_url


def test_password_masked_and_read():
    assert db_url.mask_password("postgresql://bob:s3cret@db:5432/x") == "postgresql://bob:***@db:5432/x"
    assert db_url.mask_password("sqlite:///outputs/mlflow.db") == "sqlite:///outputs/mlflow.db"
    assert db_url.mask_password("not a url") == "not a url"
    assert db_url.password("postgresql://bob:s3cret@db/x") == "s3cret"
    assert db_url.password("postgresql://bob@db/x") is None and db_url.password("not a url") is None


@pytest.mark.parametrize("key", ["hydra.sweeper.storage", "logger.mlflow.tracking_uri"])
def test_a_written_password_is_refused_naming_the_key(key):
    with pytest.raises(PoolStudyError) as caught:
        db_url.refuse_written_password("postgresql://bob:s3cret@db/x", key)
    message = str(caught.value)
    assert message.startswith(f"{key} = 'postgresql://bob:***@db/x' contains a password") and "s3cret" not in message
    assert "PGPASSWORD" in message and f"{key}='postgresql://user:${{oc.env:POOLSTUDY_DB_PASSWORD}}@host/db'" in message
    db_url.refuse_written_password("postgresql://bob:${oc.env:PW}@db/x", key)  # an interpolation stays out of snapshots
    db_url.refuse_written_password("postgresql://bob@db/x", key)


def test_postgresql_gets_the_installed_driver():
    url = db_url.with_installed_driver("postgresql://bob@db/x")
    only_psycopg2 = importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None
    assert url == ("postgresql+psycopg2://bob@db/x" if only_psycopg2 else "postgresql://bob@db/x")
    assert db_url.with_installed_driver("sqlite:///a.db") == "sqlite:///a.db"
