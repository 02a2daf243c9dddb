"""reconcile() end to end against an in-memory API: objects, status, conditions, events, errors."""

from __future__ import annotations

import asyncio
import copy

import pytest
from conftest import DB_URL, NS, FakeKube, b64, make_body

from phoenix_operator.errors import PermanentError, TransientError
from phoenix_operator.pool_sizing import DetectedBudget
from phoenix_operator.reconcile import Reconciler
from phoenix_operator.status import get_condition

AUTH_KINDS = {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"}


def run(kube: FakeKube, body: dict, **kw):
    events: list[tuple[str, str, str]] = []
    rec = Reconciler(kube, emit=lambda _b, t, r, m: events.append((t, r, m)), **kw)
    outcome = asyncio.run(rec.reconcile(body))
    return outcome, events


def cond(outcome, type_):
    return get_condition(outcome.status["conditions"], type_)


def make_ready(kube: FakeKube, replicas: int = 2) -> None:
    kube.mark_ready(
        "Deployment",
        "auth",
        {
            "observedGeneration": 1,
            "replicas": replicas,
            "readyReplicas": replicas,
            "updatedReplicas": replicas,
            "availableReplicas": replicas,
        },
    )
    kube.mark_ready("Deployment", "auth-redis", {"readyReplicas": 1})
    job = next(o for (k, _, n), o in kube.objects.items() if k == "Job")
    job["status"] = {
        "conditions": [{"type": "Complete", "status": "True"}],
        "completionTime": "2026-11-26T12:00:00Z",
    }


def test_first_reconcile_creates_children_and_reports_progress(kube):
    outcome, events = run(kube, make_body())
    assert outcome.error is None
    assert AUTH_KINDS | {"Secret", "NetworkPolicy", "Job"} <= kube.kinds()
    assert "PrometheusRule" not in kube.kinds()  # monitoring CRDs absent
    s = outcome.status
    assert s["phase"] == "Progressing"
    assert s["poolPerPod"] == 20 and s["connectionBudget"] == 100 and s["connectionBudgetSource"] == "spec"
    assert s["replicasSummary"] == "0/2" and s["cache"] == "L1+L2"
    assert s["migrations"]["state"] == "Pending" and s["migrations"]["jobName"].startswith("auth-migrate-")
    assert cond(outcome, "Ready")["status"] == "False"
    assert cond(outcome, "MonitoringConfigured")["reason"] == "PrometheusOperatorCRDsMissing"
    assert kube.status_patches[-1] == s
    assert ("Normal", "MigrationStarted") in [(t, r) for t, r, _ in events]
    assert any(r == "PrometheusOperatorCRDsMissing" for _, r, _ in events)


def test_becomes_ready_when_children_are_ready(kube):
    run(kube, make_body())
    make_ready(kube)
    outcome, events = run(kube, make_body(status=kube.status_patches[-1]))
    assert outcome.status["phase"] == "Ready"
    assert cond(outcome, "Ready")["status"] == "True"
    assert cond(outcome, "MigrationsComplete")["status"] == "True"
    assert cond(outcome, "RedisReady")["status"] == "True"
    assert outcome.status["replicasSummary"] == "2/2"
    assert outcome.status["migrations"]["completedAt"] == "2026-11-26T12:00:00Z"
    assert ("Normal", "AllComponentsReady") in [(t, r) for t, r, _ in events]


def test_steady_state_writes_nothing_new(kube):
    run(kube, make_body())
    make_ready(kube)
    first, _ = run(kube, make_body(status=kube.status_patches[-1]))
    patches = len(kube.status_patches)
    second, events = run(kube, make_body(status=first.status))
    assert second.status == first.status
    assert len(kube.status_patches) == patches  # no status write when nothing changed
    assert events == []


def test_no_secret_values_in_status_or_events(kube):
    outcome, events = run(kube, make_body())
    make_ready(kube)
    outcome2, events2 = run(kube, make_body(status=outcome.status))
    password = b64decode(kube.obj("Secret", "auth-redis-auth")["data"]["password"])
    text = repr([outcome.status, outcome2.status, events, events2])
    for secret in (DB_URL, "s3cret-db-pass", password):
        assert secret not in text


def b64decode(value: str) -> str:
    import base64

    return base64.b64decode(value).decode()


def test_redis_password_is_kept_across_reconciles(kube):
    run(kube, make_body())
    first = kube.obj("Secret", "auth-redis-auth")["data"]["password"]
    run(kube, make_body())
    assert kube.obj("Secret", "auth-redis-auth")["data"]["password"] == first


def test_changed_db_secret_changes_config_hash(kube):
    run(kube, make_body())
    before = kube.obj("Deployment", "auth")["spec"]["template"]["metadata"]["annotations"]
    kube.obj("Secret", "db")["data"]["DATABASE_URL"] = b64("postgresql://other@db/x")
    run(kube, make_body())
    after = kube.obj("Deployment", "auth")["spec"]["template"]["metadata"]["annotations"]
    assert before["auth.phoenix.dev/config-hash"] != after["auth.phoenix.dev/config-hash"]


def test_keeps_hpa_replica_count_within_bounds(kube):
    run(kube, make_body())
    kube.obj("Deployment", "auth")["spec"]["replicas"] = 3  # the HPA scaled out
    run(kube, make_body())
    assert kube.obj("Deployment", "auth")["spec"]["replicas"] == 3
    kube.obj("Deployment", "auth")["spec"]["replicas"] = 40  # hand-edited beyond max
    run(kube, make_body())
    assert kube.obj("Deployment", "auth")["spec"]["replicas"] == 4


def test_drift_is_put_back(kube):
    run(kube, make_body())
    kube.objects.pop(("Service", NS, "auth"))
    dep = kube.obj("Deployment", "auth")
    dep["spec"]["template"]["spec"]["containers"][0]["env"] = []
    run(kube, make_body())
    assert ("Service", NS, "auth") in kube.objects
    env = kube.obj("Deployment", "auth")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert any(e["name"] == "PHOENIX_MAX_DB_CONNECTIONS" for e in env)


def test_migration_set_change_replaces_the_job(kube):
    run(kube, make_body())
    old = {n for (k, _, n) in kube.objects if k == "Job"}
    spec = copy.deepcopy(make_body()["spec"])
    spec["migrations"] = {"rollback": True}
    outcome, _ = run(kube, make_body(spec, generation=2))
    new = {n for (k, _, n) in kube.objects if k == "Job"}
    assert old.isdisjoint(new) and len(new) == 1
    assert ("Job", old.pop()) in kube.deleted
    assert outcome.status["migrations"]["rollback"] is True


def test_migration_failure_degrades(kube):
    run(kube, make_body())
    job = next(o for (k, _, _), o in kube.objects.items() if k == "Job")
    job["status"] = {"conditions": [{"type": "Failed", "status": "True"}]}
    outcome, events = run(kube, make_body(status=kube.status_patches[-1]))
    assert outcome.status["phase"] == "Degraded"
    assert cond(outcome, "Degraded")["status"] == "True"
    assert cond(outcome, "MigrationsComplete")["reason"] == "MigrationFailed"
    assert ("Warning", "MigrationFailed") in [(t, r) for t, r, _ in events]


def test_monitoring_objects_when_crds_exist(kube):
    kube.monitoring = True
    outcome, _ = run(kube, make_body())
    assert {"PrometheusRule", "ServiceMonitor"} <= kube.kinds()
    assert cond(outcome, "MonitoringConfigured")["status"] == "True"
    spec = copy.deepcopy(make_body()["spec"])
    spec["monitoring"] = {"serviceMonitor": {"enabled": False}}
    run(kube, make_body(spec, generation=2))
    assert "ServiceMonitor" not in kube.kinds() and "PrometheusRule" in kube.kinds()


def test_user_owned_service_monitor_is_never_overwritten(kube):
    kube.monitoring = True
    kube.put(
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": {"name": "auth", "namespace": NS, "labels": {"team": "sre"}},
            "spec": {"x": 1},
        }
    )
    outcome, _ = run(kube, make_body())
    assert outcome.error is not None and outcome.error.reason == "ChildNameConflict"
    assert kube.obj("ServiceMonitor", "auth")["spec"] == {"x": 1}
    assert cond(outcome, "Degraded")["status"] == "True"
    assert "not owned" in cond(outcome, "Ready")["message"]


