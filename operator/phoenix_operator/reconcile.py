"""The one idempotent reconcile: compute the desired state from the spec, converge, report status.

Create, update, resume, the slow timer and drift events on children all call `reconcile()`.
It never keeps progress between calls (level-based): after a crash it simply runs again.
Order of work: parse spec → image allow-list → read (and label) referenced Secrets → size the pool
→ Redis → auth config, Deployment, Service, PDB, HPA → migration Job → monitoring → observe
children → status.
Any OperatorError stops the work, is written into status as conditions, and is returned in the
Outcome so the handler layer can decide between a Kopf retry (transient) and waiting (permanent).
"""

from __future__ import annotations

import base64
import enum
import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from phoenix_operator import metrics
from phoenix_operator.builders.common import LABEL_WATCHED_SECRET, WATCHED_SECRET, Owner, stable_hash
from phoenix_operator.builders.configmap import build_configmap
from phoenix_operator.builders.deployment import build_deployment
from phoenix_operator.builders.hpa import build_hpa
from phoenix_operator.builders.keys import (
    KEY_ENV,
    MIN_KEY_BYTES,
    SPEC_FIELD,
    build_keys_secret,
    generated_env,
    new_key,
    user_refs,
)
from phoenix_operator.builders.migration_job import (
    build_migration_job,
    job_completed_at,
    job_state,
    migration_job_name,
)
from phoenix_operator.builders.pdb import build_pdb
from phoenix_operator.builders.prometheus_rule import build_prometheus_rule
from phoenix_operator.builders.redis import (
    PASSWORD_KEY,
    URL_KEY,
    build_redis_deployment,
    build_redis_network_policy,
    build_redis_secret,
    build_redis_service,
    redis_url,
)
from phoenix_operator.builders.service import build_admin_service, build_auth_network_policy, build_service
from phoenix_operator.builders.service_monitor import build_service_monitor
from phoenix_operator.cache import ChildCache, Key, content_digest
from phoenix_operator.errors import (
    ChildConflict,
    OperatorError,
    PoolDoesNotFit,
    SpecInvalid,
    TransientError,
)
from phoenix_operator.images import PROJECT_IMAGE_PREFIX, check_images
from phoenix_operator.kube import KubeClient
from phoenix_operator.pool_sizing import DetectedBudget, PoolSize, detect_budget, size_pool
from phoenix_operator.spec import PhoenixAuthSpec, SecretUse, parse_spec, secret_uses
from phoenix_operator.status import (
    DEGRADED,
    MIGRATIONS_COMPLETE,
    MONITORING_CONFIGURED,
    PROGRESSING,
    READY,
    REDIS_READY,
    TRUSTED_PROXIES_CONFIGURED,
    Condition,
    Transition,
    set_conditions,
)

log = logging.getLogger(__name__)

MONITORING_GV = "monitoring.coreos.com/v1"
DISCOVERY_TTL = 30.0  # seconds a "are the Prometheus Operator CRDs served?" answer is reused


class _Unread(enum.Enum):
    """The caller has not read the child: `_apply_child` reads it (None already means absent)."""

    UNREAD = enum.auto()


_UNREAD = _Unread.UNREAD
Detector = Callable[[str], DetectedBudget]
Emit = Callable[[Mapping[str, Any], str, str, str], None]  # (body, Normal|Warning, reason, message)
# Reason of the condition a missing Secret key sets, by the spec field that names the Secret.
MISSING_SECRET_REASON = {
    "spec.database.secretRef": "DatabaseSecretMissing",
    "spec.database.migrationSecretRef": "MigrationSecretMissing",
    "spec.redis.external.secretRef": "RedisSecretMissing",
    "spec.redis.external.caSecretRef": "RedisCASecretMissing",
    "spec.authService.adminTokenSecretRef": "AdminTokenSecretMissing",
    "spec.authService.cacheSigningKeySecretRef": "CacheSigningKeySecretMissing",
}
# Reason when a user's Secret holds a value the auth service would refuse to start with.
SHORT_KEY_REASON = {
    "spec.authService.adminTokenSecretRef": "AdminTokenTooShort",
    "spec.authService.cacheSigningKeySecretRef": "CacheSigningKeyTooShort",
}
PROXIES_UNSET = (
    "spec.authService.trustedProxies is empty, so X-Forwarded-For is ignored and every login counts as "
    "coming from its TCP peer: behind an ingress or load balancer that is the proxy, and all users then "
    "share one address's throttle budget (first logins from it are refused with 429 while it is over "
    "its limit). List your proxies' addresses or CIDRs there (e.g. the ingress controller pods' "
    "range). Clients that connect directly need nothing; the service counts logins from private "
    "peers outside the list in phoenix_login_untrusted_private_peer_total"
)


