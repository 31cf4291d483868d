"""Benchmarks: each module prints a table with ratios against a reference measured in
the same run. Run with `./dev bench NAME` (or `python -m bench NAME`); not tests."""