def test_external_redis(kube):
    kube.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "ext", "namespace": NS},
            "data": {"REDIS_URL": b64("redis://:pw@redis.example:6379/0")},
        }
    )
    run(kube, make_body())  # managed first
    spec = copy.deepcopy(make_body()["spec"])
    spec["redis"] = {"mode": "external", "external": {"secretRef": {"name": "ext"}}}
    outcome, _ = run(kube, make_body(spec, generation=2))
    assert ("Deployment", NS, "auth-redis") not in kube.objects  # managed Redis removed
    assert ("Secret", NS, "auth-redis-auth") not in kube.objects
    env = kube.obj("Deployment", "auth")["spec"]["template"]["spec"]["containers"][0]["env"]
    redis_env = next(e for e in env if e["name"] == "REDIS_URL")
    assert redis_env["valueFrom"]["secretKeyRef"] == {"name": "ext", "key": "REDIS_URL"}
    assert cond(outcome, "RedisReady")["reason"] == "ExternalRedis"


def test_missing_database_secret_is_transient_with_condition(kube):
    kube.objects.pop(("Secret", NS, "db"))
    outcome, _ = run(kube, make_body())
    assert isinstance(outcome.error, TransientError)
    assert cond(outcome, "Ready")["reason"] == "DatabaseSecretMissing"
    assert "Deployment" not in kube.kinds()


