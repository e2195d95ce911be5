"""The job side of an HPO trial: a Ctrl-C during its storage calls acts once they have finished, so it
never leaves an SQLite storage locked against the sweeper's bookkeeping."""

import os
import signal

import optuna
import pytest
from optuna.trial import TrialState

from poolstudy.hpo import reporting
from poolstudy.hpo.budget import WORKER_ATTR, mark_interrupted, worker_id
from poolstudy.hpo.reporting import TrialReporter, storage_call


def test_a_ctrl_c_inside_a_storage_call_acts_when_the_call_has_finished():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with storage_call():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("the call went on")
    assert done == ["the call went on"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is back


def test_a_second_ctrl_c_acts_at_once():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with storage_call():
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
            done.append("not reached")
    assert done == []


def test_a_trial_interrupted_while_its_job_connects_leaves_the_sqlite_file_writable(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="s", storage=url)
    trial = study.ask()
    trial.set_user_attr(WORKER_ATTR, worker_id())  # as the sweeper asks it
    real_open = reporting.open_storage
    opened = []

    def open_during_ctrl_c(value):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C arrives while the job opens its storage
        storage = real_open(value)
        opened.append(storage)
        return storage

    monkeypatch.setattr(reporting, "open_storage", open_during_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        TrialReporter({"storage": url, "study_name": "s", "trial": trial.number})
    assert len(opened) == 1  # the set-up's storage calls finished before the interrupt acted
    # the sweeper's bookkeeping right after: a short lock timeout, so a held lock fails here at once
    sweeper_storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 1}})
    assert mark_interrupted(optuna.load_study(study_name="s", storage=sweeper_storage), sweeper_storage, "Ctrl-C",
                            tmp_path / "trials") == [trial.number]
    assert study.trials[0].state == TrialState.FAIL and study.trials[0].user_attrs["interrupted"] is True
