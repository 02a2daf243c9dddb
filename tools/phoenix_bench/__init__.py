"""Benchmarks of the auth service: the seed's before/after table, physical limits, the operator at scale.

Run with `scripts/bench` (or `python -m phoenix_auth.bench`). Nothing here is imported by the
service itself; the package only drives the service from outside, in separate processes.
"""