def test_invalid_spec_becomes_condition_naming_the_field(kube):
    body = make_body(
        {"database": {"secretRef": {"name": "db"}, "connectionBudget": 100}, "pool": {"policy": "x"}}
    )
    outcome, _ = run(kube, body)
    assert isinstance(outcome.error, PermanentError)
    assert outcome.status["phase"] == "Invalid"
    assert cond(outcome, "Ready")["reason"] == "InvalidSpec"
    assert cond(outcome, "Ready")["message"].startswith("spec.pool.policy")
    assert kube.applied == []


def test_paused_changes_nothing(kube):
    spec = dict(make_body()["spec"], paused=True)
    outcome, _ = run(kube, make_body(spec))
    assert kube.applied == []
    assert outcome.status["phase"] == "Paused"
    assert cond(outcome, "Progressing")["reason"] == "Paused"


def test_detected_budget_too_small_reports_numbers(kube):
    body = make_body({"database": {"secretRef": {"name": "db"}, "detect": True}})
    seen = []

    async def detector(url):
        seen.append(url)
        return DetectedBudget(max_connections=20, superuser_reserved=3, held_by_others=10)

    outcome, events = run(kube, body, detector=detector)
    assert seen == [DB_URL]
    assert outcome.error is not None and outcome.error.reason == "ConnectionBudgetTooSmall"
    msg = cond(outcome, "Ready")["message"]
    assert "budget 7" in msg and "needs 8" in msg
    assert outcome.status["phase"] == "Degraded"
    assert ("Warning", "ConnectionBudgetTooSmall") in [(t, r) for t, r, _ in events]


def test_detected_budget_sizes_the_pool(kube):
    body = make_body({"database": {"secretRef": {"name": "db"}, "detect": True}})

    async def detector(url):
        return DetectedBudget(100, 3, 17)

    outcome, _ = run(kube, body, detector=detector)
    assert outcome.status["connectionBudget"] == 80 and outcome.status["connectionBudgetSource"] == "detected"
    assert outcome.status["poolPerPod"] == 18  # (80-5)//4


@pytest.mark.parametrize("reason", ["Conflict", "ApiServerError"])
def test_transient_api_errors_are_reported_and_returned(kube, reason):
    kube.fail = lambda verb, kind, name: TransientError("boom", reason=reason) if kind == "Service" else None
    outcome, _ = run(kube, make_body())
    assert isinstance(outcome.error, TransientError)
    assert cond(outcome, "Progressing")["status"] == "True"
    assert cond(outcome, "Degraded")["status"] == "False"


def test_forbidden_is_permanent(kube):
    kube.fail = lambda verb, kind, name: (
        PermanentError("forbidden", reason="Forbidden") if kind == "Job" else None
    )
    outcome, _ = run(kube, make_body())
    assert isinstance(outcome.error, PermanentError)
    assert cond(outcome, "Degraded")["reason"] == "Forbidden"


def test_unexpected_exception_is_reported_not_raised(kube):
    def boom(verb, kind, name):
        if kind == "Service":
            raise KeyError("surprise")
        return None

    kube.fail = boom
    outcome, _ = run(kube, make_body())
    assert isinstance(outcome.error, TransientError)
    assert cond(outcome, "Ready")["reason"] == "InternalError"
    assert "KeyError" in cond(outcome, "Ready")["message"]


def spec_with(**parts) -> dict:
    spec = copy.deepcopy(make_body()["spec"])
    spec.update(parts)
    return spec


def put_secret(kube: FakeKube, name: str, data: dict[str, str], labels: dict | None = None) -> None:
    kube.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": NS, "labels": labels or {}},
            "data": {k: b64(v) for k, v in data.items()},
        }
    )


