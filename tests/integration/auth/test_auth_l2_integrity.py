"""L2 integrity: someone who can write to Redis cannot log in as anyone or change a role.

Every value the service reads from Redis (sessions `phoenix:c:s:*`, users `phoenix:c:u:*`) is
sealed with an HMAC over key and value (signing.py). A forged, altered or moved value is refused,
counted in `phoenix_cache_l2_rejected_total`, and the lookup goes to PostgreSQL, which decides.
The forgeries are written at the current keys and at the unsealed keys of earlier versions
(`phoenix:s:*`, `phoenix:u:*`), so these tests fail on a service that trusts either.
Without PHOENIX_CACHE_SIGNING_KEY the service caches nothing in Redis (throttling only); with
rediss:// it talks TLS to a real redis-server and verifies its certificate.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from authtestkit import free_port, running_app, scrape

pytestmark = pytest.mark.integration

LOGIN = "/api/auth/phoenix"
SESSION = "/api/auth/session"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _hex(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _random_token() -> str:
    return secrets.token_urlsafe(32)  # well-formed, never issued


async def _login(client, user) -> str:
    r = await client.post(LOGIN, json={"email": user.email, "password": user.password})
    assert r.status_code == 200, r.text
    client.cookies.clear()
    return r.json()["session"]["sessionId"]


async def _l2_in_use(app) -> None:
    for _ in range(100):  # the sweep after the listener connects must have finished
        if app.resources.cache.use_l2:
            return
        await asyncio.sleep(0.05)
    pytest.fail("L2 never came into use")


def _rejected(text: str, kind: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith("phoenix_cache_l2_rejected_total{") and f'kind="{kind}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_a_forged_session_record_never_authenticates(make_settings, make_user, private_redis):
    """`SET phoenix:…s:<sha256(T)>` naming a victim must not make T a session of the victim."""
    settings = make_settings(REDIS_URL=private_redis.url, l1_max_entries=0)  # every check reads L2
    r = redis.Redis.from_url(private_redis.url)
    async with running_app(settings) as (app, client):
        await _l2_in_use(app)
        victim = make_user(role="admin")
        now = time.time()
        forged = json.dumps([victim.id, now + 3600, 0, now]).encode()
        attacker = _random_token()
        keys = [f"phoenix:s:{_hex(attacker)}", f"phoenix:c:s:{_hex(attacker)}"]
        for key in keys:
            r.set(key, forged, ex=600)
        resp = await client.get(SESSION, headers=_bearer(attacker))
        assert resp.status_code == 401 and resp.json()["error"] == "INVALID_SESSION", resp.text
        assert _rejected(await scrape(app), "session") == 1
        assert r.exists(keys[1]) == 0  # the refused value is deleted
        # A value that looks sealed (version tag, 32 bytes of MAC) but is not: refused as well.
        r.set(keys[1], b"P1" + os.urandom(32) + b"%d|" % (now + 600) + forged, ex=600)
        resp = await client.get(SESSION, headers=_bearer(attacker))
        assert resp.status_code == 401
        assert _rejected(await scrape(app), "session") == 2
        health = (await client.get("/api/phoenix/health")).json()
        assert health["cache"]["metrics"]["l2Rejected"] == 2
    r.close()


async def test_an_altered_user_record_cannot_raise_a_role(make_settings, make_user, private_redis):
    settings = make_settings(REDIS_URL=private_redis.url, l1_max_entries=0)
    r = redis.Redis.from_url(private_redis.url)
    async with running_app(settings) as (app, client):
        await _l2_in_use(app)
        user = make_user(role="user")
        token = await _login(client, user)
        assert (await client.get(SESSION, headers=_bearer(token))).json()["user"]["role"] == "user"
        ok = await client.get(SESSION, headers=_bearer(token))  # session and user both from L2
        assert ok.json()["performance"]["cacheHits"] == 2
        altered = 0
        for key in (f"phoenix:c:u:{user.id}", f"phoenix:u:{user.id}"):  # now, and earlier versions
            value = r.get(key)
            if value is not None and b'"user"' in value:
                r.set(key, value.replace(b'"user"', b'"admin"'), keepttl=True)
                altered += 1
        assert altered == 1
        resp = await client.get(SESSION, headers=_bearer(token))
        assert resp.status_code == 200
        assert resp.json()["user"]["role"] == "user"  # from PostgreSQL
        assert resp.json()["performance"]["cacheHits"] == 1  # only the session came from Redis
        assert _rejected(await scrape(app), "user") == 1
    r.close()


async def test_a_genuine_session_value_moved_to_another_key_is_refused(
    make_settings, make_user, private_redis
):
    """Reading a victim's sealed value and writing it under the hash of a token the attacker
    chose does not work: the MAC covers the key."""
    settings = make_settings(REDIS_URL=private_redis.url, l1_max_entries=0)
    r = redis.Redis.from_url(private_redis.url)
    async with running_app(settings) as (app, client):
        await _l2_in_use(app)
        victim = make_user()
        token = await _login(client, victim)
        assert (await client.get(SESSION, headers=_bearer(token))).status_code == 200
        attacker = _random_token()
        copied = 0
        for prefix in ("phoenix:c:s:", "phoenix:s:"):  # now, and earlier versions
            value = r.get(prefix + _hex(token))
            if value is not None:
                r.set(prefix + _hex(attacker), value, ex=600)
                copied += 1
        assert copied == 1
        resp = await client.get(SESSION, headers=_bearer(attacker))
        assert resp.status_code == 401 and resp.json()["error"] == "INVALID_SESSION"
        assert _rejected(await scrape(app), "session") == 1
        assert (await client.get(SESSION, headers=_bearer(token))).status_code == 200  # the victim's own
    r.close()


async def test_without_a_signing_key_redis_holds_only_throttle_counters(
    make_settings, make_user, private_redis, caplog
):
    settings = make_settings(REDIS_URL=private_redis.url, cache_signing_key=None, l1_max_entries=0)
    r = redis.Redis.from_url(private_redis.url)
    with caplog.at_level(logging.WARNING, logger="phoenix_auth.app"):
        async with running_app(settings) as (_, client):
            assert any("PHOENIX_CACHE_SIGNING_KEY is not set" in m for m in caplog.messages)
            health = (await client.get("/api/phoenix/health")).json()
            assert health["status"] == "healthy"  # a choice, not a fault
            stats = health["cache"]["stats"]
            assert stats["l2Enabled"] is False
            assert stats["l2DisabledReason"] == "PHOENIX_CACHE_SIGNING_KEY is not set"
            user = make_user()
            token = await _login(client, user)
            for _ in range(3):
                resp = await client.get(SESSION, headers=_bearer(token))
                assert resp.status_code == 200 and resp.json()["performance"]["cacheHits"] == 0
            assert (await client.post(LOGIN, json={"email": user.email, "password": "no"})).status_code == 401
            keys = {k.decode() for k in r.scan_iter(count=1000)}
            assert keys and all(k.startswith("phoenix:t:") for k in keys), keys  # throttle state only
            attacker = _random_token()
            now = time.time()
            for key in (f"phoenix:s:{_hex(attacker)}", f"phoenix:c:s:{_hex(attacker)}"):
                r.set(key, json.dumps([user.id, now + 3600, 0, now]), ex=600)
            assert (await client.get(SESSION, headers=_bearer(attacker))).status_code == 401
    r.close()


# --------------------------------------------------------------------------- TLS to a real redis-server
def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


class TlsRedis:
    """A redis-server that speaks only TLS (`--port 0 --tls-port`), with a CA and a server
    certificate (SAN IP:127.0.0.1) made by openssl for this test."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = free_port()
        self.ca = directory / "ca.pem"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"rediss://127.0.0.1:{self.port}/0"

    def _certificates(self) -> None:
        ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
        _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
                 "-subj", "/CN=phoenix test CA", "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=self.dir)  # fmt: skip
        _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1",
                 cwd=self.dir)  # fmt: skip
        (self.dir / "server.ext").write_text(
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
            "authorityKeyIdentifier=keyid\n"
        )
        _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext",
                 cwd=self.dir)  # fmt: skip

    def __enter__(self) -> TlsRedis:
        if shutil.which("openssl") is None:
            pytest.skip("openssl not installed")
        self._certificates()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1",
             "--tls-cert-file", "server.pem", "--tls-key-file", "server.key",
             "--tls-ca-cert-file", "ca.pem", "--tls-auth-clients", "no",
             "--save", "", "--appendonly", "no", "--dir", str(self.dir)],
            cwd=self.dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode(errors="replace") if self.proc.stdout else ""
                if "TLS" in out and "not" in out.lower() and not os.environ.get("CI"):
                    pytest.skip(f"this redis-server has no TLS support: {out[-300:]}")
                raise RuntimeError(f"TLS redis-server exited: {out[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return self
            time.sleep(0.05)
        raise RuntimeError("TLS redis-server did not start")

    def __exit__(self, *exc_info: object) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def tls_redis(tmp_path) -> Iterator[TlsRedis]:
    with TlsRedis(tmp_path) as server:
        yield server


async def test_rediss_verifies_the_server_with_the_ca_file_and_caches_over_tls(
    make_settings, make_user, tls_redis
):
    settings = make_settings(REDIS_URL=tls_redis.url, redis_ca_file=str(tls_redis.ca), l1_max_entries=0)
    async with running_app(settings) as (app, client):
        await _l2_in_use(app)
        user = make_user()
        token = await _login(client, user)
        assert (await client.get(SESSION, headers=_bearer(token))).status_code == 200
        resp = await client.get(SESSION, headers=_bearer(token))
        assert resp.json()["performance"]["cacheHits"] == 2  # session and user read over TLS
        health = (await client.get("/api/phoenix/health")).json()
        assert health["cache"]["stats"]["redis"] == {"configured": True, "healthy": True}
    # The same server without its CA (the system's trusted CAs): the certificate does not verify,
    # so Redis is unusable and the service carries on from PostgreSQL, reporting it.
    settings = make_settings(REDIS_URL=tls_redis.url, l1_max_entries=0)
    async with running_app(settings) as (app, client):
        token = await _login(client, user)
        resp = await client.get(SESSION, headers=_bearer(token))
        assert resp.status_code == 200 and resp.json()["performance"]["cacheHits"] == 0
        health = (await client.get("/api/phoenix/health")).json()
        assert health["status"] == "degraded"
        assert health["cache"]["stats"]["redis"] == {"configured": True, "healthy": False}
