"""The Hydra callback that checks the ``logger`` group before Hydra writes anything (a password typed into
``logger.mlflow.tracking_uri`` would otherwise be saved in multirun.yaml and every job's snapshot)."""

from __future__ import annotations

import sys
from typing import Any

from omegaconf import DictConfig

from poolstudy.errors import PoolStudyError
from poolstudy.jobs.strict_callback import StrictCallback


class LoggerCheck(StrictCallback):
    """Stops with one message (exit status 2) when the logger configuration cannot work."""

    def _check(self, config: DictConfig) -> None:
        from poolstudy.tracking import check_logger_config

        try:
            check_logger_config(config)
        except PoolStudyError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config)
