"""``python -m poolstudy.publish RESULTS.md [--check]``: the report's generated blocks (:mod:`poolstudy.results.publish`)."""

import sys

from poolstudy.results.publish import main, publish  # noqa: F401 (the command's API)

if __name__ == "__main__":
    sys.exit(main())