@dataclass
class Outcome:
    """What one reconcile found: the status it wrote, transitions, and the error that stopped it."""

    status: dict[str, Any]
    transitions: list[Transition] = field(default_factory=list)
    error: OperatorError | None = None


@dataclass
class _Observed:
    """Facts gathered while converging, turned into status at the end."""

    spec: PhoenixAuthSpec | None = None
    pool: PoolSize | None = None
    budget_source: str | None = None
    config_hash: str | None = None
    redis: dict[str, Any] = field(default_factory=dict)
    redis_ready: Condition | None = None
    deployment: dict[str, Any] | None = None
    desired_replicas: int | None = None
    migrations: dict[str, Any] = field(default_factory=dict)
    migrations_cond: Condition | None = None
    monitoring: dict[str, bool] = field(default_factory=dict)
    monitoring_cond: Condition | None = None
    body: Mapping[str, Any] = field(default_factory=dict)  # for Events about this object


def _secret_value(secret: Mapping[str, Any] | None, key: str) -> str | None:
    data = (secret or {}).get("data") or {}
    raw = data.get(key)
    if raw is None:
        return None
    return base64.b64decode(raw).decode()


def _digest(value: str | None) -> str:
    """One-way digest of a secret value for the config hash (the value itself goes nowhere)."""
    return hashlib.sha256((value or "").encode()).hexdigest()[:16]


def _missing(namespace: str, use: SecretUse) -> TransientError:
    """A referenced Secret key is missing: retried (it may be created any moment), named in status."""
    return TransientError(
        f"Secret {namespace}/{use.ref.name} with key {use.ref.key} not found ({use.field})",
        reason=MISSING_SECRET_REASON.get(use.field, "ExtraEnvSecretMissing"),
        delay=30.0,
    )


def _watched(secret: Mapping[str, Any]) -> bool:
    labels = (secret.get("metadata") or {}).get("labels") or {}
    return labels.get(LABEL_WATCHED_SECRET) == WATCHED_SECRET


def _owned_by(obj: Mapping[str, Any] | None, owner: Owner) -> bool:
    refs = ((obj or {}).get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("uid") == owner.uid for ref in refs)


