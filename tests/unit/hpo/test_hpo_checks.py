"""HPO: the search space and the grid are checked against the composed job config before anything is
written; a study trains exactly what its name says; every command an error message suggests works
when typed; a damaged storage file is named; unfinished studies make the sweep exit non-zero."""

from __future__ import annotations

import json
import shlex
import sqlite3

import optuna
import pytest
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from optuna.distributions import CategoricalDistribution, FloatDistribution

from helpers import CONF_DIR
from helpers.hpo import load, messages, sweep_args, train
from poolstudy.errors import PoolStudyError
from poolstudy.hpo.checks import check_cells, check_key_conflicts, probes
from poolstudy.hpo.space import grid_cells, search_space
from poolstudy.hpo.storage import check_sqlite_file, open_storage
from poolstudy.hpo.suggest import command_with, params_override

RECIPE = {"optimizer": "choice(adam, sgd)", "optimizer.lr": "tag(log, interval(1e-4, 3e-2))",
          "trainer.batch_size": "choice(64, 128, 256)", "model.dropout": "interval(0.0, 0.5)"}


@pytest.fixture(scope="module")
def loader():
    """Hydra's config loader for the project's conf/, in this process."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield GlobalHydra.instance().config_loader()


@pytest.fixture(scope="module")
def compose(loader):
    """The sweeper's composition of a job config."""
    master = loader.load_configuration("config", ["hparams_search=optuna", "data_dir=/nowhere"],
                                       run_mode=RunMode.MULTIRUN)
    return lambda overrides: loader.load_sweep_config(master, list(overrides))


def plan(compose, params: dict, arguments: list[str], study_file=None):
    space, fixed = search_space(params)
    cells, swept = grid_cells(arguments)
    check_key_conflicts(space, fixed, arguments, swept, params, study_file)
    return check_cells(compose, cells, fixed, swept, space, params, study_file, arguments)


# ---------------------------------------------------------------- in-process checks

def test_probes_visit_every_choice_and_both_bounds():
    space = {"a": CategoricalDistribution([1, 2, 3]), "b": FloatDistribution(0.1, 0.5)}
    visited = probes(space)
    assert {p["a"] for p in visited} == {1, 2, 3} and {p["b"] for p in visited} == {0.1, 0.5}


def test_a_valid_space_and_grid_pass_with_each_cell_named_by_what_it_trains(compose):
    plans = plan(compose, RECIPE, ["model=maxpool,strided", "dataset=shapes"])
    assert [p.identity for p in plans] == [{"arch": "lenet", "downsample": "maxpool", "dataset": "shapes"},
                                           {"arch": "lenet", "downsample": "strided", "dataset": "shapes"}]


@pytest.mark.parametrize("params, needles", [
    ({"optimizer.learning_rate": "interval(1e-4, 1e-2)"},
     ["hydra.sweeper.params.optimizer.learning_rate = 'interval(1e-4, 1e-2)'", "Could not override 'optimizer.learning_rate'",
      "{optimizer.learning_rate:null}"]),
    ({"optimizer": "choice(adam, sgdd)"}, ["Could not find 'optimizer/sgdd'", "adam, adamw, sgd"]),
    ({"model.dropout": "interval(0.0, 1.5)"}, ["at model.dropout=1.5", "model.dropout = 1.5 is not valid"]),
    ({"trainer.batch_size": "choice(64, 0)"}, ["at trainer.batch_size=0", "must be an integer >= 1"]),
], ids=["unknown key", "unknown group option", "range beyond valid", "choice not valid"])
def test_a_search_dimension_that_does_not_fit_the_job_config_is_named(compose, params, needles):
    with pytest.raises(PoolStudyError) as err:
        plan(compose, {**RECIPE, **params}, ["dataset=shapes"])
    for needle in needles:
        assert needle in str(err.value)


@pytest.mark.parametrize("params, arguments, needles", [
    ({"model": "choice(maxpool, strided)"}, ["dataset=shapes"],
     ["hydra.sweeper.params.model = 'choice(maxpool, strided)'", "downsample maxpool -> strided",
      "(lenet-maxpool-shapes)", '"++hydra.sweeper.params={model:null}" model=maxpool,strided']),
    ({"dataset": "choice(mnist, shapes)"}, [], ["dataset mnist -> shapes", "{dataset:null}\" dataset=mnist,shapes"]),
    ({"model.downsample.type": "choice(max, avg)"}, ["model=maxpool", "dataset=shapes"], ["downsample maxpool -> max", "model.downsample.type=max,avg"]),
    ({"seed": "choice(0, 1)"}, ["dataset=shapes"], ["the random seed is not a hyper-parameter", "{seed:null}"]),
], ids=["variant", "dataset", "downsample type", "seed"])
def test_a_dimension_that_changes_what_the_study_trains_is_refused(compose, params, arguments, needles):
    with pytest.raises(PoolStudyError) as err:
        plan(compose, {**RECIPE, **params}, arguments)
    for needle in needles:
        assert needle in str(err.value), str(err.value)


