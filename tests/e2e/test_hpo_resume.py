"""HPO resume guarantee: a study proposes the same sequence of trials whether or not it was
interrupted, resumed or extended; final runs always belong to the current best trial; Ctrl-C
marks the running trial interrupted at once and prints one line.

    python -m pytest -s tests/e2e/test_hpo_resume.py -k straight    prints the side-by-side parameter table
"""

from __future__ import annotations

import json
import math
import re
import socket
import subprocess
import sys

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import InMemoryStorage
from optuna.trial import TrialState

from helpers import CONF_DIR
from helpers.hpo import (counted, env_for, interrupt_during_trial, load, messages, metrics, suggested_command, sweep_args,
                         train)
from poolstudy.hpo.budget import WORKER_ATTR, mark_interrupted, reclaim_interrupted, register_worker, worker_id
from poolstudy.hpo.finals import set_aside_stale_finals, trial_of
from poolstudy.hpo.sampling import TrialSeededSampler, position_of, sampler_factory

SPACE = {"lr": FloatDistribution(1e-4, 1e-1, log=True), "dropout": FloatDistribution(0.0, 0.5),
         "batch": CategoricalDistribution([64, 128, 256]), "width": IntDistribution(1, 8)}
TPE = {"_target_": "optuna.samplers.TPESampler", "seed": 0, "n_startup_trials": 3, "consider_endpoints": False}


def objective(params: dict) -> float:
    return -(math.log10(params["lr"]) + 2) ** 2 - (params["dropout"] - 0.2) ** 2 + params["width"] / 100


def dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)


def run_in_process(storage, n_counted: int, cfg: dict = TPE, interrupt_at: int | None = None) -> list[dict]:
    """Drive a study the way the sweeper does, with a new sampler object per call (a new process)."""
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize", load_if_exists=True,
                                sampler=TrialSeededSampler(sampler_factory(cfg, SPACE), cfg.get("seed") or 0))
    register_worker(study)
    while len(counted(study)) < n_counted:
        trial = study.ask(SPACE)
        if trial.number == interrupt_at:
            # the trial's process was killed; the next run reclaims it as interrupted
            trial.set_user_attr(WORKER_ATTR, f"{socket.gethostname()}:{dead_pid()}")
            assert reclaim_interrupted(study, storage) == 1
            continue
        study.tell(trial, objective(trial.params))
    return [t.params for t in counted(study)]


@pytest.mark.parametrize("cfg", [TPE, {"_target_": "optuna.samplers.RandomSampler", "seed": 3},
                                 {**TPE, "multivariate": True, "constant_liar": True}],
                         ids=["tpe", "random", "tpe-multivariate"])
def test_resumed_extended_and_interrupted_studies_propose_the_straight_sequence(tmp_path, cfg):
    straight = run_in_process(InMemoryStorage(), 8, cfg)
    # extend: 3 trials, then the same study raised to 8 by a new process (a new sampler object)
    storage = InMemoryStorage()
    run_in_process(storage, 3, cfg)
    extended = run_in_process(storage, 8, cfg)
    # a trial interrupted at position 4, then resumed
    storage = InMemoryStorage()
    run_in_process(storage, 4, cfg)
    interrupted = run_in_process(storage, 8, cfg, interrupt_at=4)
    assert extended == straight
    assert interrupted == straight
    assert len(optuna.load_study(study_name="s", storage=storage).trials) == 9  # interrupted: kept, not counted
    # a continuous space: no two trials share parameters
    assert len({(p["lr"], p["dropout"]) for p in straight}) == 8


