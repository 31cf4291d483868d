"""Helpers shared by tests (and benchmarks): real servers to test against."""
