"""Tests mirror the code and stand alone: no test module imports another, nor Hydra's private modules."""

from helpers import ROOT, imported_modules

TESTS = ROOT / "tests"


def test_no_test_imports_another_test_or_hydras_private_modules():
    offending = []
    for path in TESTS.rglob("*.py"):
        for name in imported_modules(path):
            if name.split(".")[0].startswith("test_") or name == "conftest" or name.startswith("hydra._internal"):
                offending.append(f"{path.relative_to(ROOT)}: {name}")
    assert not offending, offending


def test_test_files_have_unique_names():
    names = [p.name for p in TESTS.rglob("test_*.py")]
    assert len(names) == len(set(names))  # pytest imports them by file name (no __init__.py in tests/)
