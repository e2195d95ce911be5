"""Fixtures shared by every test; helper functions are in the ``helpers`` package (tests/helpers/)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from helpers import ROOT, SHARED_DATA, trainpy

# A shell starts a background job (`pytest &`, `nohup pytest &`) with SIGINT ignored, and an ignored signal
# stays ignored in every process it starts: the tests that press Ctrl-C (in-process, or on a train.py they
# spawn) would then see nothing happen. Python's own handler here makes the children start with the
# default disposition again (a handled signal is reset on exec).
signal.signal(signal.SIGINT, signal.default_int_handler)


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
        return trainpy.run(args, cwd=ROOT, env=full_env, timeout=timeout)

    return run
