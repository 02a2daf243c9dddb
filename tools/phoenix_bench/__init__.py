"""Benchmarks of the auth service: the seed's before/after table, physical limits, the operator at scale.

Run with `scripts/bench` (or `python -m phoenix_bench`). Dev tooling, shipped in the
`phoenix-dev-tools` distribution (tools/pyproject.toml), never in the phoenix-auth or
phoenix-operator wheels or images: it drives the products from outside, in separate processes.
"""
