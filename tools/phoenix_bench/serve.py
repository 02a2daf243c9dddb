"""Start one server under test: `python -m phoenix_bench.serve phoenix|naive --port P`.

Both apps run with the same uvicorn settings (workers, event loop, HTTP parser, no access log),
so naive vs Phoenix and session vs no-op compare data paths, not server stacks. Settings come
from the environment (DATABASE_URL, REDIS_URL, PHOENIX_*), as in production.
"""

from __future__ import annotations

import argparse

import uvicorn

FACTORIES = {
    "phoenix": "phoenix_bench.harness:create_phoenix_app",
    "naive": "phoenix_bench.naive:create_naive_app",
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m phoenix_bench.serve")
    parser.add_argument("app", choices=sorted(FACTORIES))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    # The same uvicorn settings as phoenix_auth.server.run, for both apps.
    uvicorn.run(
        FACTORIES[args.app],
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=10,
        backlog=2048,
    )


if __name__ == "__main__":
    main()
