"""Property-based fuzzing of the HTTP API from its own OpenAPI document (schemathesis).

Schemathesis reads `/openapi.json` from a running `phoenix-auth serve` (each listener, public
and admin port, serves its own), generates valid and invalid requests for every operation
(bodies, headers, cookies, path parameters), and checks each response: never a 5xx, status
codes and content types as documented, bodies matching the documented schemas, and (our own
check) every 4xx a JSON object with `error` and `message`.

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

from phoenix_auth.app import openapi_document
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


# The documents are built without any connection (the same function serves /openapi.json); the
# first test proves the served documents are these. (schemathesis' `from_fixture` loader, which
# would fetch them lazily from the server, does not work with pytest 9.)
DOCUMENTS = {listener: openapi_document(Settings(), listener) for listener in ("public", "admin")}
public_schema = schemathesis.openapi.from_dict(DOCUMENTS["public"])
admin_schema = schemathesis.openapi.from_dict(DOCUMENTS["admin"])


def _base_url(server: PhoenixServer, listener: str) -> str:
    return server.base_url if listener == "public" else server.admin_url


@pytest.mark.parametrize("listener", ["public", "admin"])
def test_the_served_document_is_the_fuzzed_one(fuzz_server: PhoenixServer, listener: str):
    served = httpx.get(_base_url(fuzz_server, listener) + "/openapi.json", timeout=5)
    assert served.status_code == 200
    assert served.json() == json.loads(json.dumps(DOCUMENTS[listener]))


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


FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


def _call(case, server: PhoenixServer, listener: str) -> None:
    headers = None
    if case.path.startswith("/api/auth/admin/"):
        # With the real admin token the fuzzed path parameter reaches PostgreSQL.
        headers = {"Authorization": "Bearer " + server.env["PHOENIX_ADMIN_TOKEN"]}
    response = case.call_and_validate(
        base_url=_base_url(server, listener), checks=CHECKS, headers=headers, timeout=10
    )
    assert response.status_code < 500


@public_schema.parametrize()
@FUZZ_SETTINGS
def test_api_conforms_to_its_openapi_document_under_fuzzing(case, fuzz_server):
    _call(case, fuzz_server, "public")


@admin_schema.parametrize()
@FUZZ_SETTINGS
def test_admin_api_conforms_to_its_openapi_document_under_fuzzing(case, fuzz_server):
    _call(case, fuzz_server, "admin")
