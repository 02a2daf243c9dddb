"""Steps `database` and `auth`: the database Secret and the pool size, then the auth service's
ConfigMap, Deployment, Services, NetworkPolicy, PodDisruptionBudget and HorizontalPodAutoscaler.

The Deployment's config hash covers everything the pods read at start (config, Secret values by
digest only, key digests), so a change of any of them rolls the pods; nothing else does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from phoenix_operator.builders.common import stable_hash
from phoenix_operator.builders.configmap import build_configmap
from phoenix_operator.builders.deployment import build_deployment
from phoenix_operator.builders.hpa import build_hpa
from phoenix_operator.builders.pdb import build_pdb
from phoenix_operator.builders.service import build_admin_service, build_auth_network_policy, build_service
from phoenix_operator.pool_sizing import DetectedBudget, PoolSize, size_pool
from phoenix_operator.reconcile.run import Run, digest, together
from phoenix_operator.spec import PhoenixAuthSpec, secret_uses

Detector = Callable[[str], Awaitable[DetectedBudget]]


async def read_database(run: Run) -> tuple[str, list[Any]]:
    """The database URL and what the config hash covers of it and of the extraEnv Secrets
    (digests only, so a changed value rolls the pods and goes nowhere else)."""
    spec = run.spec
    uses = secret_uses(spec)
    db_url = await run.require_secret(uses[0])
    env_digests = [
        (u.ref.name, u.ref.key, digest(await run.require_secret(u)))
        for u in uses
        if u.field.startswith("spec.authService.extraEnv")
    ]
    ref = spec.database.secret_ref
    hashed: list[Any] = [digest(db_url), ref.name, ref.key]
    if env_digests:  # absent otherwise, so specs without them keep their hash (no rollout)
        hashed.append(env_digests)
    return db_url, hashed


def pool_for(spec: PhoenixAuthSpec, budget: int) -> PoolSize:
    """The pool size the spec asks for inside `budget` connections (pure)."""
    return size_pool(
        budget=budget,
        reserved=spec.database.reserved_connections,
        max_replicas=spec.auth_service.replicas.max,
        min_per_pod=spec.pool.min_per_pod,
        max_per_pod=spec.pool.max_per_pod,
        workers=spec.auth_service.workers,
        policy=spec.pool.policy,
    )


async def size_connection_pool(run: Run, db_url: str, detector: Detector) -> None:
    """Pool per pod inside the database's connection budget (from the spec, else detected on
    the live database) at maxReplicas."""
    spec, obs = run.spec, run.obs
    if spec.database.connection_budget is not None:
        budget, obs.budget_source = spec.database.connection_budget, "spec"
    else:
        budget, obs.budget_source = (await detector(db_url)).budget, "detected"
    obs.pool = pool_for(spec, budget)


async def converge_auth(
    run: Run, database: list[Any], redis_secret: tuple[str, str], redis_digest: str, keys: list[Any]
) -> None:
    owner, spec, obs = run.owner, run.spec, run.obs
    assert obs.pool is not None  # size_connection_pool ran
    configmap = build_configmap(owner, spec, obs.pool)
    url_digest, db_name, db_key, *env = database
    obs.config_hash = stable_hash(configmap["data"], url_digest, redis_digest, db_name, db_key, *env, keys)
    # The ConfigMap first (the pods read it at start), then everything else at once.
    _, current = await together(run.apply(configmap), run.read("apps/v1", "Deployment", owner.auth_name))
    current_replicas = ((current or {}).get("spec") or {}).get("replicas")
    lo, hi = spec.auth_service.replicas.min, spec.auth_service.replicas.max
    # Keep what the HPA chose (within bounds) so the operator and the HPA never fight.
    obs.desired_replicas = lo if current_replicas is None else min(max(int(current_replicas), lo), hi)
    deployment = build_deployment(
        owner,
        spec,
        obs.pool,
        redis_secret=redis_secret,
        config_hash=obs.config_hash,
        replicas=obs.desired_replicas,
    )
    admin = (
        run.apply(build_admin_service(owner, spec))
        if spec.auth_service.admin_service.enabled
        else run.delete_owned("v1", "Service", owner.admin_service_name)
    )
    policy = (
        run.apply(build_auth_network_policy(owner, spec))
        if spec.auth_service.network_policy.enabled
        else run.delete_owned("networking.k8s.io/v1", "NetworkPolicy", owner.auth_name)
    )
    obs.deployment, *_ = await together(
        run.apply(deployment, current),
        run.apply(build_service(owner, spec)),
        admin,
        policy,
        run.apply(build_pdb(owner)),
        run.apply(build_hpa(owner, spec)),
    )
