"""The training-throughput benchmark, run from the repository root: ``python -m benchmarks.bench --help``."""
