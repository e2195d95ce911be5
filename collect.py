"""Alias of ``python -m poolstudy.collect``: python collect.py PATHS... [options] (see --help)."""

import sys

from poolstudy.results.collector import main

if __name__ == "__main__":
    sys.exit(main())