def test_a_study_file_grid_is_refused_with_the_command_line_grid(compose):
    study_file = ("seed_replication", {"model": "maxpool,strided", "dataset": "mnist,fashion_mnist,cifar10",
                                       "seed": "0,1,2,3,4"})
    params = {**RECIPE, **study_file[1]}
    with pytest.raises(PoolStudyError) as err:
        plan(compose, params, ["experiment=seed_replication", "dataset=shapes"], study_file)
    message = str(err.value)
    assert "experiment=seed_replication is a study for the basic sweeper" in message
    assert "(model, dataset, seed) are its grid" in message and "(lenet-maxpool-shapes)" in message
    # the command keeps the user's dataset=shapes and lists the file's model grid
    assert message.endswith('"++hydra.sweeper.params={model:null,dataset:null,seed:null}" model=maxpool,strided '
                            'hydra.sweeper.final_seeds=5')


def test_a_key_may_not_be_both_grid_and_search_or_fixed_and_search(compose):
    with pytest.raises(PoolStudyError, match=r"optimizer is both a grid key \(optimizer=adam,sgd"):
        plan(compose, RECIPE, ["optimizer=adam,sgd", "dataset=shapes"])
    with pytest.raises(PoolStudyError, match=r"optimizer.lr=0.01 on the command line would be overridden"):
        plan(compose, RECIPE, ["optimizer.lr=0.01", "dataset=shapes"])
    with pytest.raises(PoolStudyError, match=r"model.dropout is set twice"):
        plan(compose, {**RECIPE, "model.dropout": "0.1"}, ["model.dropout=0.2", "dataset=shapes"])


def test_a_bad_grid_value_names_the_cell(compose):
    with pytest.raises(PoolStudyError, match=r"The grid cell model=maxpooll cannot be composed: .*Could not find "
                                             r"'model/maxpooll'.*strided"):
        plan(compose, RECIPE, ["model=maxpool,maxpooll"])


def test_null_removes_a_dimension_and_bad_dimensions_are_named():
    space, fixed = search_space({**RECIPE, "model.dropout": None, "trainer.epochs": "3"})
    assert "model.dropout" not in space and fixed == ["trainer.epochs=3"]
    with pytest.raises(PoolStudyError, match=r"optimizer.lr = 'tag\(log, interval\(0, 1\)\)' is not a valid search "
                                             r"dimension: `low > 0`"):
        search_space({"optimizer.lr": "tag(log, interval(0, 1))"})
    with pytest.raises(PoolStudyError, match=r"an interval on the command line cannot form a grid.*"
                                             r"\+\+hydra.sweeper.params=\{optimizer.lr:'interval\(1e-4,1e-2\)'\}"):
        grid_cells(["optimizer.lr=interval(1e-4,1e-2)"])


def test_suggested_commands_survive_the_shell():
    argv = ["train.py", "-m", "hparams_search=optuna", "model=maxpool,strided", "hydra.sweep.dir=/tmp/a b"]
    fix = params_override({"optimizer.lr": "tag(log, interval(1e-4, 1e-2))", "model.dropout": None})
    assert fix == "++hydra.sweeper.params={optimizer.lr:'tag(log, interval(1e-4, 1e-2))',model.dropout:null}"
    command = command_with(add=[fix, "x='it''s'"], argv=argv)
    assert shlex.split(command) == ["python", *argv, fix, "x='it''s'"]


def test_a_damaged_or_foreign_sqlite_file_is_named(tmp_path):
    good = tmp_path / "good.db"
    optuna.create_study(study_name="s", storage=open_storage(f"sqlite:///{good}"))
    check_sqlite_file(good)  # a healthy storage passes
    data = bytearray(good.read_bytes())
    data[4096:4096 + 2000] = bytes(2000)  # a zeroed page
    malformed = tmp_path / "malformed.db"
    malformed.write_bytes(bytes(data))
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not sqlite at all " * 100)
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as con:
        con.execute("create table notes (x)")
    con.close()
    for path, reason in ((malformed, "malformed"), (garbage, "file is not a database"), (foreign, "without Optuna's tables")):
        before = path.read_bytes()
        with pytest.raises(PoolStudyError) as err:
            open_storage(f"sqlite:///{path}")
        assert f"The Optuna storage file {path} cannot be used" in str(err.value) and reason in str(err.value)
        assert f"mv {path} {path}.damaged" in str(err.value)
        assert path.read_bytes() == before  # nothing changed
    journal = tmp_path / "journal.log"
    journal.write_text("garbage\n{\"op_code\": 0}\n")  # (Optuna skips a torn last line, as after a crash)
    with pytest.raises(PoolStudyError, match=rf"The Optuna journal file {journal} cannot be used: a line of it is not "
                                             rf"an Optuna journal record"):
        open_storage(f"journal:{journal}")
    assert journal.read_text().startswith("garbage\n")


