"""Benchmarks: prefsim against the tool a user would pick instead, same work,
one process. Run ``python -m benchmarks list`` to see them; the interface a
benchmark follows is in ``benchmarks/_harness.py``."""
