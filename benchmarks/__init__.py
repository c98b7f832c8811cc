"""The benchmark harness: `python -m benchmarks.bench` (see bench.py)."""
