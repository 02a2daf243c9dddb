"""The sizing benchmark's PhoenixAuth is one the operator accepts, and its argon2 settings are ones
the auth service reads: a renamed field or variable would otherwise measure the defaults silently."""

import pytest

from phoenix_auth.settings import Settings
from phoenix_bench.pods_sizing import PROFILES, phoenix_auth
from phoenix_operator.spec import parse_spec


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("workers", [1, 2])
def test_each_configuration_is_a_valid_spec_that_sets_its_profile(
    profile: str, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = phoenix_auth("ns", profile, workers, "1000m")
    spec = parse_spec(body["spec"])
    assert spec.auth_service.workers == workers
    assert spec.auth_service.resources.limits["cpu"] == spec.auth_service.resources.requests["cpu"]
    assert (spec.auth_service.replicas.min, spec.auth_service.replicas.max) == (1, 1)
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@h/db")
    for env in spec.auth_service.extra_env:
        monkeypatch.setenv(env.name, env.value or "")
    settings = Settings()
    assert (settings.argon2_memory_kib, settings.argon2_time_cost) == PROFILES[profile]
