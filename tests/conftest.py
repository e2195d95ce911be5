from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("POOLSTUDY_TEST_DATA", ROOT.parent / "shared" / "datasets"))
CONF_DIR = ROOT / "conf"


def have_real(*names: str) -> bool:
    return all((SHARED_DATA / n).exists() for n in names)


def require_real(*names: str) -> None:
    if not have_real(*names):
        pytest.skip(f"real dataset files {names} not found under {SHARED_DATA} (set POOLSTUDY_TEST_DATA)")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One decoded-data cache for the whole session, so real data is decoded once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture()
def run_train(cache_dir):
    """Run train.py in a subprocess (the way users run it); returns CompletedProcess."""

    def run(*args: str, data_dir: Path | str = SHARED_DATA, timeout: int = 600, env: dict | None = None):
        full_env = {**os.environ, "POOLSTUDY_DATA": str(data_dir), "POOLSTUDY_CACHE": str(cache_dir),
                    "HYDRA_FULL_ERROR": "0", **(env or {})}
        full_env.pop("HYDRA_FULL_ERROR")
        return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, env=full_env,
                              capture_output=True, text=True, timeout=timeout)

    return run


def compose(overrides: list[str] | None = None, data_dir: str | Path = SHARED_DATA, cache: str | Path = "/tmp"):
    """Compose the project config in-process, as train.py would, without running it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(
            config_name="config",
            overrides=[f"data_dir={data_dir}", f"cache_dir={cache}", *(overrides or [])],
            return_hydra_config=False,
        )