# ---------------------------------------------------------------- real commands
# The refused commands and the commands their messages suggest, typed: tests/e2e/test_bad_input.py (HPO rows).


def summary(sweep, name):
    return json.loads((sweep / name / "study_summary.json").read_text())


@pytest.mark.slow
def test_a_sweep_whose_study_stopped_exits_non_zero_with_a_summary(tmp_path, cache_dir):
    sweep = tmp_path / "hpo"
    nan_lr = ("++hydra.sweeper.params={optimizer:null,optimizer.weight_decay:null,trainer.batch_size:null,"
              "model.dropout:null,optimizer.lr:'choice(1e30)'}")
    proc = train(sweep_args(sweep, nan_lr, "optimizer=sgd", "hydra.sweeper.max_failure_fraction=0.5", n_trials=2,
                            final_seeds=1), cache_dir)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    last = messages(proc.stderr)[-1]
    assert last.startswith("error: 1 of 1 studies did not finish: lenet-maxpool-shapes: stopped: too many failures "
                           "(2 of 2 trials failed"), last
    s = summary(sweep, "lenet-maxpool-shapes")
    assert s["status"].startswith("stopped: too many failures") and s["n_failed"] == 2 and s["final"] == []
    assert not (sweep / "lenet-maxpool-shapes" / "final").exists()
    assert "| lenet-maxpool-shapes | stopped: too many failures" in (sweep / "hpo_summary.md").read_text()
    assert [t.state for t in load(sweep, "lenet-maxpool-shapes").trials] == [optuna.trial.TrialState.FAIL] * 2


@pytest.mark.parametrize("sampler, target", [(None, "TPESampler"), ("random", "RandomSampler"),
                                             ("tpe", "TPESampler"), ("cmaes", "CmaEsSampler"),
                                             ("grid", "GridSampler")])
def test_the_recipe_works_with_every_sampler_seeded_and_without_warnings(loader, sampler, target):
    """README: hydra/sweeper/sampler=random (any sampler) with the recipe. The recipe's own TPE
    (poolstudy_tpe) does not depend on which plugin Hydra scans first, and every sampler gets the
    study's seed, also grid, whose config has no seed key."""
    import warnings

    from omegaconf import OmegaConf

    from poolstudy.hpo.sampling import sampler_factory

    overrides = ["hparams_search=optuna"] + ([f"hydra/sweeper/sampler={sampler}"] if sampler else [])
    cfg = loader.load_configuration("config", overrides, run_mode=RunMode.MULTIRUN)
    sampler_cfg = OmegaConf.to_container(cfg.hydra.sweeper.sampler, resolve=True)
    if sampler is None:
        assert (sampler_cfg["seed"], sampler_cfg["n_startup_trials"], sampler_cfg["constant_liar"]) == (0, 5, False)
    space = {"x": CategoricalDistribution(list(range(10))), "y": CategoricalDistribution([1, 2])}
    factory = sampler_factory(sampler_cfg, space)

    def first_draw(seed):
        study = optuna.create_study(sampler=factory(seed))
        return study.ask(space).params["x"]

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert type(factory(7)).__name__ == target
        assert first_draw(7) == first_draw(7)
        assert len({first_draw(seed) for seed in range(1, 6)}) > 1


@pytest.mark.parametrize("model, cell, expected", [
    ({"arch": "resnet", "depth": 20}, ["model=maxpool"], "resnet-20-maxpool-cifar10"),
    ({"arch": "torchvision", "name": "resnet18"}, ["model.name=resnet18", "model=blurpool"],
     "torchvision-resnet18-blurpool-cifar10"),
    ({"arch": "lenet", "dropout": 0.4}, ["model=maxpool"], "lenet-maxpool-cifar10"),
])
def test_hpo_study_names_name_the_network(model, cell, expected):
    """arch=resnet model.depth / arch=torchvision model.name are part of a study's name (said once)."""
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from poolstudy.hpo.sweeper import FairOptunaSweeperImpl

    operator = next(c.split("=")[1] for c in cell if c.startswith("model="))
    cfg = OmegaConf.create({"model": {**model, "downsample": {"type": operator}}, "dataset": {"name": "cifar10"}})
    fake = SimpleNamespace(swept_keys={c.split("=")[0] for c in cell}, study_prefix="")
    assert FairOptunaSweeperImpl._study_name(fake, cell, cfg) == expected