def test_a_grid_study_interrupted_and_resumed_visits_the_straight_sequence_and_every_point():
    space = {"lr": CategoricalDistribution([0.1, 0.01, 0.001]), "batch": CategoricalDistribution([64, 128])}
    cfg = {"_target_": "optuna.samplers.GridSampler", "_partial_": True}

    def run(storage, n_counted, interrupt_at=None):
        study = optuna.create_study(study_name="g", storage=storage, direction="maximize", load_if_exists=True,
                                    sampler=TrialSeededSampler(sampler_factory(cfg, space), 5))
        register_worker(study)
        while len(counted(study)) < n_counted:
            trial = study.ask(space)
            if trial.number == interrupt_at:
                trial.set_user_attr(WORKER_ATTR, f"{socket.gethostname()}:{dead_pid()}")
                assert reclaim_interrupted(study, storage) == 1
                continue
            study.tell(trial, trial.params["lr"])
        return [tuple(t.params.values()) for t in counted(study)]

    straight = run(InMemoryStorage(), 6)
    storage = InMemoryStorage()
    run(storage, 2)
    resumed = run(storage, 6, interrupt_at=2)
    assert resumed == straight and len(set(straight)) == 6  # every grid point once, in the same order


def test_the_pre_fix_sampler_repeats_its_first_trials_after_a_restart(tmp_path):
    """What the per-trial seeding prevents: Optuna's seeded sampler, re-created by a resumed sweep,
    proposes its first trials again (the issue's symptom)."""
    storage = InMemoryStorage()
    for n in (2, 4):
        study = optuna.create_study(study_name="s", storage=storage, load_if_exists=True, direction="maximize",
                                    sampler=optuna.samplers.RandomSampler(seed=0))
        while len(study.trials) < n:
            t = study.ask(SPACE)
            study.tell(t, objective(t.params))
    params = [t.params for t in study.trials]
    assert params[2:] == params[:2]
    assert run_in_process(InMemoryStorage(), 4, {"_target_": "optuna.samplers.RandomSampler", "seed": 0})[2:] \
        != params[:2]


def test_position_skips_discarded_trials():
    storage = InMemoryStorage()
    study = optuna.create_study(study_name="p", storage=storage, direction="maximize")
    register_worker(study)
    first = study.ask()
    first.set_user_attr(WORKER_ATTR, worker_id())
    assert mark_interrupted(study, storage, "test") == [first.number]
    second = study.ask()
    assert position_of(study, study.trials[second.number]) == 0
    study.tell(second, 1.0)
    third = study.ask()
    assert position_of(study, study.trials[third.number]) == 1


def test_stale_finals_are_moved_aside_never_deleted(tmp_path):
    study_dir = tmp_path / "lenet-maxpool-shapes"
    for seed, trial in ((0, 0), (1, 0), (2, 2)):
        run = study_dir / "final" / f"seed{seed}"
        run.mkdir(parents=True)
        (run / "metrics.json").write_text(json.dumps({"status": "complete", "seed": seed, "hpo": {"trial": trial}}))
    (study_dir / "superseded" / "trial0" / "seed0").mkdir(parents=True)  # from an earlier move
    interrupted = study_dir / "final" / "seed3" / ".hydra"
    interrupted.mkdir(parents=True)
    (interrupted / "config.yaml").write_text("hpo:\n  role: final\n  trial: 0\n")  # a run killed before its metrics
    moved = set_aside_stale_finals(study_dir, best_trial=2)
    assert sorted(p.name for p in (study_dir / "final").iterdir()) == ["seed2"]
    assert sorted(p.name for p in (study_dir / "superseded" / "trial0").iterdir()) == ["seed0", "seed0.1", "seed1",
                                                                                      "seed3"]
    assert len(moved) == 3 and trial_of(study_dir / "superseded" / "trial0" / "seed3") == 0
    assert json.loads((study_dir / "superseded" / "trial0" / "seed0.1" / "metrics.json").read_text())["seed"] == 0


# ---------------------------------------------------------------- real sweeps (shapes, 1 epoch per trial)

STUDY = "lenet-maxpool-shapes"
SEARCH = ["hydra.sweeper.sampler.n_startup_trials=2"]  # trials 2 and 3 come from TPE, conditioned on 0 and 1


