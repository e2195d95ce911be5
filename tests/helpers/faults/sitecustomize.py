"""Test-only fault injection for train.py subprocesses (tests put this folder on PYTHONPATH).

POOLSTUDY_TEST_FAULT_SEED=<n>: the first training epoch of every job whose torch seed is n raises
RuntimeError("injected fault ..."), i.e. a job fails with an exception no code path expects.
POOLSTUDY_TEST_EPOCH_DELAY=<seconds>: every training epoch a process runs after its first takes that
much longer (a sleep; the figures are unchanged), so that a job interrupted once its first checkpoint
exists is still training when the interruption lands.
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
            calls = []

            def train_epoch(*args, **kwargs):
                import time

                import torch

                fault_seed = os.environ.get("POOLSTUDY_TEST_FAULT_SEED")
                if fault_seed and torch.initial_seed() == int(fault_seed):
                    raise RuntimeError(f"injected fault for seed {torch.initial_seed()}")
                if calls:
                    time.sleep(float(os.environ.get("POOLSTUDY_TEST_EPOCH_DELAY", "0")))
                calls.append(1)
                return real(*args, **kwargs)

            module.train_epoch = train_epoch

        spec.loader.exec_module = exec_module
        return spec


if os.environ.get("POOLSTUDY_TEST_FAULT_SEED") or os.environ.get("POOLSTUDY_TEST_EPOCH_DELAY"):
    sys.meta_path.insert(0, _InjectFault())
