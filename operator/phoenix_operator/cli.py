"""`phoenix-operator`: runs Kopf programmatically with the operator's settings.

    phoenix-operator --kubeconfig ~/.kube/config --namespace demo     # one or more namespaces
    phoenix-operator --kubeconfig ~/.kube/config -A                   # all namespaces

Env (PHOENIX_OPERATOR_*) gives the defaults; flags override them. Peering is on unless
--standalone: the replica with the highest priority acts, the others stand by (see settings).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import kopf

from phoenix_operator import metrics
from phoenix_operator.handlers import Handlers, register
from phoenix_operator.kube import KubeClient, load_api_client
from phoenix_operator.reconcile import Reconciler
from phoenix_operator.settings import OperatorSettings

log = logging.getLogger("phoenix_operator")


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
            "verbose": args.verbose,
        }.items()
        if v is not None
    }
    settings = OperatorSettings(**overrides)
    if not settings.all_namespaces and not settings.namespaces:
        raise SystemExit("phoenix-operator: give --namespace NS (repeatable) or -A/--all-namespaces")
    return settings


def make_registry(settings: OperatorSettings, reconciler: Reconciler) -> kopf.OperatorRegistry:
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
        settings.execution.max_workers = 8

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # A custom registry has no default login handlers: in a pod use the service account,
        # otherwise the kubeconfig (KUBECONFIG, set from --kubeconfig by main()).
        if not settings.kubeconfig:
            info = kopf.login_with_service_account(**kwargs)
            if info is not None:
                return info
        return kopf.login_with_kubeconfig(**kwargs)

    register(registry, Handlers(reconciler), resync_seconds=settings.resync_seconds)
    return registry


def post_event(body: Any, type_: str, reason: str, message: str) -> None:
    """Post a Kubernetes Event on the PhoenixAuth through Kopf's event queue."""
    try:
        kopf.event(body, type=type_, reason=reason, message=message[:1000])
    except (LookupError, RuntimeError):  # outside Kopf's context (e.g. a one-off CLI call): log only
        log.info("event %s %s: %s", type_, reason, message)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = build_settings(args)
    if settings.kubeconfig:
        # Kopf's own login reads KUBECONFIG; set it only for this process (a CLI-level choice).
        os.environ["KUBECONFIG"] = settings.kubeconfig
    kopf.configure(verbose=settings.verbose)  # Kopf's log format and handlers for every logger
    logging.getLogger().setLevel(logging.DEBUG if settings.verbose else settings.log_level)

    api_client = load_api_client(settings.kubeconfig)
    kube = KubeClient(api_client, timeout=settings.api_timeout)
    reconciler = Reconciler(kube, detect_timeout=settings.detect_timeout, emit=post_event)
    registry = make_registry(settings, reconciler)
    if settings.metrics_port:
        metrics.serve(settings.metrics_port, settings.metrics_host)

    peering: dict[str, Any] = (
        {"standalone": True}
        if settings.standalone
        else {"peering_name": settings.peering_name, "priority": settings.effective_priority}
    )
    log.info(
        "phoenix-operator starting: %s, peering %s",
        "all namespaces" if settings.all_namespaces else f"namespaces {settings.namespaces}",
        "off (standalone)"
        if settings.standalone
        else f"{settings.peering_name} priority {peering['priority']}",
    )
    kopf.run(
        registry=registry,
        clusterwide=settings.all_namespaces,
        namespaces=() if settings.all_namespaces else settings.namespaces,
        liveness_endpoint=settings.liveness_endpoint,
        **peering,
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
