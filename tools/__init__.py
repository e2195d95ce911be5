"""Tools that work on a source checkout (they read its conf/): run from the repository root as ``python -m tools.<name>``."""