@pytest.fixture(scope="module")
def straight(tmp_path_factory, cache_dir):
    sweep = tmp_path_factory.mktemp("straight") / "hpo"
    proc = train(sweep_args(sweep, *SEARCH, n_trials=4, final_seeds=1), cache_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return sweep


def params_of(sweep) -> list[dict]:
    return [t.params for t in counted(load(sweep, STUDY))]


def assert_finals_belong_to_the_best_trial(sweep):
    summary = json.loads((sweep / STUDY / "study_summary.json").read_text())
    best = load(sweep, STUDY).best_trial
    assert summary["best_trial"] == summary["final_trial"] == best.number
    (final,) = summary["final"]
    assert metrics(sweep / STUDY / "final" / "seed0")["hpo"] == {"study_name": STUDY, "role": "final",
                                                                 "trial": best.number}
    assert final["trial"] == best.number and summary["tuned_test_acc_mean"] == final["test_acc"]
    row = next(ln for ln in (sweep / "hpo_summary.md").read_text().splitlines() if ln.startswith(f"| {STUDY} "))
    assert f"| {best.number} | {100 * best.value:.2f} | {100 * final['test_acc']:.2f} (n=1) |" in row


@pytest.mark.slow
def test_straight_extended_and_interrupted_sweeps_train_the_same_trials(straight, tmp_path, cache_dir):
    # extend: 2 trials, then the same command with n_trials=4 hydra.sweeper.extend=true
    extended = tmp_path / "extended"
    assert train(sweep_args(extended, *SEARCH, n_trials=2, final_seeds=1), cache_dir).returncode == 0
    proc = train(sweep_args(extended, *SEARCH, "hydra.sweeper.extend=true", n_trials=4, final_seeds=1), cache_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]

    # Ctrl-C while a trial runs (trial 1, or a later one on a fast machine), then the same command again
    interrupted = tmp_path / "interrupted"
    args = sweep_args(interrupted, *SEARCH, n_trials=4, final_seeds=1)
    proc = interrupt_during_trial(args, cache_dir, interrupted / STUDY / "trials" / "1", delay=0.1)
    said = messages(proc.stderr)
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    ours = [ln for ln in said if ln.startswith("interrupted: ")]
    assert len(ours) == 1, said
    match = re.match(r"interrupted: stopped during trial (\d+) of study lenet-maxpool-shapes \(", ours[0])
    assert match, ours[0]
    stopped = int(match.group(1))
    assert f"trial {stopped} marked failed (interrupted)" in ours[0] and "Re-run the same command to resume" in ours[0]
    assert suggested_command(ours[0]) == args  # the resume command is the command that was run
    # at once, before any re-run: the trial is failed+interrupted and not counted
    trial = load(interrupted, STUDY).trials[stopped]
    assert trial.state == TrialState.FAIL and trial.user_attrs["interrupted"] is True
    assert json.loads((interrupted / STUDY / "trials" / str(stopped) / "status.json").read_text())["status"] == \
        "interrupted"
    assert [t.number for t in counted(load(interrupted, STUDY))] == list(range(stopped))
    proc = train(args, cache_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]

    expected = params_of(straight)
    def short(t):
        p = t.params
        return (f"#{t.number} {p['optimizer']} lr={p['optimizer.lr']:.3e} wd={p['optimizer.weight_decay']:.3e} "
                f"bs={p['trainer.batch_size']} do={p['model.dropout']:.3f}")

    runs = [counted(load(sweep, STUDY)) for sweep in (straight, extended, interrupted)]
    table = [f"position | straight | extended 2->4 | interrupted during trial {stopped}, resumed", "---|---|---|---"]
    table += [f"{k} | " + " | ".join(short(run[k]) for run in runs) for k in range(4)]
    print("\n".join(table))
    assert params_of(extended) == expected
    assert params_of(interrupted) == expected
    assert [t.number for t in counted(load(interrupted, STUDY))] == [n for n in range(5) if n != stopped]
    assert len({(p["optimizer.lr"], p["model.dropout"]) for p in expected}) == 4  # no repeats
    # the same parameters give the same validation accuracy (so the same TPE history)
    assert [t.value for t in counted(load(extended, STUDY))] == [t.value for t in counted(load(straight, STUDY))]
    for sweep in (straight, extended, interrupted):
        assert_finals_belong_to_the_best_trial(sweep)


def lr_seed_where_the_third_trial_is_the_first_good_one(choices=(1e-7, 0.02)) -> int:
    """A sampler seed under which trials 0 and 1 draw the useless learning rate and trial 2 the good one
    (found by running the sweeper's own sampler on the same space)."""
    space = {"optimizer.lr": CategoricalDistribution(list(choices))}
    for seed in range(200):
        cfg = {"_target_": "optuna.samplers.TPESampler", "seed": seed, "n_startup_trials": 10}
        study = optuna.create_study(direction="maximize", sampler=TrialSeededSampler(sampler_factory(cfg, space), seed))
        drawn = []
        for _ in range(3):
            t = study.ask(space)
            drawn.append(t.params["optimizer.lr"])
            study.tell(t, 0.0)
        if drawn == [choices[0], choices[0], choices[1]]:
            return seed
    raise AssertionError("no such seed below 200")


@pytest.mark.slow
def test_a_new_best_trial_after_extension_retrains_the_finals_and_keeps_the_old_ones(tmp_path, cache_dir):
    seed = lr_seed_where_the_third_trial_is_the_first_good_one()
    lr_only = ("++hydra.sweeper.params={optimizer:null,optimizer.weight_decay:null,trainer.batch_size:null,"
               "model.dropout:null,optimizer.lr:'choice(1e-7,0.02)'}")
    common = [lr_only, f"hydra.sweeper.sampler.seed={seed}", "hydra.sweeper.sampler.n_startup_trials=10",
              "dataset.train_subset=600"]
    sweep = tmp_path / "hpo"
    proc = train(sweep_args(sweep, *common, n_trials=2, final_seeds=1), cache_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first = json.loads((sweep / STUDY / "study_summary.json").read_text())
    old_best = first["best_trial"]
    assert old_best in (0, 1) and metrics(sweep / STUDY / "final" / "seed0")["hpo"]["trial"] == old_best
    old_test_acc = metrics(sweep / STUDY / "final" / "seed0")["test_acc"]

    proc = train(sweep_args(sweep, *common, "hydra.sweeper.extend=true", n_trials=3, final_seeds=1), cache_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = load(sweep, STUDY)
    assert [t.params["optimizer.lr"] for t in study.trials] == [1e-7, 1e-7, 0.02]
    assert study.best_trial.number == 2 and study.best_trial.value > first["best_val_acc"]
    summary = json.loads((sweep / STUDY / "study_summary.json").read_text())
    assert summary["best_trial"] == 2 and [f["trial"] for f in summary["final"]] == [2]
    new_final = metrics(sweep / STUDY / "final" / "seed0")
    assert new_final["hpo"]["trial"] == 2 and new_final["optimizer"]["lr"] == 0.02
    # the superseded final run is kept, untouched, and said so in the log
    kept = sweep / STUDY / "superseded" / f"trial{old_best}" / "seed0"
    assert metrics(kept)["hpo"]["trial"] == old_best and metrics(kept)["test_acc"] == old_test_acc
    assert f"moved to superseded/trial{old_best}/seed0" in proc.stderr + proc.stdout
    assert_finals_belong_to_the_best_trial(sweep)


@pytest.mark.slow
def test_a_job_exiting_130_stops_the_sweep_and_marks_its_trial(tmp_path, cache_dir):
    """The job shell turns Ctrl-C inside a job into SystemExit(130); the sweeper treats it as Ctrl-C."""
    app = tmp_path / "exit130.py"
    app.write_text(
        "import sys\nimport hydra\nfrom poolstudy.jobs.shell import run_job\n"
        "@hydra.main(version_base='1.3', config_path=%r, config_name='config')\n"
        "def main(cfg):\n    if cfg.hpo.role == 'trial' and cfg.hpo.trial == 1:\n"
        "        print('interrupted during epoch 1', file=sys.stderr); raise SystemExit(130)\n"
        "    return run_job(cfg)\n"
        "main()\n" % str(CONF_DIR))
    sweep = tmp_path / "hpo"
    args = sweep_args(sweep, n_trials=3)
    proc = subprocess.run([sys.executable, str(app), *args], env=env_for(cache_dir),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert [ln for ln in messages(proc.stderr) if ln.startswith("interrupted: ")][0].startswith(
        "interrupted: stopped during trial 1 of study lenet-maxpool-shapes")
    study = load(sweep, STUDY)
    assert [(t.number, t.state, bool(t.user_attrs.get("interrupted"))) for t in study.trials] == [
        (0, TrialState.COMPLETE, False), (1, TrialState.FAIL, True)]


def test_the_summary_table_never_pairs_another_trials_test_accuracy(tmp_path):
    """A study_summary.json whose final runs retrained trial 0 while its best trial is 2 (as written before
    stale finals were moved aside) gets no tuned test accuracy in hpo_summary.md."""
    from poolstudy.hpo.study_summary import write_hpo_summary

    base = {"status": "complete", "arch": "lenet", "downsample": "maxpool", "dataset": "shapes", "n_trials": 4,
            "n_complete": 4, "n_pruned": 0, "n_failed": 0, "best_val_acc": 0.9}
    stale = {**base, "study_name": "stale", "best_trial": 2,
             "final": [{"seed": 0, "trial": 0, "val_acc": 0.8, "test_acc": 0.7}]}
    fresh = {**base, "study_name": "fresh", "best_trial": 2,
             "final": [{"seed": 0, "trial": 2, "val_acc": 0.9, "test_acc": 0.85}]}
    for s in (stale, fresh):
        (tmp_path / s["study_name"]).mkdir()
        (tmp_path / s["study_name"] / "study_summary.json").write_text(json.dumps(s))
    write_hpo_summary(tmp_path)
    rows = {ln.split(" | ")[0].strip("| "): ln for ln in (tmp_path / "hpo_summary.md").read_text().splitlines()[2:]}
    assert rows["stale"].endswith("| 2 | 90.00 | — (n=0) |")
    assert rows["fresh"].endswith("| 2 | 90.00 | 85.00 (n=1) |")


@pytest.mark.slow
def test_ctrl_c_during_a_trials_training_prints_one_interrupted_line(tmp_path, cache_dir):
    """Ctrl-C inside a trial's epoch (deterministically: its first training step raises KeyboardInterrupt, as
    Python does on SIGINT) ends the sweep with one "interrupted:" line, the sweeper's; the job's own account of
    where it stopped goes to its train.log and status.json."""
    app = tmp_path / "ctrl_c_in_epoch.py"
    app.write_text(
        "import hydra\nimport poolstudy.training.loop as loop\n"
        "real = loop.train_epoch\nstate = {}\n"
        "def train_epoch(*args, **kwargs):\n"
        "    if state.get('trial') == 1:\n        raise KeyboardInterrupt\n"
        "    return real(*args, **kwargs)\n"
        "loop.train_epoch = train_epoch  # before poolstudy.jobs imports it\n"
        "from poolstudy.jobs.shell import run_job\n"
        "@hydra.main(version_base='1.3', config_path=%r, config_name='config')\n"
        "def main(cfg):\n    state['trial'] = cfg.hpo.trial\n    return run_job(cfg)\n"
        "main()\n" % str(CONF_DIR))
    sweep = tmp_path / "hpo"
    proc = subprocess.run([sys.executable, str(app), *sweep_args(sweep, n_trials=2)], env=env_for(cache_dir),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 130 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    ours = [ln for ln in messages(proc.stderr) if ln.startswith("interrupted")]
    assert len(ours) == 1 and ours[0].startswith("interrupted: stopped during trial 1 of study lenet-maxpool-shapes"), ours
    trial = sweep / STUDY / "trials" / "1"
    assert f"interrupted: {trial} stopped by Ctrl-C" in (trial / f"{app.stem}.log").read_text()  # train.py: train.log
    assert "during epoch 1" in json.loads((trial / "status.json").read_text())["error"]
