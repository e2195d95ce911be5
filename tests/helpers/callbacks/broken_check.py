"""A check with a bug, for tests/unit/jobs/test_strict_callback.py (imported by train.py through PYTHONPATH)."""

from poolstudy.jobs.strict_callback import StrictCallback


class BrokenCheck(StrictCallback):
    def on_run_start(self, config, **kwargs):
        return undefined_name  # noqa: F821 - the bug under test

    def on_multirun_start(self, config, **kwargs):
        return undefined_name  # noqa: F821
