"""Unit tests of the pure parts: backoff schedule, L1 cache, redaction, records."""

from __future__ import annotations

import json
import logging
import time

import pytest

from phoenix_auth.cache import L1Cache
from phoenix_auth.errors import InvalidEmail, InvalidFieldType, MissingField, PasswordTooLong
from phoenix_auth.login import parse_credentials
from phoenix_auth.logs import JsonFormatter, redact
from phoenix_auth.records import SessionRecord, UserRecord
from phoenix_auth.settings import Settings
from phoenix_auth.throttle import Keys, Policy, Reservation, Throttle


def _settings(**kw) -> Settings:
    return Settings(DATABASE_URL="postgresql://u:p@127.0.0.1:1/x", REDIS_URL="", **kw)


def test_backoff_doubles_and_caps_and_locks_out_before_100():
    s = _settings(
        throttle_free_failures=5, throttle_lockout_failures=20, throttle_base_delay=1, throttle_max_delay=60
    )
    p = Policy.from_settings(s)
    assert [p.account_lock_ms(n) / 1000 for n in (1, 5, 6, 7, 8, 12)] == [0, 0, 1, 2, 4, 60]
    assert p.account_lock_ms(20) == 60_000
    t = Throttle(s, redis=None)  # type: ignore[arg-type]
    keys = Keys.of("a@b.c", "192.0.2.1")

    def seen(account: int) -> Reservation:  # `account` failures before this attempt
        return Reservation(keys, account + 1, 1, True, 0.0, local=True)

    assert t.risk(seen(0)) == 0
    assert t.risk(seen(10)) == 0.5
    assert t.risk(seen(1000)) == 1.0


def test_settings_reject_lockout_at_or_above_100():
    with pytest.raises(ValueError):
        _settings(throttle_lockout_failures=100)


def test_l1_cache_ttl_and_lru():
    c = L1Cache(2)
    c.set("a", 1, 60)
    c.set("b", 2, 60)
    assert c.get("a") == 1  # a is now most recent
    c.set("c", 3, 60)
    assert c.get("b") is None and c.get("a") == 1 and c.get("c") == 3
    c.set("d", 4, 0.01)
    time.sleep(0.02)
    assert c.get("d") is None
    assert len(L1Cache(0)) == 0


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({}, MissingField),
        ({"email": "a@b.c"}, MissingField),
        ({"email": "  ", "password": "x"}, MissingField),
        ({"email": 1, "password": "x"}, InvalidFieldType),
        ({"email": "a@b.c", "password": "x" * 2000}, PasswordTooLong),
        ({"email": "a" * 250 + "@b.cd", "password": "x"}, InvalidEmail),
        ({"email": "a b@c.d", "password": "x"}, InvalidEmail),
    ],
)
def test_parse_credentials_errors(body, error):
    with pytest.raises(error):
        parse_credentials(body, _settings())


def test_parse_credentials_normalises_email():
    creds = parse_credentials({"email": "  Ada@Example.COM ", "password": "pw"}, _settings())
    assert creds.email == "ada@example.com" and creds.password == "pw"


def test_redaction_of_hashes_tokens_and_urls():
    text = (
        "hash $argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA bearer abcDEF123_- "
        "postgresql://phoenix:hunter2@db/x password=hunter3 "
        "$2b$12$" + "a" * 53
    )
    out = redact(text)
    for secret in ("aGFzaA", "abcDEF123", "hunter2", "hunter3", "a" * 53):
        assert secret not in out


def test_json_formatter_writes_one_line_with_fields():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    record.fields = {"user_id": "u1", "n": 2}
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert json.loads(line)["user_id"] == "u1"


def test_l2_encoding_never_contains_the_hash():
    u = UserRecord("id1", "a@b.c", None, "user", "$argon2id$secret", "T", False, 1.5)
    raw = u.to_l2()
    assert b"argon2" not in raw
    back = UserRecord.from_l2(raw)
    assert back.hashed_password is None and back.email == "a@b.c" and back.password_changed_at == 1.5
    s = SessionRecord("id1", 123.5, False)
    assert SessionRecord.from_l2(s.to_l2()) == s


def test_the_in_process_throttle_table_keeps_only_what_an_outage_would_need():
    """Mirrored from Redis on every login, it must stay small: a clean login leaves only its
    known mark, counts with failures behind them are kept, both tables are bounded."""
    from phoenix_auth import throttle_state
    from phoenix_auth.throttle_state import LocalTable

    p = Policy.from_settings(_settings(throttle_free_failures=2))
    table = LocalTable(p)
    now = time.time()
    clean = Reservation(Keys.of("a@b.c", "192.0.2.1"), 1, 1, True, 0.0, local=False)
    table.mirror(clean, now)
    table.settle(clean, 1, 2, True, now)
    assert len(table._counts) == 0 and table.known_at(clean.keys) == pytest.approx(now)
    failing = Reservation(Keys.of("x@b.c", "192.0.2.1"), 3, 9, True, 0.0, local=False)
    table.mirror(failing, now)
    assert table._count(failing.keys.account, now) == 3
    assert table._wait(failing.keys.account, now) > 0  # 3 > 2 free: the lock Redis set is held here too
    for i in range(throttle_state.LOCAL_MAX_KNOWN + 10):
        table._mark(Keys.of(f"u{i}@b.c", "192.0.2.1"), now)
    assert len(table._known) == throttle_state.LOCAL_MAX_KNOWN
