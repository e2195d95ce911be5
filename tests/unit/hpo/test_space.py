"""The HPO sweeper's outer grid: a study config's hydra.sweeper.grid and the command line's comma lists."""

from poolstudy.hpo.space import grid_cells, with_config_grid


def test_config_grid_comes_first_and_the_command_line_replaces_its_entries():
    grid = {"model": "maxpool,strided", "dataset": "mnist,fashion_mnist"}
    assert with_config_grid(grid, ["dataset=cifar10", "seed=1"]) == ["model=maxpool,strided", "dataset=cifar10", "seed=1"]
    cells, swept = grid_cells(with_config_grid(grid, ["trainer.epochs=3"]))
    assert swept == {"model", "dataset"}
    assert cells == [[f"model={m}", f"dataset={d}", "trainer.epochs=3"]
                     for m in ("maxpool", "strided") for d in ("mnist", "fashion_mnist")]
    assert with_config_grid({}, ["model=maxpool"]) == ["model=maxpool"]
