"""Test support shared by the tests (tests/integration, tests/reliability) and the benchmarks.

One place for what every harness of the service needs: free loopback ports, a private
redis-server, the environment and process of a service under test, Prometheus text read with
`prometheus_client`'s own parser, and nearest-rank percentiles. Dev-only (phoenix-dev-tools); never
in an image.
"""
