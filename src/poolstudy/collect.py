"""``python -m poolstudy.collect``: the results collector's command (its parts are in :mod:`poolstudy.results`).

    python -m poolstudy.collect outputs/multirun/2026-01-01/12-00-00
    python -m poolstudy.collect outputs --by model.downsample.type,dataset --baseline maxpool --out report/
"""

import sys

from poolstudy.results.collector import build_parser, collect, gather, main  # noqa: F401 (the command's API)

if __name__ == "__main__":
    sys.exit(main())
