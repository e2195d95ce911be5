"""Test wall times as a committed record: a pytest JUnit XML report, one module's tests, to JSON.

    .venv/bin/python -m pytest tests/e2e/test_slurm.py --junitxml=slurm.xml
    python -m tools.junit_times slurm.xml --module tests.e2e.test_slurm --out docs/bench/slurm_tests.json \
        --note "CI-like run: services started as .ci/run does"

docs/scale_out.md shows the JSON as a generated block (``<!-- poolstudy.figures test-times ... -->``), so
the wall times quoted there come from a run, not from prose.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def read(report: Path, module: str) -> list[dict]:
    """(name, seconds, outcome) of every test case of ``module`` (its JUnit classname) in ``report``."""
    cases = []
    for case in ET.parse(report).getroot().iter("testcase"):
        if case.get("classname") != module:
            continue
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[child.tag]
        cases.append({"test": case.get("name"), "seconds": round(float(case.get("time", 0)), 2), "outcome": outcome})
    return cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.junit_times", description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="a pytest --junitxml report")
    parser.add_argument("--module", required=True, help="the tests' JUnit classname, e.g. tests.e2e.test_slurm")
    parser.add_argument("--out", type=Path, required=True, help="the JSON to write")
    parser.add_argument("--note", default="", help="the conditions of the run (load, services), shown with the table")
    args = parser.parse_args(argv)
    if not args.report.is_file():
        print(f"error: {args.report}: no such file; give the report pytest --junitxml=FILE wrote.", file=sys.stderr)
        return 2
    cases = read(args.report, args.module)
    if not cases:
        print(f"error: {args.report} holds no test of module {args.module!r} (its JUnit classname, dotted, e.g. "
              "tests.e2e.test_slurm).", file=sys.stderr)
        return 2
    record = {"module": args.module, "date": datetime.date.fromtimestamp(args.report.stat().st_mtime).isoformat(),
              "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores", "note": args.note, "cases": cases}
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"{args.out}: {len(cases)} tests, {sum(c['seconds'] for c in cases):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