@pytest.mark.parametrize(
    ("parts", "field"),
    [
        ({"authService": {"image": "docker.io/attacker/phoenix-auth:1"}}, "spec.authService.image"),
        ({"authService": {"image": "ghcr.io/phoenix-dev-evil/phoenix-auth:1"}}, "spec.authService.image"),
        ({"redis": {"mode": "managed", "managed": {"image": "redis:7"}}}, "spec.redis.managed.image"),
    ],
)
def test_an_image_outside_the_allow_list_deploys_nothing_and_says_what_to_fix(kube, parts, field):
    outcome, events = run(kube, make_body(spec_with(**parts)))
    assert kube.applied == [] and kube.labelled == []  # nothing deployed, no Secret read or touched
    assert outcome.status["phase"] == "Invalid"
    ready = cond(outcome, "Ready")
    assert ready["status"] == "False" and ready["reason"] == "ImageNotAllowed"
    assert ready["message"].startswith(field) and "ghcr.io/phoenix-dev/" in ready["message"]
    assert cond(outcome, "Degraded")["status"] == "True"
    assert ("Warning", "ImageNotAllowed") in [(t, r) for t, r, _ in events]


def test_the_allow_list_is_the_operator_s_setting(kube):
    body = make_body(spec_with(authService={"image": "registry.acme.example/phoenix/auth:2"}))
    outcome, _ = run(kube, body, allowed_images=["registry.acme.example/phoenix"])
    assert cond(outcome, "Ready")["message"].startswith("spec.redis.managed.image")  # Redis's too
    outcome, _ = run(kube, body, allowed_images=["registry.acme.example/phoenix", "ghcr.io/phoenix-dev/"])
    assert outcome.error is None
    assert kube.obj("Deployment", "auth")["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "registry.acme.example/phoenix/auth:2"
    )
    outcome, _ = run(FakeKube(), body)  # the default: this project's repository path only
    assert cond(outcome, "Ready")["reason"] == "ImageNotAllowed"
    outcome, _ = run(kube, body, allowed_images=["*"])
    assert outcome.error is None


def test_referenced_secrets_are_labelled_for_the_secret_watch_once(kube):
    run(kube, make_body())
    assert kube.obj("Secret", "db")["metadata"]["labels"] == {"auth.phoenix.dev/watched": "true"}
    assert kube.obj("Secret", "auth-redis-auth")["metadata"]["labels"]["auth.phoenix.dev/watched"] == "true"
    assert kube.labelled == [("Secret", "db")]
    run(kube, make_body())
    assert kube.labelled == [("Secret", "db")]  # already labelled: no second patch


