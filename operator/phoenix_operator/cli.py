"""`phoenix-operator`: runs Kopf programmatically with the operator's settings.

    phoenix-operator --kubeconfig ~/.kube/config --namespace demo     # one or more namespaces
    phoenix-operator --kubeconfig ~/.kube/config -A                   # all namespaces

Env (PHOENIX_OPERATOR_*) gives the defaults; flags override them. Peering is on unless
--standalone: the replica with the highest priority acts, the others stand by (see settings).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import aiohttp
import kopf

from phoenix_operator import metrics
from phoenix_operator.daemon import Loops, Wakeups
from phoenix_operator.handlers import WATCH_LABEL_SELECTORS, register
from phoenix_operator.kube import ApiSession, KubeClient
from phoenix_operator.reconcile import Reconciler
from phoenix_operator.settings import OperatorSettings

log = logging.getLogger("phoenix_operator")

# The operator's one API session (Kopf's watches and our requests) has a connection limit: without
# one, a burst opened a TLS connection per busy object, each holding asyncio's 256 KiB read buffer
# (~20 MB of peak RSS at 200 PhoenixAuths). Requests beyond the limit wait for a free connection.
# Watch streams hold a connection each for minutes, so the limit is the request budget plus one
# connection per watch stream.
API_REQUEST_CONNECTIONS = 24
# Kopf keeps a worker per watched object until it has had no event for this long, and the worker
# holds the last event it processed (the whole decoded body). Kopf's default is 5 s; while 1,000
# PhoenixAuths come up ~1,600 workers were alive at once.
WORKER_IDLE_SECONDS = 0.5
WATCH_STREAMS_PER_NAMESPACE = 16  # resources Kopf watches per namespace, peering included (a test holds it)


def api_connection_limit(settings: OperatorSettings) -> int:
    """aiohttp's connection limit for Kopf's session; 0 (unlimited, Kopf's default) when the
    namespaces are globs, whose number of watch streams is not known in advance."""
    if settings.all_namespaces:
        return API_REQUEST_CONNECTIONS + WATCH_STREAMS_PER_NAMESPACE
    if any(ch in ns for ns in settings.namespaces for ch in "*?[!"):
        return 0
    return API_REQUEST_CONNECTIONS + WATCH_STREAMS_PER_NAMESPACE * max(1, len(settings.namespaces))


def limited_session(info: kopf.ConnectionInfo, limit: int) -> kopf.AiohttpSession:
    """The session Kopf would build from these credentials, with at most `limit` connections
    (0: no limit)."""
    with warnings.catch_warnings():  # as Kopf does: basic auth is deprecated there, not refused
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="kopf")
        auth = info.as_aiohttp_basic_auth()
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, ssl=info.as_ssl_context()),
        headers=info.as_http_headers(),
        auth=auth,
        proxy=info.proxy_url,
        trust_env=info.trust_env,
    )
    return kopf.AiohttpSession(
        aiohttp_session=session,
        server=info.server,
        default_namespace=info.default_namespace,
        priority=info.priority,
        expiration=info.expiration,
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="phoenix-operator", description="Reconcile PhoenixAuth resources.")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then KUBECONFIG)")
    p.add_argument(
        "-n", "--namespace", action="append", dest="namespaces", help="namespace to watch (repeatable)"
    )
    p.add_argument("-A", "--all-namespaces", action="store_true", default=None, help="watch every namespace")
    p.add_argument("--priority", type=int, help="peering priority (default: derived from the hostname)")
    p.add_argument("--peering-name", help="KopfPeering/ClusterKopfPeering object name")
    p.add_argument("--standalone", action="store_true", default=None, help="no peering (single replica only)")
    p.add_argument("--liveness-port", type=int, help="Kopf liveness endpoint port (0 disables)")
    p.add_argument("--metrics-port", type=int, help="Prometheus metrics port (0 disables)")
    p.add_argument("--resync-seconds", type=float, help="slow re-reconcile interval")
    p.add_argument(
        "--allowed-image-prefix",
        action="append",
        dest="allowed_image_prefixes",
        help="an image prefix PhoenixAuths may run (repeatable; '*' allows any; "
        "default: the project's own repository path)",
    )
    p.add_argument("-v", "--verbose", action="store_true", default=None)
    return p.parse_args(argv)


def build_settings(args: argparse.Namespace) -> OperatorSettings:
    overrides: dict[str, Any] = {
        k: v
        for k, v in {
            "kubeconfig": args.kubeconfig,
            "namespaces": args.namespaces,
            "all_namespaces": args.all_namespaces,
            "priority": args.priority,
            "peering_name": args.peering_name,
            "standalone": args.standalone,
            "liveness_port": args.liveness_port,
            "metrics_port": args.metrics_port,
            "resync_seconds": args.resync_seconds,
            "allowed_image_prefixes": args.allowed_image_prefixes,
            "verbose": args.verbose,
        }.items()
        if v is not None
    }
    settings = OperatorSettings(**overrides)
    if not settings.all_namespaces and not settings.namespaces:
        raise SystemExit("phoenix-operator: give --namespace NS (repeatable) or -A/--all-namespaces")
    return settings


def make_registry(settings: OperatorSettings, loops: Loops, api: ApiSession) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        # Kopf's per-object log lines become Events only from WARNING up; our own transition
        # Events are posted explicitly (post_event), so `kubectl describe` stays readable.
        settings.posting.level = logging.WARNING
        settings.persistence.finalizer = "auth.phoenix.dev/kopf-finalizer"
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        settings.watching.connect_timeout = 30
        settings.networking.request_timeout = 60
        settings.queueing.idle_timeout = WORKER_IDLE_SECONDS
        for resource, selector in WATCH_LABEL_SELECTORS.items():  # server-side: nothing else arrives
            settings.watching.label_selectors[resource] = selector

    @kopf.on.login(registry=registry)
    async def login(**kwargs: Any) -> kopf.AiohttpSession | None:
        # A custom registry has no default login handlers: in a pod use the service account,
        # otherwise the kubeconfig (KUBECONFIG, set from --kubeconfig by main()). The session is
        # made here, inside Kopf's event loop, and serves Kopf and the reconciles alike; Kopf
        # closes it when it logs in again, and the reconciles then take the new one.
        info = None if settings.kubeconfig else kopf.login_with_service_account(**kwargs)
        if info is None:
            info = kopf.login_with_kubeconfig(**kwargs)
        if info is None:
            return None
        session = limited_session(info, api_connection_limit(settings))
        api.set(session.aiohttp_session, str(info.server))
        return session

    register(registry, loops)
    return registry


def post_event(body: Any, type_: str, reason: str, message: str) -> None:
    """Post a Kubernetes Event on the PhoenixAuth through Kopf's event queue."""
    try:
        kopf.event(body, type=type_, reason=reason, message=message[:1000])
    except (LookupError, RuntimeError):  # outside Kopf's context (e.g. a one-off CLI call): log only
        log.info("event %s %s: %s", type_, reason, message)


async def run_operator(**kopf_kwargs: Any) -> int:
    """Run Kopf until SIGTERM/SIGINT, then stop at once rather than after Kopf's graceful wait.

    On a signal Kopf stops its root tasks, then waits a hard-coded 5 s for handler tasks to finish
    before cancelling them. Our handlers are level-based and idempotent (a replica killed
    mid-reconcile converges after a restart), so that wait buys nothing; it only delays the
    hand-over. Once Kopf is ready we take over the two signals and cancel the operator instead:
    its peering keep-alive still removes this replica's peering record on the way out (shielded
    in Kopf), so a standby resumes at once instead of waiting for the record to expire.
    A signal during startup still goes to Kopf's own (graceful) handling.
    """
    loop = asyncio.get_running_loop()
    ready = asyncio.Event()
    task = asyncio.create_task(kopf.operator(ready_flag=ready, **kopf_kwargs), name="kopf operator")
    signalled: list[signal.Signals] = []

    def on_signal(signum: signal.Signals) -> None:
        if not signalled:
            log.info("%s received: stopping the operator now", signum.name)
            signalled.append(signum)
            task.cancel()

    ready_wait = asyncio.create_task(ready.wait())
    await asyncio.wait({task, ready_wait}, return_when=asyncio.FIRST_COMPLETED)
    ready_wait.cancel()
    if not task.done():
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)
    try:
        await task
    except asyncio.CancelledError:
        if not signalled:
            raise  # cancelled from outside, not by our signal handler
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    log.info("phoenix-operator stopped")
    return 0


