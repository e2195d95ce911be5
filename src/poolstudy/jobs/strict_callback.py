"""A Hydra callback whose unexpected exceptions stop the command.

Hydra's callback runner (``hydra._internal.callbacks.Callbacks._notify``) turns any ``Exception``
raised by a callback into a warning and carries on. For a check that is the worst outcome: a bug in
it (a ``NameError``, say) lets the run go ahead as if the check had passed. Our checks stop a run with
``SystemExit``, which Hydra does not catch; this base class turns every other exception raised by a
hook into that too, after printing the traceback (it is a bug, not a user's mistake).
"""

from __future__ import annotations

import functools
import sys
import traceback
from typing import Any

from hydra.experimental.callback import Callback

HOOKS = ("on_run_start", "on_run_end", "on_multirun_start", "on_multirun_end", "on_job_start", "on_job_end",
         "on_compose_config")
EXIT_BUG = 70  # EX_SOFTWARE (sysexits.h): an internal error


def _strict(hook, owner: str):
    @functools.wraps(hook)
    def run(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return hook(self, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - Hydra would swallow it; see the module docstring
            traceback.print_exc(file=sys.stderr)
            print(f"error: internal error in the check {owner}.{hook.__name__} ({type(exc).__name__}: {exc}); "
                  "the command stops rather than run unchecked. This is a bug in poolstudy: please report it "
                  "with the command and the traceback above.", file=sys.stderr)
            sys.exit(EXIT_BUG)

    return run


class StrictCallback(Callback):
    """``hydra.experimental.callback.Callback`` whose hooks stop the command (exit 70) on an unexpected
    exception instead of Hydra's warning; ``SystemExit`` (a check's refusal) passes through unchanged."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in HOOKS:
            if name in cls.__dict__:
                setattr(cls, name, _strict(cls.__dict__[name], cls.__name__))
