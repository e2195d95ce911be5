"""Train and evaluate one configuration; with -m, a Hydra multirun over many.

    python train.py                                   # seed max-pool LeNet on MNIST
    python train.py -m model=maxpool,strided dataset=mnist,cifar10
"""

import hydra
from omegaconf import DictConfig

from poolstudy.cli import run_job


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    return run_job(cfg)


if __name__ == "__main__":
    main()
