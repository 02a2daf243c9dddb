"""Start one server under test: `python -m phoenix_bench.serve phoenix|naive`.

Both apps run under the service's own `phoenix_auth.server.run` (workers, event loop, HTTP
parser, no access log, the public and the admin listener), each with its own app factory, so
naive vs Phoenix and session vs no-op compare data paths, not server stacks. Settings come from
the environment (DATABASE_URL, REDIS_URL, PHOENIX_PORT, PHOENIX_ADMIN_PORT, PHOENIX_WORKERS, ...),
as in production; `servers.start_app` sets them.
"""

from __future__ import annotations

import argparse
import sys

FACTORIES = {
    "phoenix": "phoenix_bench.harness:create_phoenix_app",
    "naive": "phoenix_bench.naive:create_naive_app",
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m phoenix_bench.serve", description=__doc__)
    parser.add_argument("app", choices=sorted(FACTORIES))
    args = parser.parse_args(argv)
    from pydantic import ValidationError

    from phoenix_auth import server
    from phoenix_auth.cli import format_settings_error
    from phoenix_auth.settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"phoenix_bench.serve: {format_settings_error(exc)}", file=sys.stderr)
        raise SystemExit(server.STARTUP_FAILURE) from None
    server.run(settings, factory=FACTORIES[args.app])


if __name__ == "__main__":
    main()
