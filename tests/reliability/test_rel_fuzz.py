"""Property-based fuzzing of the HTTP API from its own OpenAPI document (schemathesis).

Schemathesis reads `/openapi.json` from a running `phoenix-auth serve`, generates valid and
invalid requests for every operation (bodies, headers, cookies, path parameters), and checks each
response: never a 5xx, status codes and content types as documented, bodies matching the
documented schemas, and (our own check) every 4xx a JSON object with `error` and `message`.

Bounded: `PHOENIX_FUZZ_EXAMPLES` examples per operation (default 25; ~10 operations), which
keeps the run well under a minute on 2 cores.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from reltestkit import PhoenixServer, RedisServer, base_env, make_users
from schemathesis import checks as st_checks

from phoenix_auth import openapi
from phoenix_auth.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

EXAMPLES = int(os.environ.get("PHOENIX_FUZZ_EXAMPLES", "25"))


@pytest.fixture(scope="module")
def fuzz_server(private_pg) -> Iterator[PhoenixServer]:
    database = private_pg.create_database()
    make_users(database, 3)
    redis = RedisServer()
    redis.start()
    svc = PhoenixServer(
        base_env(
            database,
            redis.url,
            PHOENIX_THROTTLE_IP_FREE_FAILURES="100000",  # reach past the throttle into the login path
            PHOENIX_ADMIN_TOKEN="fuzz-admin-" + secrets.token_hex(12),
            PHOENIX_BODY_READ_TIMEOUT="2",
        )
    )
    try:
        svc.wait_ready()
        yield svc
    finally:
        svc.stop()
        output = svc.output()
        svc.cleanup()
        redis.cleanup()
        assert '"level":"ERROR"' not in output, output[-3000:]


# The document is built without any connection (the same function serves /openapi.json); the
# first test proves the served document is this one. (schemathesis' `from_fixture` loader, which
# would fetch it lazily from the server, does not work with pytest 9.)
DOCUMENT = openapi.document(Settings())
schema = schemathesis.openapi.from_dict(DOCUMENT)


def test_the_served_document_is_the_fuzzed_one(fuzz_server: PhoenixServer):
    served = httpx.get(fuzz_server.base_url + "/openapi.json", timeout=5)
    assert served.status_code == 200
    assert served.json() == json.loads(json.dumps(DOCUMENT))


def error_body_check(ctx, response, case) -> None:
    """Every 4xx and 5xx carries JSON {"error": CODE, "message": text} and nothing else."""
    if response.status_code < 400:
        return
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error", "message"}, body
    assert isinstance(body["error"], str) and body["error"].isupper(), body
    assert isinstance(body["message"], str) and body["message"], body


CHECKS = [
    st_checks.not_a_server_error,
    st_checks.status_code_conformance,
    st_checks.content_type_conformance,
    st_checks.response_schema_conformance,
    st_checks.response_headers_conformance,
    error_body_check,
]


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_openapi_document_under_fuzzing(case, fuzz_server):
    headers = None
    if case.path.startswith("/api/auth/admin/"):
        # With the real admin token the fuzzed path parameter reaches PostgreSQL.
        headers = {"Authorization": "Bearer " + fuzz_server.env["PHOENIX_ADMIN_TOKEN"]}
    response = case.call_and_validate(
        base_url=fuzz_server.base_url, checks=CHECKS, headers=headers, timeout=10
    )
    assert response.status_code < 500
