"""Run the service under uvicorn (uvloop + httptools) with `settings.workers` worker processes.

With one worker the app is built here from the given settings. With several, uvicorn spawns
processes that import the factory `phoenix_auth.app:app_from_env`, so each worker builds its one
Settings from the same environment (the CLI builds its Settings from the environment too).

Metrics across workers: if `PROMETHEUS_MULTIPROC_DIR` is unset and `workers > 1`, a fresh
temporary directory is created, exported to the workers (prometheus-client reads it at import)
and removed on exit; a scrape of any worker then reports all of them.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import uvicorn

from .settings import Settings

FACTORY = "phoenix_auth.app:app_from_env"


def run(settings: Settings) -> None:
    """Serve until interrupted (blocks)."""
    created_dir: str | None = None
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        created_dir = tempfile.mkdtemp(prefix="phoenix-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = created_dir
    common = {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        "http": "httptools",
        "lifespan": "on",
        "access_log": False,
        "log_config": None,
        "proxy_headers": False,  # X-Forwarded-For is honoured only from PHOENIX_TRUSTED_PROXIES (throttle.py)
        "server_header": False,
        "timeout_keep_alive": 5,
        "timeout_graceful_shutdown": 10,
        "backlog": 2048,
    }
    try:
        if settings.workers > 1:
            uvicorn.run(FACTORY, factory=True, workers=settings.workers, **common)
        else:
            from .app import create_app

            uvicorn.run(create_app(settings), **common)
    finally:
        if created_dir:
            shutil.rmtree(created_dir, ignore_errors=True)
