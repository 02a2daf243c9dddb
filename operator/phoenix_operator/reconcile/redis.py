"""Step `redis`: the managed Redis (Secret, Deployment, Service, NetworkPolicy) or the external one's
Secret; sets the RedisReady condition.

Managed: the password is generated once and kept across reconciles (rotating it would drop every
client). External: what managed Redis left behind is removed, and a CA without TLS is refused here
rather than in a crash loop of the auth pods.
"""

from __future__ import annotations

import secrets

from phoenix_operator.builders.common import stable_hash
from phoenix_operator.builders.redis import (
    PASSWORD_KEY,
    URL_KEY,
    build_redis_deployment,
    build_redis_network_policy,
    build_redis_secret,
    build_redis_service,
    redis_url,
)
from phoenix_operator.errors import TransientError
from phoenix_operator.reconcile.run import Run, digest, missing, secret_value, together
from phoenix_operator.spec import SecretUse
from phoenix_operator.status import REDIS_READY, Condition


async def converge_redis(run: Run) -> tuple[tuple[str, str], str]:
    """Returns the (Secret, key) the auth pods read the Redis URL from, and its digest."""
    if run.spec.redis.mode == "external":
        return await _external(run)
    return await _managed(run)


async def _external(run: Run) -> tuple[tuple[str, str], str]:
    ns, owner, obs = run.ns, run.owner, run.obs
    assert run.spec.redis.external is not None  # guaranteed by the spec model
    ref = run.spec.redis.external.secret_ref
    # Switching from managed to external: remove what we created for managed Redis.
    await together(
        *(
            run.delete_owned(api_version, kind, name)
            for api_version, kind, name in (
                ("apps/v1", "Deployment", owner.redis_name),
                ("v1", "Service", owner.redis_name),
                ("networking.k8s.io/v1", "NetworkPolicy", owner.redis_name),
                ("v1", "Secret", owner.redis_secret_name),
            )
        )
    )
    url = await run.secret_value(SecretUse("spec.redis.external.secretRef", ref, True))
    obs.redis = {"mode": "external", "secretName": ref.name}
    if url is None:
        obs.redis_ready = Condition(
            REDIS_READY, False, "RedisSecretMissing", f"Secret {ns}/{ref.name} has no key {ref.key}"
        )
        raise TransientError(
            f"Secret {ns}/{ref.name} with key {ref.key} not found (spec.redis.external.secretRef)",
            reason="RedisSecretMissing",
            delay=30.0,
        )
    url_digest = digest(url)
    if (ca_ref := run.spec.redis.external.ca_secret_ref) is not None:
        use = SecretUse("spec.redis.external.caSecretRef", ca_ref, True)
        ca = await run.secret_value(use)
        problem: TransientError | None = None
        if ca is None:
            problem = missing(ns, use)
        elif not url.startswith("rediss://"):
            problem = TransientError(
                f"spec.redis.external.caSecretRef is set but the URL in Secret {ns}/{ref.name} "
                f"(key {ref.key}) does not start with rediss:// (TLS): use rediss://, or remove "
                "caSecretRef",
                reason="RedisURLNotTLS",
                delay=30.0,
            )
        if problem is not None:
            obs.redis_ready = Condition(REDIS_READY, False, problem.reason, problem.message)
            raise problem
        assert ca is not None
        url_digest = stable_hash(url_digest, digest(ca))
    tls = " (TLS)" if url.startswith("rediss://") else ""
    obs.redis_ready = Condition(REDIS_READY, True, "ExternalRedis", f"using Secret {ref.name}/{ref.key}{tls}")
    return (ref.name, ref.key), url_digest


async def _managed(run: Run) -> tuple[tuple[str, str], str]:
    owner, obs = run.owner, run.obs
    managed = run.spec.redis.managed_or_default
    existing = await run.read("v1", "Secret", owner.redis_secret_name)
    # A Secret we do not own is refused by the apply (its password is never used).
    password = secret_value(existing, PASSWORD_KEY) or secrets.token_urlsafe(32)
    await run.apply(build_redis_secret(owner, password), existing)  # before the pod that reads it
    password_digest = digest(password)
    redis_dep, *_ = await together(
        run.apply(build_redis_deployment(owner, managed, secret_hash=password_digest)),
        run.apply(build_redis_service(owner)),
        run.apply(build_redis_network_policy(owner)),
    )
    # Its readiness as the watch last saw it (fresher than our apply's answer), else the answer.
    redis_dep = run.indexed("apps/v1", "Deployment", owner.redis_name) or redis_dep
    ready = int((redis_dep.get("status") or {}).get("readyReplicas") or 0)
    obs.redis = {"mode": "managed", "service": owner.redis_name, "secretName": owner.redis_secret_name}
    obs.redis_ready = (
        Condition(REDIS_READY, True, "RedisAvailable", f"managed Redis {owner.redis_name} is ready")
        if ready >= 1
        else Condition(
            REDIS_READY, False, "RedisStarting", f"managed Redis {owner.redis_name} has no ready pod"
        )
    )
    # The auth pods' hash follows the URL they read (user and password): a URL that changes
    # (e.g. to the ACL user) rolls them onto it.
    return (owner.redis_secret_name, URL_KEY), digest(redis_url(owner, password))
