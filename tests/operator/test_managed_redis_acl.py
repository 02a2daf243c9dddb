"""The managed Redis as the operator starts it (its exact `sh -c` command, on a free local port):
the `default` user is off, the auth pods' ACL user `phoenix-auth` reaches Phoenix's keys with the
service's commands only, and the password is in no process argument.

The rule is the auth service's own (`phoenix_auth.redislink.acl_rule()`, which
tests/integration/auth/test_auth_redis_acl.py runs the whole service under); the operator keeps a
copy because its image does not carry the auth service, and the first test holds the two equal.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from phoenix_operator.builders.redis import ACL_USER, REDIS_PORT, SERVICE_ACL_RULE, redis_command, redis_url
from phoenix_operator.spec import ManagedRedis
from phoenix_testkit.ports import free_port

NO_RETRY = {"retry": Retry(NoBackoff(), 0)}  # a refused AUTH is the answer, not a hiccup to retry
PASSWORD = "planted-redis-password-" + "q" * 24


def test_the_operator_s_acl_rule_is_the_auth_service_s() -> None:
    from phoenix_auth.redislink import acl_rule

    assert acl_rule() == SERVICE_ACL_RULE


@pytest.fixture()
def managed_redis(tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (scripts/install-deps.sh)")
    port = free_port()
    script = redis_command(ManagedRedis())[-1]
    script = script.replace(f"--port {REDIS_PORT}", f"--port {port} --bind 127.0.0.1")
    script = script.replace("--dir /data", f"--dir {tmp_path}")
    proc = subprocess.Popen(
        ["sh", "-c", script],
        env={**os.environ, "REDIS_PASSWORD": PASSWORD},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # redis-server runs in a pipeline's subshell: end the whole group
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis(port=port, username=ACL_USER, password=PASSWORD).ping()
            break
        except redis.ConnectionError as exc:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"redis-server did not start: {proc.stderr.read() if proc.stderr else ''}"
                ) from exc
            time.sleep(0.05)
    try:
        yield port, proc
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_only_the_phoenix_auth_user_gets_in_and_only_to_phoenix_s_keys(managed_redis) -> None:
    port, _proc = managed_redis
    anonymous = redis.Redis(port=port, **NO_RETRY)
    with pytest.raises(redis.AuthenticationError):  # NOAUTH: the default user is off
        anonymous.get("phoenix:c:u:1")
    for password in ("", PASSWORD):
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port, username="default", password=password, **NO_RETRY).ping()
    service = redis.Redis(port=port, username=ACL_USER, password=PASSWORD, **NO_RETRY)
    service.set("phoenix:c:s:abc", "v", ex=60)
    assert service.get("phoenix:c:s:abc") == b"v"
    assert service.incr("phoenix:t:ip:1") == 1
    for command in (
        ("GET", "other:key"),  # a key outside phoenix:*
        ("SET", "other:key", "x"),
        ("FLUSHALL",),
        ("CONFIG", "SET", "maxmemory", "1"),
        ("KEYS", "*"),
        ("EVAL", "return 1", "0"),  # arbitrary Lua
        ("ACL", "LIST"),
        ("PUBLISH", "x", "y"),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            service.execute_command(*command)
    # The password came through stdin: it is in no argument of the running server.
    cmdlines = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert PASSWORD not in cmdlines


def test_the_url_the_auth_pods_get_names_the_acl_user() -> None:
    from phoenix_operator.builders.common import Owner

    url = redis_url(Owner(name="auth", namespace="demo", uid="u"), "pw")
    assert url == "redis://phoenix-auth:pw@auth-redis.demo.svc:6379/0"
