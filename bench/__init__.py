"""Benchmarks for `nox -s bench`.

Each `bench_*.py` module exposes `main() -> None` and prints its figures.
"""
