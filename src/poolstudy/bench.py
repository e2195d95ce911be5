"""The benchmark moved out of the installed package: it needs a source checkout (conf/, train.py)."""

import sys

if __name__ == "__main__":
    args = " ".join(sys.argv[1:])
    print(f"error: the benchmark is no longer part of the installed package; from the repository root run: "
          f"python -m benchmarks.bench{' ' + args if args else ''}", file=sys.stderr)
    sys.exit(2)