def test_extra_env_from_a_secret_rolls_the_pods_and_its_value_goes_nowhere(kube):
    token = "planted-admin-token-" + "x" * 24
    put_secret(kube, "app", {"admin": token})
    env = {"name": "APP_API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "app", "key": "admin"}}}
    body = make_body(spec_with(authService={"extraEnv": [env]}))
    outcome, events = run(kube, body)
    assert outcome.error is None
    assert kube.obj("Secret", "app")["metadata"]["labels"] == {"auth.phoenix.dev/watched": "true"}
    before = outcome.status["configHash"]
    kube.obj("Secret", "app")["data"]["admin"] = b64("rotated-" + token)
    outcome, _ = run(kube, make_body(body["spec"], status=outcome.status))
    assert outcome.status["configHash"] != before
    assert "APP_API_TOKEN" not in kube.obj("ConfigMap", "auth-config")["data"]
    text = repr([kube.applied, kube.status_patches, events])
    assert token not in text


def test_a_missing_extra_env_secret_is_reported_naming_the_field(kube):
    env = {"name": "APP_API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "app", "key": "admin"}}}
    outcome, _ = run(kube, make_body(spec_with(authService={"extraEnv": [env]})))
    assert isinstance(outcome.error, TransientError)
    ready = cond(outcome, "Ready")
    assert ready["reason"] == "ExtraEnvSecretMissing"
    assert (
        "Secret demo/app with key admin not found (spec.authService.extraEnv[0].valueFrom.secretKeyRef)"
        in (ready["message"])
    )
    assert "Deployment" not in kube.kinds()


def test_specs_without_secret_env_keep_their_config_hash(kube):
    """The hash of a spec without extraEnv Secrets has no entry for them (adding the feature did
    not roll pods); it is ConfigMap data, DB URL digest, Redis URL digest, DB ref, then the digests of
    the admin token and the L2 signing key (their env is new in the pod template, so this release
    rolls the pods once anyway)."""
    from phoenix_operator.builders.common import stable_hash
    from phoenix_operator.reconcile.run import digest as _digest

    outcome, _ = run(kube, make_body())
    redis_pw = b64decode(kube.obj("Secret", "auth-redis-auth")["data"]["password"])
    data = kube.obj("ConfigMap", "auth-config")["data"]
    keys = kube.obj("Secret", "auth-phoenix-keys")["data"]
    key_digests = [
        [env, "auth-phoenix-keys", _digest(b64decode(keys[env]))]
        for env in ("PHOENIX_ADMIN_TOKEN", "PHOENIX_CACHE_SIGNING_KEY")
    ]
    redis_url = f"redis://phoenix-auth:{redis_pw}@auth-redis.demo.svc:6379/0"
    old = stable_hash(data, _digest(DB_URL), _digest(redis_url), "db", "DATABASE_URL", key_digests)
    assert outcome.status["configHash"] == old


def test_migration_secret_missing_holds_the_job_and_says_what_to_create(kube):
    spec = spec_with(
        database={
            "secretRef": {"name": "db"},
            "migrationSecretRef": {"name": "db-owner"},
            "connectionBudget": 100,
        }
    )
    outcome, _ = run(kube, make_body(spec))
    assert "Job" not in kube.kinds()
    assert "Deployment" in kube.kinds()  # the auth pods do not need the owner role
    migrations = cond(outcome, "MigrationsComplete")
    assert migrations["reason"] == "MigrationSecretMissing"
    assert (
        "Secret demo/db-owner with key DATABASE_URL not found (spec.database.migrationSecretRef)"
        in (migrations["message"])
    )
    assert cond(outcome, "Ready")["reason"] == "MigrationSecretMissing"
    put_secret(kube, "db-owner", {"DATABASE_URL": "postgresql://owner:pw@db/phoenix"})
    outcome, _ = run(kube, make_body(spec, status=outcome.status))
    (job,) = [o for (k, _, _), o in kube.objects.items() if k == "Job"]
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env[0]["valueFrom"]["secretKeyRef"] == {"name": "db-owner", "key": "DATABASE_URL"}
    assert kube.obj("Secret", "db-owner")["metadata"]["labels"] == {"auth.phoenix.dev/watched": "true"}
    assert "owner:pw" not in repr(kube.status_patches)


def test_empty_trusted_proxies_is_a_warning_condition_not_a_failure(kube):
    outcome, events = run(kube, make_body())
    proxies = cond(outcome, "TrustedProxiesConfigured")
    assert proxies["status"] == "False" and proxies["reason"] == "TrustedProxiesUnset"
    assert "spec.authService.trustedProxies" in proxies["message"]
    assert "X-Forwarded-For" in proxies["message"] and "429" in proxies["message"]
    assert [(t, r) for t, r, _ in events if r == "TrustedProxiesUnset"] == [
        ("Warning", "TrustedProxiesUnset")
    ]
    make_ready(kube)
    outcome, events = run(kube, make_body(status=outcome.status))
    assert outcome.status["phase"] == "Ready"  # advisory: never part of Ready
    assert not [r for _, r, _ in events if r == "TrustedProxiesUnset"]  # said once, on the transition
    spec = spec_with(authService={"trustedProxies": ["10.244.0.0/16"]})
    outcome, _ = run(kube, make_body(spec, generation=2, status=outcome.status))
    assert cond(outcome, "TrustedProxiesConfigured")["status"] == "True"


KEY_ENVS = ("PHOENIX_ADMIN_TOKEN", "PHOENIX_CACHE_SIGNING_KEY")


def env_refs(kube: FakeKube) -> dict[str, dict]:
    container = kube.obj("Deployment", "auth")["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("valueFrom", e.get("value")) for e in container["env"]}


def test_the_admin_token_and_signing_key_are_generated_once_and_reach_the_pods_by_reference(kube):
    outcome, events = run(kube, make_body())
    assert outcome.error is None
    secret = kube.obj("Secret", "auth-phoenix-keys")
    assert secret["metadata"]["ownerReferences"][0]["uid"] == make_body()["metadata"]["uid"]
    assert secret["metadata"]["labels"]["auth.phoenix.dev/watched"] == "true"
    values = {env: b64decode(secret["data"][env]) for env in KEY_ENVS}
    assert all(len(v.encode()) >= 32 for v in values.values())  # the service's minimum
    assert values["PHOENIX_ADMIN_TOKEN"] != values["PHOENIX_CACHE_SIGNING_KEY"]
    env = env_refs(kube)
    for name in KEY_ENVS:
        assert env[name] == {"secretKeyRef": {"name": "auth-phoenix-keys", "key": name}}
    # kept across reconciles, also by a fresh operator process (nothing cached) and after status
    make_ready(kube)
    for _ in range(3):
        outcome, more = run(kube, make_body(status=outcome.status))
        events += more
    again = kube.obj("Secret", "auth-phoenix-keys")
    assert {env: b64decode(again["data"][env]) for env in KEY_ENVS} == values
    # the values go nowhere else: ConfigMap, pod spec, status, events
    text = repr(
        [kube.obj("ConfigMap", "auth-config"), kube.obj("Deployment", "auth"), kube.status_patches, events]
    )
    for value in values.values():
        assert value not in text


def test_a_key_removed_from_the_generated_secret_is_generated_again_the_other_kept(kube):
    run(kube, make_body())
    data = kube.obj("Secret", "auth-phoenix-keys")["data"]
    token = data["PHOENIX_ADMIN_TOKEN"]
    before = kube.status_patches[-1]["configHash"]
    del data["PHOENIX_CACHE_SIGNING_KEY"]
    outcome, _ = run(kube, make_body())
    data = kube.obj("Secret", "auth-phoenix-keys")["data"]
    assert data["PHOENIX_ADMIN_TOKEN"] == token
    assert len(b64decode(data["PHOENIX_CACHE_SIGNING_KEY"])) >= 32
    assert outcome.status["configHash"] != before  # a new key rolls the pods onto it


def test_the_user_s_own_key_secrets_are_used_checked_and_watched(kube):
    token, key = "t" * 40, "k" * 48
    put_secret(kube, "admin", {"PHOENIX_ADMIN_TOKEN": token})
    put_secret(kube, "l2", {"signing": key})
    spec = spec_with(
        authService={
            "adminTokenSecretRef": {"name": "admin"},
            "cacheSigningKeySecretRef": {"name": "l2", "key": "signing"},
        }
    )
    outcome, events = run(kube, make_body(spec))
    assert outcome.error is None
    env = env_refs(kube)
    assert env["PHOENIX_ADMIN_TOKEN"] == {"secretKeyRef": {"name": "admin", "key": "PHOENIX_ADMIN_TOKEN"}}
    assert env["PHOENIX_CACHE_SIGNING_KEY"] == {"secretKeyRef": {"name": "l2", "key": "signing"}}
    assert "Secret" not in [k for (k, _, n) in kube.objects if n == "auth-phoenix-keys"]  # none needed
    for name in ("admin", "l2"):
        assert kube.obj("Secret", name)["metadata"]["labels"] == {"auth.phoenix.dev/watched": "true"}
    before = outcome.status["configHash"]
    kube.obj("Secret", "l2")["data"]["signing"] = b64("r" * 48)  # the team rotates its key
    outcome, more = run(kube, make_body(spec, status=outcome.status))
    assert outcome.status["configHash"] != before
    assert not {token, key, "r" * 48} & set(repr([kube.status_patches, events, more]).split("'"))


def test_one_own_secret_and_one_generated(kube):
    put_secret(kube, "admin", {"PHOENIX_ADMIN_TOKEN": "t" * 40})
    outcome, _ = run(kube, make_body(spec_with(authService={"adminTokenSecretRef": {"name": "admin"}})))
    assert outcome.error is None
    assert set(kube.obj("Secret", "auth-phoenix-keys")["data"]) == {"PHOENIX_CACHE_SIGNING_KEY"}
    env = env_refs(kube)
    assert env["PHOENIX_ADMIN_TOKEN"]["secretKeyRef"]["name"] == "admin"
    assert env["PHOENIX_CACHE_SIGNING_KEY"]["secretKeyRef"]["name"] == "auth-phoenix-keys"


@pytest.mark.parametrize(
    ("field", "reason"),
    [
        ("adminTokenSecretRef", "AdminTokenSecretMissing"),
        ("cacheSigningKeySecretRef", "CacheSigningKeySecretMissing"),
    ],
)
def test_a_missing_key_secret_is_reported_naming_the_field(kube, field, reason):
    outcome, _ = run(kube, make_body(spec_with(authService={field: {"name": "mine"}})))
    assert isinstance(outcome.error, TransientError)
    ready = cond(outcome, "Ready")
    assert ready["reason"] == reason
    assert "Secret demo/mine with key PHOENIX_" in ready["message"]
    assert f"(spec.authService.{field})" in ready["message"]
    assert "Deployment" not in kube.kinds()


def test_a_key_shorter_than_the_service_accepts_is_reported_without_its_value(kube):
    put_secret(kube, "admin", {"PHOENIX_ADMIN_TOKEN": "short-token"})
    outcome, _ = run(kube, make_body(spec_with(authService={"adminTokenSecretRef": {"name": "admin"}})))
    ready = cond(outcome, "Ready")
    assert ready["reason"] == "AdminTokenTooShort"
    assert "holds 11 bytes" in ready["message"] and "at least 32" in ready["message"]
    assert "short-token" not in repr(kube.status_patches)
    assert "Deployment" not in kube.kinds()


def test_a_keys_secret_the_operator_does_not_own_is_never_overwritten(kube):
    put_secret(kube, "auth-phoenix-keys", {"PHOENIX_ADMIN_TOKEN": "someone-else-" + "x" * 40})
    outcome, _ = run(kube, make_body())
    assert cond(outcome, "Ready")["reason"] == "ChildNameConflict"
    assert "adminTokenSecretRef" in cond(outcome, "Ready")["message"]
    assert b64decode(kube.obj("Secret", "auth-phoenix-keys")["data"]["PHOENIX_ADMIN_TOKEN"]).startswith(
        "someone"
    )


def test_the_admin_service_exists_unless_disabled_and_the_public_one_never_has_the_admin_port(kube):
    kube.monitoring = True
    run(kube, make_body())
    assert [p["name"] for p in kube.obj("Service", "auth")["spec"]["ports"]] == ["http"]
    assert [p["port"] for p in kube.obj("Service", "auth-admin")["spec"]["ports"]] == [3008]
    assert kube.obj("ServiceMonitor", "auth")["spec"]["endpoints"][0]["port"] == "admin"
    spec = spec_with(
        authService={"adminService": {"enabled": False}}, monitoring={"serviceMonitor": {"enabled": False}}
    )
    outcome, _ = run(kube, make_body(spec, generation=2))
    assert outcome.error is None
    assert ("Service", "auth-admin") in kube.deleted and ("Service", NS, "auth-admin") not in kube.objects
    assert ("ServiceMonitor", NS, "auth") not in kube.objects


def test_an_upgraded_managed_redis_keeps_its_password_and_the_pods_move_to_the_acl_user(kube):
    """A Secret written by the previous operator (`redis://:<pw>@…`, the default user) keeps its
    password; its URL now names the ACL user, and the auth pods' hash follows the URL (they roll)."""
    from phoenix_operator.builders.common import owner_reference
    from phoenix_operator.builders.redis import build_redis_secret

    run(kube, make_body())
    owner = kube.obj("Secret", "auth-redis-auth")["metadata"]["ownerReferences"]
    assert owner == [owner_reference(owner_of(make_body()))]
    old = build_redis_secret(owner_of(make_body()), "old-password-kept")
    old["data"]["REDIS_URL"] = b64("redis://:old-password-kept@auth-redis.demo.svc:6379/0")
    kube.put(old)
    before = kube.status_patches[-1]["configHash"]
    outcome, _ = run(kube, make_body())
    data = kube.obj("Secret", "auth-redis-auth")["data"]
    assert b64decode(data["password"]) == "old-password-kept"
    assert b64decode(data["REDIS_URL"]) == "redis://phoenix-auth:old-password-kept@auth-redis.demo.svc:6379/0"
    assert outcome.status["configHash"] != before


def owner_of(body: dict):
    from phoenix_operator.builders.common import Owner

    return Owner.from_body(body)


CA_PEM = "-----BEGIN CERTIFICATE-----\nplanted-ca-body\n-----END CERTIFICATE-----\n"


def external_tls_spec() -> dict:
    external = {"secretRef": {"name": "ext"}, "caSecretRef": {"name": "redis-ca"}}
    return spec_with(redis={"mode": "external", "external": external})


def test_external_rediss_with_its_ca_mounted_for_the_service(kube):
    put_secret(kube, "ext", {"REDIS_URL": "rediss://phoenix-auth:pw@redis.example:6380/0"})
    outcome, _ = run(kube, make_body(external_tls_spec()))
    assert cond(outcome, "RedisReady")["reason"] == "RedisCASecretMissing"
    assert (
        "Secret demo/redis-ca with key ca.crt not found (spec.redis.external.caSecretRef)"
        in (cond(outcome, "Ready")["message"])
    )
    assert "Deployment" not in kube.kinds()
    put_secret(kube, "redis-ca", {"ca.crt": CA_PEM})
    outcome, events = run(kube, make_body(external_tls_spec(), status=outcome.status))
    assert outcome.error is None
    assert cond(outcome, "RedisReady")["message"] == "using Secret ext/REDIS_URL (TLS)"
    pod = kube.obj("Deployment", "auth")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert {"name": "PHOENIX_REDIS_CA_FILE", "value": "/etc/phoenix/redis-ca/ca.crt"} in container["env"]
    assert {"name": "redis-ca", "mountPath": "/etc/phoenix/redis-ca", "readOnly": True} in container[
        "volumeMounts"
    ]
    assert {
        "name": "redis-ca",
        "secret": {"secretName": "redis-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]},
    } in pod["volumes"]
    assert (
        kube.obj("ConfigMap", "auth-config")["data"]["PHOENIX_REDIS_CA_FILE"]
        == "/etc/phoenix/redis-ca/ca.crt"
    )
    assert kube.obj("Secret", "redis-ca")["metadata"]["labels"] == {"auth.phoenix.dev/watched": "true"}
    before = outcome.status["configHash"]
    kube.obj("Secret", "redis-ca")["data"]["ca.crt"] = b64(CA_PEM.replace("planted", "renewed"))
    outcome, more = run(kube, make_body(external_tls_spec(), status=outcome.status))
    assert outcome.status["configHash"] != before  # a renewed CA rolls the pods
    assert "planted-ca-body" not in repr(
        [kube.obj("ConfigMap", "auth-config"), kube.status_patches, events, more]
    )


def test_a_ca_for_a_plain_redis_url_is_reported_not_crash_looped(kube):
    put_secret(kube, "ext", {"REDIS_URL": "redis://phoenix-auth:pw@redis.example:6379/0"})
    put_secret(kube, "redis-ca", {"ca.crt": CA_PEM})
    outcome, _ = run(kube, make_body(external_tls_spec()))
    redis = cond(outcome, "RedisReady")
    assert redis["status"] == "False" and redis["reason"] == "RedisURLNotTLS"
    assert "does not start with rediss://" in redis["message"] and "pw" not in redis["message"]
    assert cond(outcome, "Ready")["reason"] == "RedisURLNotTLS"
    assert "Deployment" not in kube.kinds()


def test_the_auth_network_policy_is_made_only_when_asked_and_removed_after(kube):
    run(kube, make_body())
    assert ("NetworkPolicy", NS, "auth") not in kube.objects  # off by default
    peer = {"podSelector": {"matchLabels": {"app": "prometheus"}}}
    on = spec_with(authService={"networkPolicy": {"enabled": True, "adminFrom": [peer]}})
    outcome, _ = run(kube, make_body(on, generation=2))
    assert outcome.error is None
    rules = kube.obj("NetworkPolicy", "auth")["spec"]["ingress"]
    assert rules[1]["from"] == [peer] and rules[1]["ports"][0]["port"] == 3008
    run(kube, make_body(generation=3))
    assert ("NetworkPolicy", NS, "auth") not in kube.objects
    assert ("NetworkPolicy", NS, "auth-redis") in kube.objects  # Redis's own policy stays


def test_independent_steps_run_at_once_and_the_first_error_in_order_is_reported():
    from phoenix_operator.reconcile.run import together

    done: list[int] = []

    async def ok(n: int, delay: float) -> int:
        await asyncio.sleep(delay)
        done.append(n)
        return n

    async def bad(message: str, delay: float) -> None:
        await asyncio.sleep(delay)
        raise TransientError(message)

    async def main() -> None:
        with pytest.raises(TransientError, match="first"):
            await together(ok(1, 0.02), bad("first", 0.03), bad("second", 0.0), ok(4, 0.01))

    asyncio.run(main())
    assert sorted(done) == [1, 4]  # an error stops no sibling


def test_a_first_reconcile_waits_on_a_few_waves_of_requests_not_one_per_child(kube):
    """With 50 ms per API request, the ~25 requests of a new PhoenixAuth's first reconcile cost
    a few round trips (reads and applies of independent children go out together)."""
    import time

    class SlowKube(FakeKube):
        calls = 0

        def _check(self, verb: str, kind: str, name: str) -> None:
            SlowKube.calls += 1
            super()._check(verb, kind, name)

    slow = SlowKube()
    slow.objects = kube.objects
    for method in ("get", "apply", "label", "patch_status", "has_resources", "list", "delete"):
        original = getattr(slow, method)

        async def delayed(*args, _original=original, **kw):
            await asyncio.sleep(0.05)
            return await _original(*args, **kw)

        setattr(slow, method, delayed)
    started = time.monotonic()
    outcome, _ = run(slow, make_body())
    elapsed = time.monotonic() - started
    assert outcome.error is None
    assert SlowKube.calls >= 20
    assert elapsed < SlowKube.calls * 0.05 / 2, f"{SlowKube.calls} requests took {elapsed:.2f} s"
