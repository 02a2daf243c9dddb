"""Client addresses: who sent a login, as far as proxies we trust can tell, and the bucket the
throttle counts it in.

* `X-Forwarded-For` is believed only when the TCP peer is in `PHOENIX_TRUSTED_PROXIES`. All of
  the header's lines are read, comma-joined in order (RFC 9110 §5.3), so a line the client sent
  itself cannot hide the one its proxy appended. The chain is walked from the right: each trusted
  hop vouches for the entry to its left, and the first untrusted entry is the client. An entry
  that is not an address (`unknown`, garbage) ends the walk at the trusted hop that reported it,
  so nobody can pick their own throttle key by sending one.
* Ports are stripped (`1.2.3.4:5678`, `[2001:db8::1]:443`), IPv4-mapped IPv6 addresses
  (`::ffff:192.0.2.1`, what a dual-stack socket reports) are unwrapped to IPv4 and IPv6 zone ids
  dropped, so one client has one spelling.
* The throttle counts IPv4 addresses one by one and IPv6 addresses per /64: a single host or
  customer usually holds a whole /64, and rotating through it must not give a fresh budget per
  address.
* A trusted range broader than /8 (`0.0.0.0/0`, `::/0`, `::ffff:0:0/96`) would let every client
  choose its own address; it is refused at start-up.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# The broadest trusted range accepted, per family (a /8 is e.g. 10.0.0.0/8 or fd00::/8).
MIN_TRUSTED_PREFIX = 8
IPV6_BUCKET_PREFIX = 64
# Carrier-grade NAT space: not "private" to Python, but inside a cluster network all the same.
SHARED_ADDRESS_SPACE = ipaddress.IPv4Network("100.64.0.0/10")
UNKNOWN_PEER = "0.0.0.0"  # noqa: S104 - a placeholder for a peer without an address (unix socket), not a bind


def normalize(address: Address) -> Address:
    """One spelling per client: IPv4-mapped IPv6 as IPv4, no IPv6 zone id."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        if mapped is not None:
            return mapped
        if address.scope_id:
            return ipaddress.IPv6Address(int(address))
    return address


def parse_address(text: str) -> Address | None:
    """An address from a peer or forwarded entry, ports stripped; None when it is not one."""
    value = text.strip()
    if value.startswith("["):  # [v6] or [v6]:port
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[1:end], value[end + 1 :]
        if rest and not (rest.startswith(":") and _is_port(rest[1:])):
            return None
    elif value.count(":") == 1:  # v4:port (a bare IPv6 address has at least two colons)
        host, _, port = value.partition(":")
        if not _is_port(port):
            return None
    else:
        host = value
    try:
        return normalize(ipaddress.ip_address(host))
    except ValueError:
        return None


def _is_port(text: str) -> bool:
    return 0 < len(text) <= 5 and text.isascii() and text.isdigit()


def parse_network(text: str) -> Network:
    """A trusted-proxy range; ValueError (naming the problem) when it is not one or too broad."""
    try:
        network = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not an IP address or CIDR") from exc
    if isinstance(network, ipaddress.IPv6Network):
        mapped = network.network_address.ipv4_mapped
        if mapped is not None and network.prefixlen >= 96:
            # Addresses are unwrapped before matching, so judge (and match) the IPv4 range itself.
            network = ipaddress.IPv4Network((int(mapped), network.prefixlen - 96))
    if network.prefixlen < MIN_TRUSTED_PREFIX:
        raise ValueError(
            f"{text!r} trusts {'every address' if network.prefixlen == 0 else 'too many addresses'} "
            f"({network}): any client could then choose the address it is throttled as; "
            f"list your proxies' ranges, at most /{MIN_TRUSTED_PREFIX} wide"
        )
    return network


def is_trusted(address: Address, networks: Iterable[Network]) -> bool:
    return any(address in network for network in networks)


def client_address(peer: str | None, forwarded_for: Sequence[str], networks: Sequence[Network]) -> str:
    """The client's address: the peer, or, when the peer is a trusted proxy, the right-most
    untrusted entry of X-Forwarded-For (`forwarded_for`: every header line, in order)."""
    peer_address = parse_address(peer) if peer else None
    if peer_address is None:
        return peer or UNKNOWN_PEER
    if not networks or not forwarded_for or not is_trusted(peer_address, networks):
        return str(peer_address)
    nearest = peer_address  # the last trusted hop: it wrote the entry to its left
    for line in reversed(forwarded_for):
        for entry in reversed(line.split(",")):
            if not entry.strip():
                continue
            hop = parse_address(entry)
            if hop is None:
                return str(nearest)
            if not is_trusted(hop, networks):
                return str(hop)
            nearest = hop
    return str(nearest)  # every entry is a trusted proxy: the left-most is the closest to the client


def throttle_bucket(address: str) -> str:
    """The key the throttle counts `address` under: the IPv4 address, or the IPv6 /64."""
    parsed = parse_address(address)
    if parsed is None:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        shift = 128 - IPV6_BUCKET_PREFIX
        return str(ipaddress.IPv6Network(((int(parsed) >> shift) << shift, IPV6_BUCKET_PREFIX)))
    return str(parsed)


def is_private_untrusted_peer(peer: str | None, networks: Sequence[Network]) -> bool:
    """True when the TCP peer is a private (or loopback, link-local) address that is not a trusted
    proxy: in a cluster that is an ingress or proxy pod, and throttling then keys on it."""
    address = parse_address(peer) if peer else None
    if address is None:
        return False
    internal = address.is_private or address in SHARED_ADDRESS_SPACE
    return internal and not is_trusted(address, networks)