class QuietWakers(logging.Filter):
    """Drop Kopf's "Handler 'wake-on-…' succeeded." lines: one per watch event of every child
    and watched Secret (99.9 % of the log at 200 PhoenixAuths: ~38 lines per PhoenixAuth while it
    comes up, ~27,000 at 1,000), each formatted and written by the one event loop that also
    serves the watches. A waker only sets a flag; its failures and everything else still log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.levelno == logging.INFO
            and isinstance(record.msg, str)
            and record.msg.startswith("Handler 'wake-on-")
            and record.msg.endswith("' succeeded.")
        )


def configure_logging(settings: OperatorSettings) -> None:
    kopf.configure(verbose=settings.verbose)  # Kopf's log format and handlers for every logger
    logging.getLogger().setLevel(logging.DEBUG if settings.verbose else settings.log_level)
    objects = logging.getLogger("kopf.objects")
    quiet = [f for f in objects.filters if isinstance(f, QuietWakers)]
    if settings.verbose:
        for f in quiet:
            objects.removeFilter(f)
    elif not quiet:
        objects.addFilter(QuietWakers())


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = build_settings(args)
    if settings.kubeconfig:
        # Kopf's own login reads KUBECONFIG; set it only for this process (a CLI-level choice).
        os.environ["KUBECONFIG"] = settings.kubeconfig
    configure_logging(settings)

    api = ApiSession()
    reconciler = Reconciler(
        KubeClient(api, timeout=settings.api_timeout),
        detect_timeout=settings.detect_timeout,
        emit=post_event,
        allowed_images=settings.allowed_image_prefixes,
    )
    loops = Loops(
        reconciler,
        Wakeups(),
        resync_seconds=settings.resync_seconds,
        concurrency=settings.reconcile_concurrency,
    )
    registry = make_registry(settings, loops, api)
    if settings.metrics_port:
        metrics.serve(settings.metrics_port, settings.metrics_host)

    peering: dict[str, Any] = (
        {"standalone": True}
        if settings.standalone
        else {"peering_name": settings.peering_name, "priority": settings.effective_priority}
    )
    log.info(
        "phoenix-operator starting: %s, peering %s, images allowed under %s",
        "all namespaces" if settings.all_namespaces else f"namespaces {settings.namespaces}",
        "off (standalone)"
        if settings.standalone
        else f"{settings.peering_name} priority {peering['priority']}",
        ", ".join(settings.allowed_image_prefixes),
    )
    exit_code = asyncio.run(
        run_operator(
            registry=registry,
            clusterwide=settings.all_namespaces,
            namespaces=() if settings.all_namespaces else settings.namespaces,
            liveness_endpoint=settings.liveness_endpoint,
            **peering,
        )
    )
    return exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
