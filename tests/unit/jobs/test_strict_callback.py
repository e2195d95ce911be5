"""A check that fails by a bug stops the command; Hydra alone would warn and run the job unchecked."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from helpers import ROOT
from poolstudy.jobs.strict_callback import EXIT_BUG, StrictCallback


class _Refusing(StrictCallback):
    def on_run_start(self, config, **kwargs):
        sys.exit(2)  # a check's refusal

    def on_run_end(self, config, **kwargs):
        raise KeyError("missing")


def test_a_refusal_passes_through_and_a_bug_exits_70(capsys):
    with pytest.raises(SystemExit) as refused:
        _Refusing().on_run_start(config=None)
    assert refused.value.code == 2
    with pytest.raises(SystemExit) as bug:
        _Refusing().on_run_end(config=None)
    assert bug.value.code == EXIT_BUG == 70
    err = capsys.readouterr().err
    assert "KeyError: 'missing'" in err  # the traceback
    assert err.strip().splitlines()[-1].startswith("error: internal error in the check _Refusing.on_run_end "
                                                   "(KeyError: 'missing'); the command stops")


@pytest.mark.parametrize("multirun", [False, True], ids=["run", "multirun"])
def test_train_stops_before_any_job_when_a_check_has_a_bug(tmp_path, multirun):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests" / "helpers" / "callbacks")}
    args = [sys.executable, str(ROOT / "train.py"), *(["-m"] if multirun else []), "dataset=shapes",
            "+hydra.callbacks.broken._target_=broken_check.BrokenCheck",
            f"hydra.{'sweep' if multirun else 'run'}.dir={out}"]
    proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == EXIT_BUG, proc.stderr[-2000:]
    assert "NameError: name 'undefined_name' is not defined" in proc.stderr
    assert "error: internal error in the check BrokenCheck.on_" in proc.stderr
    assert not (out / "metrics.json").exists() and not (out / "0" / "metrics.json").exists()
