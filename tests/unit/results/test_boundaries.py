"""The collector (poolstudy.results and its commands) reads job folders; it imports none of the job's code."""

import subprocess
import sys

from helpers import ROOT, imported_modules

SRC = ROOT / "src" / "poolstudy"
FORBIDDEN = ("poolstudy.training", "poolstudy.jobs", "poolstudy.models")
COLLECTOR = [*sorted((SRC / "results").glob("*.py")), SRC / "collect.py", SRC / "publish.py", SRC / "jobfolder.py"]


def test_no_collector_module_imports_the_jobs_code():
    offending = {f"{path.relative_to(ROOT)}: {name}" for path in COLLECTOR for name in imported_modules(path)
                 if name.startswith(FORBIDDEN)}
    assert not offending, sorted(offending)


def test_importing_the_collector_loads_none_of_the_jobs_code():
    code = ("import importlib, pkgutil, sys, poolstudy.results as r\n"
            "[importlib.import_module(f'poolstudy.results.{m.name}') for m in pkgutil.iter_modules(r.__path__)]\n"
            "import poolstudy.collect, poolstudy.publish\n"
            "print(' '.join(sorted(sys.modules)))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert not [m for m in loaded if m.startswith(FORBIDDEN)]
    assert "poolstudy.results.collector" in loaded
