"""Client addresses: X-Forwarded-For from trusted proxies only, every line, ports stripped, invalid
entries and too-broad trusted ranges refused, IPv6 counted per /64, IPv4-mapped unwrapped."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from phoenix_auth.addresses import client_address, is_private_untrusted_peer, parse_address, throttle_bucket
from phoenix_auth.settings import Settings


def _networks(value: str) -> tuple:
    return Settings(
        DATABASE_URL="postgresql://u:p@127.0.0.1:1/x", REDIS_URL="", trusted_proxies=value
    ).trusted_proxy_networks


PROXIES = _networks("10.0.0.0/8, 192.168.1.1, fd00::/8")


def test_forwarded_for_is_ignored_from_untrusted_peers():
    assert client_address("203.0.113.9", ["1.2.3.4"], PROXIES) == "203.0.113.9"
    assert client_address("10.0.0.5", ["1.2.3.4"], ()) == "10.0.0.5"


def test_the_right_most_untrusted_entry_is_the_client():
    assert client_address("10.0.0.5", ["1.2.3.4"], PROXIES) == "1.2.3.4"
    assert client_address("10.0.0.5", ["6.6.6.6, 1.2.3.4, 192.168.1.1"], PROXIES) == "1.2.3.4"
    assert client_address("10.0.0.5", [], PROXIES) == "10.0.0.5"
    # Every entry a trusted proxy: the left-most one (closest to the client) is all we know.
    assert client_address("10.0.0.5", ["10.1.1.1, 10.2.2.2"], PROXIES) == "10.1.1.1"


def test_every_header_line_is_read_so_a_client_line_cannot_beat_the_proxy_line():
    # The client sent its own X-Forwarded-For line; the proxy appended a second line with the
    # real address. Reading only the first line would throttle the client as 198.51.100.7.
    lines = ["198.51.100.7", "203.0.113.50"]
    assert client_address("10.0.0.5", lines, PROXIES) == "203.0.113.50"
    assert client_address("10.0.0.5", ["198.51.100.7", "203.0.113.50, 10.9.9.9"], PROXIES) == "203.0.113.50"


@pytest.mark.parametrize(
    ("entry", "address"),
    [
        ("1.2.3.4:5678", "1.2.3.4"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("2001:DB8:0::1", "2001:db8::1"),
        (" ::ffff:192.0.2.1 ", "192.0.2.1"),
        ("[::ffff:192.0.2.1]:80", "192.0.2.1"),
        ("fe80::1%eth0", "fe80::1"),
    ],
)
def test_ports_are_stripped_and_addresses_normalised(entry, address):
    assert str(parse_address(entry)) == address
    assert client_address("10.0.0.5", [entry], PROXIES) == address


@pytest.mark.parametrize(
    "entry",
    ["unknown", "garbage", "1.2.3.4:", "1.2.3.4:x", "1.2.3.4:99999999", "[::1", "[::1]x", "1.2.3.4:\uff15"],
)
def test_an_invalid_entry_ends_at_the_trusted_hop_that_reported_it(entry):
    assert parse_address(entry) is None
    assert client_address("10.0.0.5", [entry], PROXIES) == "10.0.0.5"
    assert client_address("10.0.0.5", [f"1.2.3.4, {entry}, 10.7.7.7"], PROXIES) == "10.7.7.7"


def test_a_dual_stack_peer_is_unwrapped_before_it_is_matched():
    assert client_address("::ffff:10.0.0.5", ["1.2.3.4"], PROXIES) == "1.2.3.4"
    assert client_address("::ffff:203.0.113.9", ["1.2.3.4"], PROXIES) == "203.0.113.9"


@pytest.mark.parametrize(
    "value",
    ["0.0.0.0/0", "::/0", "0.0.0.0/1", "1.0.0.0/7", "::ffff:0:0/96", "::ffff:0.0.0.0/100", "2000::/3"],
)
def test_too_broad_trusted_ranges_stop_the_start_naming_the_variable(value):
    with pytest.raises(ValidationError) as err:
        _networks(f"10.0.0.0/8, {value}")
    message = str(err.value)
    assert "PHOENIX_TRUSTED_PROXIES" in message and value in message and "at most /8" in message


def test_a_trusted_ipv4_mapped_range_matches_ipv4_peers():
    (network,) = _networks("::ffff:10.0.0.0/104")
    assert str(network) == "10.0.0.0/8"


def test_ipv6_is_counted_per_64_and_ipv4_per_address():
    assert throttle_bucket("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert throttle_bucket("2001:db8:1:2:ffff:ffff:ffff:ffff") == "2001:db8:1:2::/64"
    assert throttle_bucket("2001:db8:1:3::1") == "2001:db8:1:3::/64"
    assert throttle_bucket("::ffff:192.0.2.1") == "192.0.2.1"
    assert throttle_bucket("192.0.2.1") == "192.0.2.1"


def test_private_peers_outside_the_trusted_ranges_are_flagged():
    assert is_private_untrusted_peer("10.244.1.7", ())
    assert is_private_untrusted_peer("100.64.3.1", ())
    assert is_private_untrusted_peer("fd12::1", ())
    assert not is_private_untrusted_peer("10.244.1.7", PROXIES)
    assert not is_private_untrusted_peer("1.1.1.1", ())  # (203.0.113.0/24 counts as private: documentation)
    assert not is_private_untrusted_peer(None, ())
