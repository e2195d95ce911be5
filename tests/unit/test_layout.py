"""Tests mirror the code and stand alone: no test module imports another, nor Hydra's private modules."""

import ast

from helpers import ROOT

TESTS = ROOT / "tests"


def _imports(path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_no_test_imports_another_test_or_hydras_private_modules():
    offending = []
    for path in TESTS.rglob("*.py"):
        for name in _imports(path):
            if name.split(".")[0].startswith("test_") or name == "conftest" or name.startswith("hydra._internal"):
                offending.append(f"{path.relative_to(ROOT)}: {name}")
    assert not offending, offending


def test_test_files_have_unique_names():
    names = [p.name for p in TESTS.rglob("test_*.py")]
    assert len(names) == len(set(names))  # pytest imports them by file name (no __init__.py in tests/)
