"""The benchmarked servers' environment and ports (no server started here)."""

from __future__ import annotations

from phoenix_auth.settings import Settings
from phoenix_bench import servers


def test_app_env_switches_the_l2_cache_on_with_a_fresh_valid_signing_key(monkeypatch):
    monkeypatch.delenv("PHOENIX_CACHE_SIGNING_KEY", raising=False)
    first = servers.app_env("postgresql://u:p@127.0.0.1:5432/bench", 6390, 2)
    second = servers.app_env("postgresql://u:p@127.0.0.1:5432/bench", 6390, 2)
    assert first["PHOENIX_CACHE_SIGNING_KEY"] != second["PHOENIX_CACHE_SIGNING_KEY"]  # random each time
    for name, value in first.items():
        monkeypatch.setenv(name, value)
    settings = Settings()  # what every benchmarked server builds from this environment
    assert settings.cache_signing_key is not None  # accepted: long enough to turn L2 on


def test_free_ports_are_distinct():
    ports = servers.free_ports(4)
    assert len(set(ports)) == 4 and all(p > 0 for p in ports)
