"""CLI → settings (flags override env), peering priority, and the handlers Kopf will run."""

from __future__ import annotations

import inspect
import logging

import kopf
import pytest
from kopf._cogs.structs.references import Selector

from phoenix_operator.cli import (
    WATCH_STREAMS_PER_NAMESPACE,
    api_connection_limit,
    build_settings,
    configure_logging,
    limited_session,
    make_registry,
    parse_args,
)
from phoenix_operator.daemon import Loops, Wakeups
from phoenix_operator.kube import ApiSession
from phoenix_operator.reconcile import Reconciler
from phoenix_operator.settings import OperatorSettings, hostname_priority


def test_flags_override_env(monkeypatch):
    monkeypatch.setenv("PHOENIX_OPERATOR_NAMESPACES", "a,b")
    monkeypatch.setenv("PHOENIX_OPERATOR_METRICS_PORT", "9000")
    s = build_settings(parse_args(["--metrics-port", "9100"]))
    assert s.namespaces == ["a", "b"] and s.metrics_port == 9100
    s = build_settings(parse_args(["-n", "x", "-n", "y", "--priority", "7", "--kubeconfig", "/k"]))
    assert s.namespaces == ["x", "y"] and s.effective_priority == 7 and s.kubeconfig == "/k"


def test_namespace_or_all_is_required(monkeypatch):
    monkeypatch.delenv("PHOENIX_OPERATOR_NAMESPACES", raising=False)
    with pytest.raises(SystemExit, match="--namespace"):
        build_settings(parse_args([]))
    assert build_settings(parse_args(["-A"])).all_namespaces


def test_priority_is_distinct_per_pod_name_and_stable():
    a, b = hostname_priority("phoenix-operator-7d9f-abcde"), hostname_priority("phoenix-operator-7d9f-fghij")
    assert a != b and a == hostname_priority("phoenix-operator-7d9f-abcde")
    assert 1 <= a < 2**30


def test_liveness_endpoint_from_settings():
    assert OperatorSettings(liveness_port=8080).liveness_endpoint == "http://0.0.0.0:8080/healthz"
    assert OperatorSettings(liveness_port=0).liveness_endpoint is None


def registry_for(settings: OperatorSettings):
    loops = Loops(Reconciler(kube=None), Wakeups(), resync_seconds=60)  # type: ignore[arg-type]
    return make_registry(settings, loops, ApiSession())


def test_registry_has_one_reconcile_path_indexes_and_wakers():
    registry = registry_for(OperatorSettings(namespaces=["demo"], resync_seconds=60))
    ids = set()
    for resource_registry in (registry._changing, registry._watching, registry._spawning, registry._indexing):
        for handler in resource_registry.get_all_handlers():
            ids.add(handler.id)
    changing = {h.id for h in registry._changing.get_all_handlers()}
    spawning = {h.id for h in registry._spawning.get_all_handlers()}
    assert spawning == {"reconcile"} and changing == set()  # the daemon is the one reconcile path
    assert {"children", "secrets", "secret_refs"} <= ids  # Kopf indexes, no cache of ours
    assert {
        "wake-on-deployments",
        "wake-on-services",
        "wake-on-jobs",
        "wake-on-secret",
        "wake-on-spec",
    } <= ids
    assert not any("delete" in i for i in ids)  # no on.delete → no finalizer blocks deletion
    # Every handler is a coroutine: Kopf would run a sync one in its thread pool.
    for resource_registry in (registry._changing, registry._watching, registry._spawning, registry._indexing):
        for handler in resource_registry.get_all_handlers():
            assert inspect.iscoroutinefunction(handler.fn), handler.id


def test_api_connection_limit_leaves_room_for_every_watch_stream():
    settings = OperatorSettings(namespaces=["demo"], resync_seconds=60)
    registry = registry_for(settings)
    resources = set()
    for resource_registry in (registry._changing, registry._watching, registry._spawning, registry._indexing):
        for handler in resource_registry.get_all_handlers():
            resources.add(handler.selector)
    # one stream per watched resource and namespace, plus peering's own
    assert len(resources) + 1 <= WATCH_STREAMS_PER_NAMESPACE
    one = api_connection_limit(settings)
    three = api_connection_limit(OperatorSettings(namespaces=["a", "b", "c"]))
    assert one - WATCH_STREAMS_PER_NAMESPACE >= 16  # room left for requests
    assert three - one == 2 * WATCH_STREAMS_PER_NAMESPACE
    assert api_connection_limit(OperatorSettings(all_namespaces=True)) == one
    assert (
        api_connection_limit(OperatorSettings(namespaces=["team-*"])) == 0
    )  # globs: Kopf's unlimited default


