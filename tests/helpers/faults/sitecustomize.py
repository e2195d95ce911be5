"""Test-only fault injection for train.py subprocesses (tests put this folder on PYTHONPATH).

POOLSTUDY_TEST_FAULT_SEED=<n>: the first training epoch of every job whose torch seed is n raises
RuntimeError("injected fault ..."), i.e. a job fails with an exception no code path expects.
Nothing in poolstudy knows about this file.
"""

import importlib.abc
import importlib.util
import os
import sys

_TARGET = "poolstudy.training.loop"


class _InjectFault(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != _TARGET:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run_module = spec.loader.exec_module

        def exec_module(module):
            run_module(module)
            real = module.train_epoch

            def train_epoch(*args, **kwargs):
                import torch

                if torch.initial_seed() == int(os.environ["POOLSTUDY_TEST_FAULT_SEED"]):
                    raise RuntimeError(f"injected fault for seed {torch.initial_seed()}")
                return real(*args, **kwargs)

            module.train_epoch = train_epoch

        spec.loader.exec_module = exec_module
        return spec


if os.environ.get("POOLSTUDY_TEST_FAULT_SEED"):
    sys.meta_path.insert(0, _InjectFault())
