"""Units of the security settings and the L2 seal: secrets of at least 32 bytes or no start,
listeners on two ports, the __Host- cookie, TLS options, and what a sealed L2 value accepts."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from phoenix_auth import cli
from phoenix_auth.settings import Settings
from phoenix_auth.signing import L2Signer, Refused

KEY = b"k" * 32
NOW = 1_800_000_000.0


def _settings(**kw) -> Settings:
    return Settings(DATABASE_URL="postgresql://u:p@127.0.0.1:1/x", REDIS_URL="", **kw)


# --------------------------------------------------------------------------- secrets
@pytest.mark.parametrize("name", ["admin_token", "cache_signing_key"])
@pytest.mark.parametrize("value", ["", " ", "x" * 31, "é" * 15])  # 15 x 2 bytes = 30 bytes
def test_a_set_secret_shorter_than_32_bytes_refuses_to_start(name, value):
    with pytest.raises(ValidationError) as info:
        _settings(**{name: value})
    text = str(info.value)
    assert f"PHOENIX_{name.upper()} must be at least 32 bytes" in text
    assert "input_value" not in text  # a traceback never prints the rejected secret


@pytest.mark.parametrize("name", ["admin_token", "cache_signing_key"])
def test_unset_is_off_and_32_bytes_is_enough(name):
    assert getattr(_settings(), name) is None
    assert getattr(_settings(**{name: "x" * 32}), name).get_secret_value() == "x" * 32


def test_serve_with_an_empty_admin_token_exits_2_naming_the_variable(monkeypatch, capsys):
    """The review's case: PHOENIX_ADMIN_TOKEN="" used to start with an admin API that `"" == ""` opened."""
    monkeypatch.setenv("PHOENIX_ADMIN_TOKEN", "")
    assert cli.main(["serve"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "PHOENIX_ADMIN_TOKEN: PHOENIX_ADMIN_TOKEN must be at least 32 bytes (it has 0)" in err


def test_serve_with_a_short_signing_key_exits_2_without_echoing_it(monkeypatch, capsys):
    monkeypatch.setenv("PHOENIX_CACHE_SIGNING_KEY", "planted-short-key")
    assert cli.main(["serve"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "PHOENIX_CACHE_SIGNING_KEY" in err and "at least 32 bytes (it has 17)" in err
    assert "planted-short-key" not in err


# --------------------------------------------------------------------------- listeners, cookie, TLS
def test_admin_port_defaults_to_3008_and_must_differ_from_the_public_port():
    assert (_settings().port, _settings().admin_port) == (3007, 3008)
    with pytest.raises(ValidationError, match="PHOENIX_ADMIN_PORT must differ from PHOENIX_PORT"):
        _settings(port=4000, admin_port=4000)


def test_cookie_name_gets_the_host_prefix_while_secure():
    assert _settings().session_cookie_name == "__Host-phoenix_session"
    assert _settings(cookie_name="sid").session_cookie_name == "__Host-sid"
    assert _settings(cookie_name="__Host-sid").session_cookie_name == "__Host-sid"
    assert _settings(cookie_secure=False).session_cookie_name == "phoenix_session"
    with pytest.raises(ValidationError, match="without Secure"):
        _settings(cookie_secure=False, cookie_name="__Host-sid")
    with pytest.raises(ValidationError, match="PHOENIX_COOKIE_NAME must be a cookie token"):
        _settings(cookie_name="a; Domain=evil.example")


def test_redis_ca_file_needs_rediss_and_a_readable_file(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    url = {"REDIS_URL": "rediss://127.0.0.1:6380/0"}
    ok = Settings(DATABASE_URL="postgresql://u:p@127.0.0.1:1/x", redis_ca_file=str(ca), **url)
    assert ok.redis_ca_file == str(ca)
    with pytest.raises(ValidationError, match="does not start with rediss://"):
        Settings(DATABASE_URL="postgresql://u:p@h/x", REDIS_URL="redis://h/0", redis_ca_file=str(ca))
    with pytest.raises(ValidationError, match="is not a readable file"):
        Settings(DATABASE_URL="postgresql://u:p@h/x", redis_ca_file=str(tmp_path / "missing.pem"), **url)


# --------------------------------------------------------------------------- the L2 seal
def test_a_sealed_value_opens_only_under_its_key_unaltered_and_before_it_expires():
    signer = L2Signer(KEY)
    payload = b'["id-1",1800000300.0,0,1800000000.0]'
    sealed = signer.seal("phoenix:c:s:aa", payload, 300, now=NOW)
    assert signer.open("phoenix:c:s:aa", sealed, now=NOW + 299) == payload
    refused = {
        "unsigned JSON (what a Redis writer would SET)": ("phoenix:c:s:aa", payload),
        "copied to another key": ("phoenix:c:s:bb", sealed),
        "payload altered": ("phoenix:c:s:aa", sealed.replace(b"id-1", b"id-2")),
        "expiry altered": ("phoenix:c:s:aa", sealed.replace(b"1800000300|", b"1900000300|")),
        "truncated": ("phoenix:c:s:aa", sealed[:20]),
        "version only": ("phoenix:c:s:aa", b"P1"),
        "empty": ("phoenix:c:s:aa", b""),
        "sealed with another key": (
            "phoenix:c:s:aa",
            L2Signer(b"o" * 32).seal("phoenix:c:s:aa", payload, 300, now=NOW),
        ),
    }
    for what, (key, raw) in refused.items():
        with pytest.raises(Refused) as info:
            signer.open(key, raw, now=NOW)
        assert info.value.reason == "signature", what
    with pytest.raises(Refused) as info:
        signer.open("phoenix:c:s:aa", sealed, now=NOW + 301)  # kept past its TTL (e.g. PERSIST)
    assert info.value.reason == "expired"
