"""MLflow and TensorBoard stores read back, for the tracking tests (tests/unit/tracking, tests/e2e)."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

TINY = ["dataset=shapes", "dataset.train_subset=300", "dataset.test_subset=100", "trainer.threads=1",
        "trainer.device=cpu", "trainer.progress=false"]
NO_PROBES = ["invariance.enabled=false"]


def sqlite_uri(folder: Path, migrated: bool = True) -> str:
    """An MLflow store ``folder/mlflow.db``. ``migrated``: the file is there with MLflow's tables already made
    (a copy of one made once per session: MLflow's schema migrations take seconds per new file); without it,
    the first job that logs creates the file."""
    path = Path(folder) / "mlflow.db"
    if migrated and not path.exists():
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_migrated_store(), path)
    return f"sqlite:///{path}"


@functools.lru_cache(maxsize=None)
def _migrated_store() -> Path:
    from mlflow import MlflowClient

    folder = Path(tempfile.mkdtemp(prefix="poolstudy-mlflow-"))
    atexit.register(shutil.rmtree, folder, True)
    MlflowClient(f"sqlite:///{folder}/mlflow.db").search_experiments()  # creates the tables
    return folder / "mlflow.db"


def mlflow_runs(uri: str, experiment: str | None = None) -> list:
    """Every run of the store (of one experiment when named)."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    ids = [e.experiment_id for e in client.search_experiments() if experiment is None or e.name == experiment]
    return list(client.search_runs(ids, max_results=1000)) if ids else []


def tensorboard_scalars(folder: Path) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} of the event files in ``folder``, read with TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}