class Reconciler:
    """Holds the API client and collaborators; `reconcile(body)` is the whole job."""

    def __init__(
        self,
        kube: KubeClient,
        *,
        detector: Detector | None = None,
        emit: Emit | None = None,
        detect_timeout: float = 5.0,
        cache: ChildCache | None = None,
        allowed_images: Sequence[str] = (PROJECT_IMAGE_PREFIX,),
    ) -> None:
        self.kube = kube
        self.allowed_images = tuple(allowed_images)
        # Children and Secrets as the watches last saw them (fed by the handlers), plus what our
        # last apply of each child returned. Empty (nothing fed), every read is a GET.
        self.cache = cache or ChildCache()
        self._discovery: tuple[float, bool] | None = None  # (when, served)
        self._discovery_lock = threading.Lock()
        self.detector: Detector = detector or (lambda url: detect_budget(url, timeout=detect_timeout))
        self.emit: Emit = emit or (lambda _b, _t, _r, _m: None)

    # ------------------------------------------------------------------ entry point
    def reconcile(self, body: Mapping[str, Any]) -> Outcome:
        started = time.monotonic()
        owner = Owner.from_body(body)
        generation = int((body.get("metadata") or {}).get("generation") or 0)
        old_status = dict(body.get("status") or {})
        raw_spec = dict(body.get("spec") or {})
        obs = _Observed(body=body)
        error: OperatorError | None = None
        result = "success"
        metrics.MANAGED.labels(namespace=owner.namespace, name=owner.name).set(1)
        try:
            if raw_spec.get("paused"):
                result = "paused"
                conditions = [
                    Condition(
                        PROGRESSING, False, "Paused", "spec.paused is true: the operator changes nothing"
                    ),
                ]
                return self._finish(owner, generation, old_status, obs, conditions, "Paused", None)
            obs.spec = parse_spec(raw_spec)
            check_images(obs.spec, self.allowed_images)  # before anything is read or applied
            self._converge(owner, obs.spec, obs)
        except OperatorError as exc:
            error = exc
            result = "transient_error" if isinstance(exc, TransientError) else "permanent_error"
            metrics.ERRORS.labels(kind=exc.reason).inc()
        except Exception as exc:  # a bug or an unexpected body: report it, retry later, never crash
            log.exception("reconcile of %s/%s failed unexpectedly", owner.namespace, owner.name)
            error = TransientError(
                f"internal error ({type(exc).__name__}); see the operator log",
                reason="InternalError",
                delay=60.0,
            )
            result = "transient_error"
            metrics.ERRORS.labels(kind=error.reason).inc()
        finally:
            metrics.RECONCILE_DURATION.observe(time.monotonic() - started)
            metrics.RECONCILES.labels(result=result).inc()
        conditions, phase = self._conditions(obs, error)
        return self._finish(owner, generation, old_status, obs, conditions, phase, error)

    # ------------------------------------------------------------------ converge
    def _read(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object from the watch-fed cache, else a GET (a miss means unknown, not absent)."""
        cached = self.cache.get(api_version, kind, namespace, name)
        if cached is not None:
            return cached
        got = self.kube.get(api_version, kind, namespace, name)
        if got is not None and kind == "Secret" and _watched(got):
            # The Secret watch sees labelled Secrets, so a labelled one stays current once cached.
            self.cache.observe({**got, "apiVersion": api_version, "kind": kind}, "ADDED")
        return got

    def _secret_value(self, namespace: str, use: SecretUse) -> str | None:
        """The value of a referenced Secret key (None when the Secret or key is missing).

        The Secret gets the watched label (one merge patch, once) so the operator's label-selected
        Secret watch sees its later changes: that label is how the operator sees only the Secrets
        PhoenixAuths reference, not every Secret of the namespace."""
        secret = self._read("v1", "Secret", namespace, use.ref.name)
        if secret is not None and not _watched(secret):
            labels = {LABEL_WATCHED_SECRET: WATCHED_SECRET}
            labelled = self.kube.label("v1", "Secret", namespace, use.ref.name, labels)
            if labelled is not None:
                self.cache.observe({**labelled, "apiVersion": "v1", "kind": "Secret"}, "MODIFIED")
                secret = labelled
        return _secret_value(secret, use.ref.key)

    def _require_secret(self, namespace: str, use: SecretUse) -> str:
        value = self._secret_value(namespace, use)
        if value is None:
            raise _missing(namespace, use)
        return value

    def _apply_child(
        self, owner: Owner, obj: dict[str, Any], current: dict[str, Any] | _Unread | None = _UNREAD
    ) -> dict[str, Any]:
        """Apply a child, refusing to take over an object of the same name we do not own.

        `current`: the object as the caller just read it, None if absent (saves a second read)."""
        meta = obj["metadata"]
        key: Key = (obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
        if current is _UNREAD:
            current = self._read(*key)
        if current is not None and not _owned_by(current, owner):
            raise ChildConflict(
                f"{obj['kind']} {meta['namespace']}/{meta['name']} exists and is not owned by this "
                "PhoenixAuth; "
                "rename or delete it (the operator never overwrites objects it does not own)"
            )
        digest = stable_hash(obj)
        # Same content as our last apply's answer, same desired content: nobody changed it since,
        # so no apply. Any edit of its content (by hand or by a controller) puts it back.
        if current is not None:
            remembered = self.cache.applied(key)
            if remembered is not None and remembered[1] == digest:
                content = self.cache.content(key) if self.cache.get(*key) is current else None
                if (content or content_digest(current)) == remembered[0]:
                    return current
        applied = self.kube.apply(obj)
        self.cache.remember_apply(key, applied, digest)
        return applied

    def _delete_owned(
        self, owner: Owner, api_version: str, kind: str, name: str, *, watched: bool = False
    ) -> None:
        """Delete a child we own if it exists. `watched`: a kind the drift watch feeds into the
        cache; once the cache holds any object of that kind here, the watch has listed them, so a
        miss means absent and costs no GET (an optional child left off is the common case)."""
        if (
            watched
            and self.cache.get(api_version, kind, owner.namespace, name) is None
            and next(iter(self.cache.items(api_version, kind, owner.namespace)), None) is not None
        ):
            return
        current = self._read(api_version, kind, owner.namespace, name)
        if current is not None and _owned_by(current, owner):
            self.kube.delete(api_version, kind, owner.namespace, name)
            self.cache.forget((api_version, kind, owner.namespace, name))

    def _converge(self, owner: Owner, spec: PhoenixAuthSpec, obs: _Observed) -> None:
        ns = owner.namespace
        # --- database Secret and the pool ---
        db_ref = spec.database.secret_ref
        uses = secret_uses(spec)
        db_url = self._require_secret(ns, uses[0])
        # extraEnv values from Secrets: only their digests, so a changed value rolls the pods.
        env_digests = [
            (u.ref.name, u.ref.key, _digest(self._require_secret(ns, u)))
            for u in uses
            if u.field.startswith("spec.authService.extraEnv")
        ]
        key_digests = self._keys(owner, spec)
        if spec.database.connection_budget is not None:
            budget, obs.budget_source = spec.database.connection_budget, "spec"
        else:
            budget, obs.budget_source = self.detector(db_url).budget, "detected"
        obs.pool = size_pool(
            budget=budget,
            reserved=spec.database.reserved_connections,
            max_replicas=spec.auth_service.replicas.max,
            min_per_pod=spec.pool.min_per_pod,
            max_per_pod=spec.pool.max_per_pod,
            workers=spec.auth_service.workers,
            policy=spec.pool.policy,
        )

        # --- Redis ---
        redis_secret_ref, redis_digest = self._redis(owner, spec, obs)

        # --- auth config, Deployment, Service, PDB, HPA ---
        configmap = build_configmap(owner, spec, obs.pool)
        hashed: list[Any] = [configmap["data"], _digest(db_url), redis_digest, db_ref.name, db_ref.key]
        if env_digests:  # absent otherwise, so specs without them keep their hash (no rollout)
            hashed.append(env_digests)
        hashed.append(key_digests)  # a key changed in its Secret rolls the pods
        obs.config_hash = stable_hash(*hashed)
        self._apply_child(owner, configmap)
        current = self._read("apps/v1", "Deployment", ns, owner.auth_name)
        current_replicas = ((current or {}).get("spec") or {}).get("replicas")
        lo, hi = spec.auth_service.replicas.min, spec.auth_service.replicas.max
        # Keep what the HPA chose (within bounds) so the operator and the HPA never fight.
        obs.desired_replicas = lo if current_replicas is None else min(max(int(current_replicas), lo), hi)
        obs.deployment = self._apply_child(
            owner,
            build_deployment(
                owner,
                spec,
                obs.pool,
                redis_secret=redis_secret_ref,
                config_hash=obs.config_hash,
                replicas=obs.desired_replicas,
            ),
            current,
        )
        self._apply_child(owner, build_service(owner, spec))
        if spec.auth_service.admin_service.enabled:
            self._apply_child(owner, build_admin_service(owner, spec))
        else:
            self._delete_owned(owner, "v1", "Service", owner.admin_service_name, watched=True)
        if spec.auth_service.network_policy.enabled:
            self._apply_child(owner, build_auth_network_policy(owner, spec))
        else:
            self._delete_owned(owner, "networking.k8s.io/v1", "NetworkPolicy", owner.auth_name, watched=True)
        self._apply_child(owner, build_pdb(owner))
        self._apply_child(owner, build_hpa(owner, spec))

        # --- migrations and monitoring ---
        self._migrations(owner, spec, obs)
        self._monitoring(owner, spec, obs)

    def _keys(self, owner: Owner, spec: PhoenixAuthSpec) -> list[tuple[str, str, str]]:
        """PHOENIX_ADMIN_TOKEN and PHOENIX_CACHE_SIGNING_KEY for the auth pods: checks the user's
        Secrets (present, >= 32 bytes) and generates the others into `<name>-phoenix-keys` once.

        The generated Secret is read before every apply and each value it holds is kept: only a
        key it lacks (first reconcile, or a key the user deleted from it) is generated. Returns
        (env, Secret, digest) per key for the config hash; values go nowhere else."""
        ns = owner.namespace
        out: list[tuple[str, str, str]] = []
        for env, ref in user_refs(spec).items():
            use = SecretUse(SPEC_FIELD[env], ref, True)
            value = self._require_secret(ns, use)
            if len(value.encode()) < MIN_KEY_BYTES:
                raise TransientError(
                    f"Secret {ns}/{ref.name} key {ref.key} ({use.field}) holds {len(value.encode())} bytes; "
                    f"{env} needs at least {MIN_KEY_BYTES} (the auth service refuses to start with less): "
                    "put a longer random value there, e.g. `openssl rand -base64 48`",
                    reason=SHORT_KEY_REASON[use.field],
                    delay=30.0,
                )
            out.append((env, ref.name, _digest(value)))
        wanted = generated_env(spec)
        if wanted:
            name = owner.keys_secret_name
            existing = self._read("v1", "Secret", ns, name)
            if existing is not None and not _owned_by(existing, owner):
                raise ChildConflict(
                    f"Secret {ns}/{name} exists and is not owned by this PhoenixAuth; rename or delete it, "
                    "or name your own Secrets in spec.authService.adminTokenSecretRef / "
                    "cacheSigningKeySecretRef"
                )
            # Keep every value already there (also a key no longer generated: switching back to a
            # generated key must not rotate it).
            values = {k: v for k in KEY_ENV if (v := _secret_value(existing, k))}
            for env in wanted:
                values.setdefault(env, new_key())
            self._apply_child(owner, build_keys_secret(owner, values), existing)
            out += [(env, name, _digest(values[env])) for env in wanted]
        return sorted(out)

    def _redis(self, owner: Owner, spec: PhoenixAuthSpec, obs: _Observed) -> tuple[tuple[str, str], str]:
        ns = owner.namespace
        if spec.redis.mode == "external":
            assert spec.redis.external is not None  # guaranteed by the spec model
            ref = spec.redis.external.secret_ref
            # Switching from managed to external: remove what we created for managed Redis.
            for api_version, kind, name in (
                ("apps/v1", "Deployment", owner.redis_name),
                ("v1", "Service", owner.redis_name),
                ("networking.k8s.io/v1", "NetworkPolicy", owner.redis_name),
                ("v1", "Secret", owner.redis_secret_name),
            ):
                self._delete_owned(owner, api_version, kind, name)
            url = self._secret_value(ns, SecretUse("spec.redis.external.secretRef", ref, True))
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
            digest = _digest(url)
            if (ca_ref := spec.redis.external.ca_secret_ref) is not None:
                use = SecretUse("spec.redis.external.caSecretRef", ca_ref, True)
                ca = self._secret_value(ns, use)
                problem: TransientError | None = None
                if ca is None:
                    problem = _missing(ns, use)
                elif not url.startswith("rediss://"):
                    # The service refuses a CA file without TLS; say so here, not in a crash loop.
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
                digest = stable_hash(digest, _digest(ca))
            tls = " (TLS)" if url.startswith("rediss://") else ""
            obs.redis_ready = Condition(
                REDIS_READY, True, "ExternalRedis", f"using Secret {ref.name}/{ref.key}{tls}"
            )
            return (ref.name, ref.key), digest

        managed = spec.redis.managed_or_default
        existing = self._read("v1", "Secret", ns, owner.redis_secret_name)
        if existing is not None and not _owned_by(existing, owner):
            raise ChildConflict(
                f"Secret {ns}/{owner.redis_secret_name} exists and is not owned by this PhoenixAuth"
            )
        # Generate the password once; keep it across reconciles (rotating would drop every client).
        password = _secret_value(existing, PASSWORD_KEY) or secrets.token_urlsafe(32)
        self._apply_child(owner, build_redis_secret(owner, password), existing)
        digest = _digest(password)
        redis_dep = self._apply_child(owner, build_redis_deployment(owner, managed, secret_hash=digest))
        # The auth pods' hash follows the URL they read (user and password): a URL that changes
        # (e.g. to the ACL user) rolls them onto it.
        url_digest = _digest(redis_url(owner, password))
        self._apply_child(owner, build_redis_service(owner))
        self._apply_child(owner, build_redis_network_policy(owner))
        # Its readiness as the watch last saw it (fresher than our apply's answer), else the answer.
        redis_dep = self.cache.get("apps/v1", "Deployment", ns, owner.redis_name) or redis_dep
        ready = int((redis_dep.get("status") or {}).get("readyReplicas") or 0)
        obs.redis = {"mode": "managed", "service": owner.redis_name, "secretName": owner.redis_secret_name}
        obs.redis_ready = (
            Condition(REDIS_READY, True, "RedisAvailable", f"managed Redis {owner.redis_name} is ready")
            if ready >= 1
            else Condition(
                REDIS_READY, False, "RedisStarting", f"managed Redis {owner.redis_name} has no ready pod"
            )
        )
        return (owner.redis_secret_name, URL_KEY), url_digest

    def _migrations(self, owner: Owner, spec: PhoenixAuthSpec, obs: _Observed) -> None:
        ns = owner.namespace
        m = spec.migrations
        current_name = migration_job_name(owner, spec) if m.enabled else None
        # Old Jobs of earlier migration sets: the new name supersedes them. Once the watch has
        # shown us the current Job it has shown the older ones too (one list, one stream), so the
        # cache answers; until then (first run, a new index set, a restart) we LIST.
        cached_job = self.cache.get("batch/v1", "Job", ns, current_name) if current_name else None
        jobs = (
            [
                j
                for j in self.cache.items("batch/v1", "Job", ns)
                if ((j.get("metadata") or {}).get("labels") or {}).get("app.kubernetes.io/component")
                == "migration"
            ]
            if cached_job is not None
            else self.kube.list(
                "batch/v1",
                "Job",
                ns,
                f"app.kubernetes.io/instance={owner.name},app.kubernetes.io/component=migration",
            )
        )
        for old in jobs:
            name = old["metadata"]["name"]
            if name != current_name and _owned_by(old, owner):
                self.kube.delete("batch/v1", "Job", ns, name)
                self.cache.forget(("batch/v1", "Job", ns, name))
        if not m.enabled or current_name is None:
            obs.migrations = {"state": "Disabled"}
            obs.migrations_cond = Condition(
                MIGRATIONS_COMPLETE, True, "MigrationsDisabled", "spec.migrations.enabled is false"
            )
            return
        job = cached_job or self.kube.get("batch/v1", "Job", ns, current_name)
        if job is None and (ref := spec.database.migration_secret_ref) is not None:
            # A Job whose Secret is missing would sit in CreateContainerConfigError until its deadline.
            use = SecretUse("spec.database.migrationSecretRef", ref, False)
            if self._secret_value(ns, use) is None:
                missing = _missing(ns, use)
                obs.migrations = {"indexSet": m.index_set, "rollback": m.rollback, "state": "Pending"}
                obs.migrations_cond = Condition(MIGRATIONS_COMPLETE, False, missing.reason, missing.message)
                raise missing
        if job is None:
            job = self._apply_child(owner, build_migration_job(owner, spec), None)
            self.emit(
                obs.body,
                "Normal",
                "MigrationStarted",
                f"Job {current_name} runs phoenix-auth migrate "
                f"({'rollback of' if m.rollback else 'index set'} {m.index_set})",
            )
        elif not _owned_by(job, owner):
            raise ChildConflict(f"Job {ns}/{current_name} exists and is not owned by this PhoenixAuth")
        state = job_state(job)
        obs.migrations = {
            "indexSet": m.index_set,
            "rollback": m.rollback,
            "state": state,
            "jobName": current_name,
        }
        if completed := job_completed_at(job):
            obs.migrations["completedAt"] = completed
        action = "rolled back" if m.rollback else "applied"
        if state == "Succeeded":
            obs.migrations_cond = Condition(
                MIGRATIONS_COMPLETE,
                True,
                "MigrationSucceeded",
                f"index set {m.index_set} {action} by Job {current_name}",
            )
        elif state == "Failed":
            obs.migrations_cond = Condition(
                MIGRATIONS_COMPLETE,
                False,
                "MigrationFailed",
                f"Job {current_name} failed; see `kubectl logs job/{current_name}`",
            )
        else:
            obs.migrations_cond = Condition(
                MIGRATIONS_COMPLETE, False, "MigrationRunning", f"Job {current_name} is {state.lower()}"
            )

    def _monitoring(self, owner: Owner, spec: PhoenixAuthSpec, obs: _Observed) -> None:
        mon = spec.monitoring
        want_rule, want_sm = mon.prometheus_rule.enabled, mon.service_monitor.enabled
        obs.monitoring = {"prometheusRule": False, "serviceMonitor": False}
        if not (want_rule or want_sm):
            obs.monitoring_cond = Condition(
                MONITORING_CONFIGURED,
                False,
                "Disabled",
                "prometheusRule and serviceMonitor are disabled in spec.monitoring",
            )
            return
        if not self._monitoring_served():
            obs.monitoring_cond = Condition(
                MONITORING_CONFIGURED,
                False,
                "PrometheusOperatorCRDsMissing",
                "monitoring.coreos.com/v1 PrometheusRule/ServiceMonitor CRDs are not installed; "
                "install the Prometheus Operator CRDs to get alerts and scraping",
            )
            return
        if want_rule:
            self._apply_child(owner, build_prometheus_rule(owner, spec))
            obs.monitoring["prometheusRule"] = True
        else:
            self._delete_owned(owner, MONITORING_GV, "PrometheusRule", owner.rule_name)
        if want_sm:
            self._apply_child(owner, build_service_monitor(owner, spec))
            obs.monitoring["serviceMonitor"] = True
        else:
            self._delete_owned(owner, MONITORING_GV, "ServiceMonitor", owner.auth_name)
        made = [k for k, v in obs.monitoring.items() if v]
        obs.monitoring_cond = Condition(
            MONITORING_CONFIGURED, True, "Configured", "created " + ", ".join(made)
        )

    def _monitoring_served(self) -> bool:
        """Discovery of monitoring.coreos.com/v1, reused for DISCOVERY_TTL seconds: asking on every
        reconcile was one request in five at 200 PhoenixAuths. CRDs installed later are still
        picked up within DISCOVERY_TTL (plus the next reconcile or resync)."""
        now = time.monotonic()
        with self._discovery_lock:
            if self._discovery is not None and now - self._discovery[0] < DISCOVERY_TTL:
                return self._discovery[1]
        served = self.kube.has_resources(MONITORING_GV, {"prometheusrules", "servicemonitors"})
        with self._discovery_lock:
            self._discovery = (now, served)
        return served

    # ------------------------------------------------------------------ status
    def _conditions(self, obs: _Observed, error: OperatorError | None) -> tuple[list[Condition], str]:
        conds: list[Condition] = []
        if obs.spec is not None:  # from the spec alone: the operator does not scrape the pods
            proxies = obs.spec.auth_service.trusted_proxies
            conds.append(
                Condition(TRUSTED_PROXIES_CONFIGURED, True, "TrustedProxiesSet", f"{len(proxies)} range(s)")
                if proxies
                else Condition(TRUSTED_PROXIES_CONFIGURED, False, "TrustedProxiesUnset", PROXIES_UNSET)
            )
        if obs.redis_ready:
            conds.append(obs.redis_ready)
        if obs.migrations_cond:
            conds.append(obs.migrations_cond)
        if obs.monitoring_cond:
            conds.append(obs.monitoring_cond)

        if error is not None:
            transient = isinstance(error, TransientError)
            reason = error.reason
            if isinstance(error, SpecInvalid):
                phase = "Invalid"
            elif isinstance(error, PoolDoesNotFit):
                phase = "Degraded"
            else:
                phase = "Progressing" if transient else "Degraded"
            conds += [
                Condition(READY, False, reason, error.message),
                Condition(
                    PROGRESSING, transient, reason, "will retry" if transient else "waiting for a spec change"
                ),
                Condition(DEGRADED, not transient, reason, error.message if not transient else ""),
            ]
            return conds, phase

        dep = obs.deployment or {}
        dstatus = dep.get("status") or {}
        desired = int((dep.get("spec") or {}).get("replicas") or 0)
        ready = int(dstatus.get("readyReplicas") or 0)
        updated = int(dstatus.get("updatedReplicas") or 0)
        seen = int(dstatus.get("observedGeneration") or 0) >= int(
            (dep.get("metadata") or {}).get("generation") or 0
        )
        rolled_out = (
            seen and updated >= desired and ready >= desired and int(dstatus.get("replicas") or 0) <= desired
        )
        redis_ok = bool(obs.redis_ready and obs.redis_ready.status)
        mig_ok = bool(obs.migrations_cond and obs.migrations_cond.status)
        mig_failed = obs.migrations.get("state") == "Failed"

        waiting = []
        if not rolled_out:
            waiting.append(f"auth pods {ready}/{desired} ready")
        if not redis_ok:
            waiting.append("Redis not ready")
        if not mig_ok and not mig_failed:
            waiting.append("migrations running")
        if mig_failed:
            conds += [
                Condition(
                    READY,
                    False,
                    "MigrationFailed",
                    obs.migrations_cond.message if obs.migrations_cond else "",
                ),
                Condition(
                    PROGRESSING, False, "MigrationFailed", "fix the cause, then change spec.migrations"
                ),
                Condition(
                    DEGRADED,
                    True,
                    "MigrationFailed",
                    obs.migrations_cond.message if obs.migrations_cond else "",
                ),
            ]
            return conds, "Degraded"
        if waiting:
            text = "; ".join(waiting)
            conds += [
                Condition(READY, False, "Progressing", text),
                Condition(PROGRESSING, True, "RollingOut", text),
                Condition(DEGRADED, False, "AsExpected", ""),
            ]
            return conds, "Progressing"
        conds += [
            Condition(READY, True, "AllComponentsReady", f"{ready}/{desired} auth pods ready"),
            Condition(PROGRESSING, False, "Complete", "rollout complete"),
            Condition(DEGRADED, False, "AsExpected", ""),
        ]
        return conds, "Ready"

    def _finish(
        self,
        owner: Owner,
        generation: int,
        old_status: dict[str, Any],
        obs: _Observed,
        conditions: list[Condition],
        phase: str,
        error: OperatorError | None,
    ) -> Outcome:
        merged, transitions = set_conditions(old_status.get("conditions"), conditions, generation=generation)
        status: dict[str, Any] = {"observedGeneration": generation, "phase": phase, "conditions": merged}
        status["message"] = (
            error.message if error else next((c.message for c in conditions if c.type == READY), phase)
        )
        if obs.spec is not None:
            status["cache"] = obs.spec.cache.summary
        if obs.pool is not None:
            status["poolPerPod"] = obs.pool.per_pod
            status["poolPerProcess"] = obs.pool.per_process
            status["connectionBudget"] = obs.pool.budget
            status["connectionBudgetSource"] = obs.budget_source
        if obs.config_hash:
            status["configHash"] = obs.config_hash
        if obs.redis:
            status["redis"] = obs.redis
        if obs.migrations:
            status["migrations"] = obs.migrations
        if obs.monitoring:
            status["monitoring"] = obs.monitoring
        if obs.deployment is not None:
            desired = int((obs.deployment.get("spec") or {}).get("replicas") or 0)
            ready = int((obs.deployment.get("status") or {}).get("readyReplicas") or 0)
            status.update(replicas=desired, readyReplicas=ready, replicasSummary=f"{ready}/{desired}")
        changed = any(old_status.get(k) != v for k, v in status.items())
        if changed:
            try:
                written = self.kube.patch_status(owner.namespace, owner.name, status)
                if written:  # the next reconcile starts from this status, not an older cached one
                    self.cache.observe(written, "MODIFIED")
            except OperatorError as exc:  # status not written: retry the whole reconcile later
                metrics.ERRORS.labels(kind=exc.reason).inc()
                error = error or exc
        for t in transitions:
            self._announce(obs.body, t)
        return Outcome(status=status, transitions=transitions, error=error)

    def _announce(self, body: Mapping[str, Any], t: Transition) -> None:
        """Kubernetes Events on transitions that matter to a reader of `kubectl describe`."""
        message = t.message or f"{t.type} is {t.new}"
        if t.type == READY:
            if t.new == "True":
                self.emit(body, "Normal", t.reason, message)
            elif t.old is not None:  # was Ready (or Unknown) and is not any more
                self.emit(body, "Warning", t.reason, message)
        elif t.type == DEGRADED and t.new == "True":
            self.emit(body, "Warning", t.reason, message)
        elif t.type in (MIGRATIONS_COMPLETE, REDIS_READY):
            if t.new == "True":
                self.emit(body, "Normal", t.reason, message)
            elif t.reason in ("MigrationFailed",):
                self.emit(body, "Warning", t.reason, message)
        elif t.type == MONITORING_CONFIGURED:
            self.emit(body, "Normal", t.reason, message)
        elif t.type == TRUSTED_PROXIES_CONFIGURED and t.new == "False":
            self.emit(body, "Warning", t.reason, message)


class Serializer:
    """At most one reconcile per PhoenixAuth at a time in this process; bursts coalesce.

    Parent handlers wait for the lock; child drift events that arrive while a reconcile runs
    just mark the object dirty, and the running reconcile goes round once more.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._dirty: set[str] = set()

    def _lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def run(
        self,
        key: str,
        first: Callable[[], Outcome],
        again: Callable[[], Outcome | None],
        *,
        wait: bool = True,
        rounds: int = 5,
    ) -> Outcome | None:
        """Run `first`; while someone marked `key` dirty meanwhile, run `again` (fresh body).

        The dirty flag is re-checked after the lock is released, so an event that arrived just
        as the previous holder finished is never lost.
        """
        outcome: Outcome | None = None
        step: Callable[[], Outcome | None] = first
        for _ in range(rounds):
            lock = self._lock(key)
            if not lock.acquire(blocking=wait, timeout=120 if wait else -1):
                with self._guard:
                    self._dirty.add(key)
                return outcome
            try:
                with self._guard:
                    self._dirty.discard(key)
                outcome = step() or outcome
            finally:
                lock.release()
            with self._guard:
                if key not in self._dirty:
                    return outcome
            step, wait = again, False
        return outcome
