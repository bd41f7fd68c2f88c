"""Benchmarks for `nox -s bench`: each `bench_*.py` module exposes `main() -> None` and prints figures."""
