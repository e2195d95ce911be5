"""The message for a search space typed without hparams_search suggests only forms that run: the HPO
form for the keys the HPO sweeper tunes (its variant keys on the command line), the grid form for
plain lists. tests/e2e/test_job_shell.py runs the suggested commands."""

import re

import pytest

from helpers import ROOT
from poolstudy.jobs.cmdline import search_space_without_hpo


def message(params: str) -> str:
    return search_space_without_hpo(["train.py", "-m", params], ROOT, "config")


def hpo_form(text: str) -> str | None:
    found = re.search(r"python train\.py -m (hparams_search=optuna .*?) \.\.\.\)", text)
    return found.group(1) if found else None


@pytest.mark.parametrize("params,hpo,grid", [
    ("hydra.sweeper.params={optimizer.lr:'0.01,0.02'}",
     "hparams_search=optuna \"+hydra.sweeper.params={optimizer.lr:'0.01,0.02'}\"", "optimizer.lr=0.01,0.02"),
    ("hydra.sweeper.params={model.downsample.kernel_size:'2,3'}",  # a hyper-parameter of the variant, tunable
     "hparams_search=optuna \"+hydra.sweeper.params={model.downsample.kernel_size:'2,3'}\"",
     "model.downsample.kernel_size=2,3"),
    ("hydra.sweeper.params={seed:'0,1'}", None, "seed=0,1"),
    ("hydra.sweeper.params={dataset:'mnist,shapes'}", None, "dataset=mnist,shapes"),
    ("hydra.sweeper.params={seed:'0,1',optimizer.lr:'0.01,0.02'}",
     "hparams_search=optuna \"+hydra.sweeper.params={optimizer.lr:'0.01,0.02'}\"", "seed=0,1 optimizer.lr=0.01,0.02"),
    # a choice(...) of variants goes on the command line as a list; an interval has no grid form
    ("hydra.sweeper.params={model:'choice(maxpool,strided)',optimizer.lr:'interval(0.01,0.1)'}",
     "hparams_search=optuna \"+hydra.sweeper.params={optimizer.lr:'interval(0.01,0.1)'}\" model=maxpool,strided", None),
])
def test_each_key_is_suggested_in_the_forms_that_take_it(params, hpo, grid):
    text = message(params)
    assert text.startswith(f"{params} is a search space, which needs the HPO sweeper"), text
    assert hpo_form(text) == hpo, text
    found = re.search(r"give the values directly instead: (.+)\.$", text)
    assert (found.group(1) if found else None) == grid, text
    if hpo is None:
        assert "hparams_search=optuna \"" not in text
    for key in ("seed", "dataset", "model"):
        if re.search(rf"[{{,]{key}:", params):  # refused by the HPO sweeper, and said why
            assert f"{key}: the random seed is not" in text or f"{key} selects what a study trains" in text, text