async def test_limited_session_keeps_kopf_credentials_and_caps_connections():
    info = kopf.ConnectionInfo(server="https://127.0.0.1:6443", token="t0ken", default_namespace="demo")
    ctx = limited_session(info, 40)
    try:
        assert ctx.server == "https://127.0.0.1:6443" and ctx.default_namespace == "demo"
        assert ctx.aiohttp_session.connector is not None and ctx.aiohttp_session.connector.limit == 40
        assert ctx.aiohttp_session.headers["Authorization"] == "Bearer t0ken"
    finally:
        await ctx.aiohttp_session.close()


def test_allowed_image_prefixes_from_flags_or_env_default_to_the_project(monkeypatch):
    monkeypatch.delenv("PHOENIX_OPERATOR_ALLOWED_IMAGE_PREFIXES", raising=False)
    assert build_settings(parse_args(["-A"])).allowed_image_prefixes == ["ghcr.io/phoenix-dev/"]
    s = build_settings(parse_args(["-A", "--allowed-image-prefix=reg.example/a", "--allowed-image-prefix=*"]))
    assert s.allowed_image_prefixes == ["reg.example/a", "*"]
    monkeypatch.setenv("PHOENIX_OPERATOR_ALLOWED_IMAGE_PREFIXES", "reg.example/a/, reg.example/b/")
    assert build_settings(parse_args(["-A"])).allowed_image_prefixes == ["reg.example/a/", "reg.example/b/"]
    with pytest.raises(ValueError, match="allowed image prefix"):
        OperatorSettings(allowed_image_prefixes=["reg.example/a b"])


def test_kopf_watches_only_labelled_secrets_server_side():
    """The start-up handler sets Kopf's server-side label selector for Secrets: the watch's list and
    stream carry `labelSelector=auth.phoenix.dev/watched=true`, so no other Secret reaches the process."""
    registry = registry_for(OperatorSettings(namespaces=["demo"]))
    kopf_settings = kopf.OperatorSettings()
    (configure,) = [h for h in registry._activities.get_all_handlers() if h.fn.__name__ == "configure"]
    configure.fn(settings=kopf_settings)
    selectors = dict(kopf_settings.watching.label_selectors.items())
    assert selectors == {Selector("", "v1", "secrets"): "auth.phoenix.dev/watched=true"}
    (secret_handler,) = [h for h in registry._watching.get_all_handlers() if h.id == "wake-on-secret"]
    assert secret_handler.labels == {"auth.phoenix.dev/watched": "true"}
    (secret_index,) = [h for h in registry._indexing.get_all_handlers() if h.id == "secrets"]
    assert secret_index.labels == {"auth.phoenix.dev/watched": "true"}


def test_an_idle_object_worker_lets_go_of_its_last_event_within_a_second():
    """Kopf's per-object worker holds the last decoded event until it has idled this long (Kopf's
    default 5 s kept ~1,600 of them alive while 1,000 PhoenixAuths came up; 0.5 s: 8 MB less)."""
    registry = registry_for(OperatorSettings(namespaces=["demo"]))
    kopf_settings = kopf.OperatorSettings()
    assert kopf_settings.queueing.idle_timeout == 5.0
    (configure,) = [h for h in registry._activities.get_all_handlers() if h.fn.__name__ == "configure"]
    configure.fn(settings=kopf_settings)
    assert kopf_settings.queueing.idle_timeout <= 1.0


def test_the_log_has_no_line_per_waker_event_but_keeps_everything_else(caplog):
    """Kopf logs "Handler 'wake-on-…' succeeded." for every child and Secret event (~27,000 lines
    while 1,000 PhoenixAuths come up): dropped; a waker's failure, the reconcile daemon's lines
    and everything with --verbose still reach the log."""
    objects = logging.getLogger("kopf.objects")
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        configure_logging(build_settings(parse_args(["-n", "x"])))
        configure_logging(build_settings(parse_args(["-n", "x"])))  # idempotent: one filter
        with caplog.at_level(logging.INFO):
            objects.info("Handler 'wake-on-services' succeeded.")
            objects.info("Handler 'reconcile' succeeded.")
            objects.error("Handler 'wake-on-services' failed with an exception. Will retry.")
        seen = [r.getMessage() for r in caplog.records if r.name == "kopf.objects"]
        assert seen == [
            "Handler 'reconcile' succeeded.",
            "Handler 'wake-on-services' failed with an exception. Will retry.",
        ]
        caplog.clear()
        configure_logging(build_settings(parse_args(["-n", "x", "--verbose"])))
        with caplog.at_level(logging.INFO):
            objects.info("Handler 'wake-on-services' succeeded.")
        assert [r.getMessage() for r in caplog.records if r.name == "kopf.objects"] == [
            "Handler 'wake-on-services' succeeded."
        ]
    finally:
        for f in list(objects.filters):
            objects.removeFilter(f)
        root.handlers[:] = handlers
        root.setLevel(level)
