"""Parsing what users type: endpoints, port specifications and scan targets.

Theory of operation: everything here is pure. Text goes in, model objects come out, or an
:class:`~portkit.errors.InputError` subclass whose message names the bad value and what
would be valid. Name resolution is *not* done here: :func:`resolve_addresses` takes the
resolver as an argument (the drivers pass ``socket.getaddrinfo``; tests pass a dict), so
no test ever asks a real DNS server.

Forms accepted:

* endpoint: ``host:port``, ``host:port/udp``, ``[v6]:port[/proto]``, ``10.0.0.2:22``
* ports: ``22``, ``22,80,8000-8100``, ``-`` or ``1-65535`` (all), spaces ignored
* targets: a host name, an IPv4/IPv6 address, or a CIDR block (``10.0.0.0/24``)
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from portkit.errors import PortSpecError, ResolveError, TargetError
from portkit.model.probe import Endpoint

__all__ = [
    "MAX_CIDR_ADDRESSES",
    "Endpoint",
    "Resolver",
    "Target",
    "parse_endpoint",
    "parse_port",
    "parse_ports",
    "parse_target",
    "resolve_addresses",
]

PROTOS = ("tcp", "udp")
MAX_CIDR_ADDRESSES = 65536  # a /16 of IPv4; larger blocks are almost surely a typo

# A resolver maps (name, family or None) to a list of (family, address) pairs,
# family being 4 or 6. It raises ResolveError (or returns []) when the name is unknown.
Resolver = Callable[[str, int | None], Sequence[tuple[int, str]]]

_NAME_RE = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62}))*\.?$"
)


def parse_port(text: str, *, where: str = "") -> int:
    """``"80"`` -> 80. Ports are 1-65535. ``where`` names the context in errors."""
    t = text.strip()
    if not t.isdigit():
        raise PortSpecError(f"invalid port {text!r}{where}: a port is a number from 1 to 65535")
    n = int(t)
    if not 1 <= n <= 65535:
        raise PortSpecError(f"invalid port {n}{where}: ports are 1-65535")
    return n


def parse_ports(spec: str) -> tuple[int, ...]:
    """``"22,80,8000-8002"`` -> (22, 80, 8000, 8001, 8002), sorted and without repeats.

    ``-`` means every port (1-65535). A range needs both ends: ``5-`` is an error.
    """
    s = spec.replace(" ", "")
    if not s:
        raise PortSpecError("empty port specification: give e.g. 22,80,8000-8100 or - for all ports")
    if s == "-":
        return tuple(range(1, 65536))
    ports: set[int] = set()
    for part in s.split(","):
        if not part:
            raise PortSpecError(f"invalid port specification {spec!r}: empty item between commas")
        if "-" in part:
            lo_s, _, hi_s = part.partition("-")
            if not lo_s or not hi_s:
                raise PortSpecError(
                    f"invalid port range {part!r} in {spec!r}: a range needs both ends, e.g. 5-100 (or - for all ports)"
                )
            lo = parse_port(lo_s, where=f" in range {part!r}")
            hi = parse_port(hi_s, where=f" in range {part!r}")
            if lo > hi:
                raise PortSpecError(f"invalid port range {part!r}: {lo} is above {hi}")
            ports.update(range(lo, hi + 1))
        else:
            ports.add(parse_port(part))
    return tuple(sorted(ports))


def _strip_brackets(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _check_host(host: str, original: str) -> str:
    if not host:
        raise TargetError(
            f"invalid endpoint {original!r}: the host is missing (e.g. 10.0.0.2:22 or [fd00::2]:80)"
        )
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not _NAME_RE.match(host):
        raise TargetError(f"invalid host {host!r} in {original!r}: give a host name or an IPv4/IPv6 address")
    return host


def parse_endpoint(text: str, default_proto: str = "tcp") -> Endpoint:
    """``"host:port[/tcp|/udp]"`` or ``"[v6]:port"`` -> :class:`Endpoint`.

    >>> parse_endpoint("[fd00::2]:53/udp")
    Endpoint(host='fd00::2', port=53, proto='udp')
    """
    t = text.strip()
    proto = default_proto
    if "/" in t:
        t, _, proto = t.rpartition("/")
        proto = proto.lower()
        if proto not in PROTOS:
            raise TargetError(f"invalid protocol {proto!r} in {text!r}: valid ones are tcp, udp")
    if t.startswith("["):
        close = t.find("]")
        if close < 0 or t[close + 1 : close + 2] != ":":
            raise TargetError(f"invalid endpoint {text!r}: write an IPv6 endpoint as [fd00::2]:80")
        host, port_s = t[1:close], t[close + 2 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise TargetError(f"invalid IPv6 address {host!r} in {text!r}") from None
    else:
        if t.count(":") > 1:
            raise TargetError(
                f"invalid endpoint {text!r}: put an IPv6 address in brackets, e.g. [fd00::2]:80"
            )
        host, sep, port_s = t.rpartition(":")
        if not sep:
            raise TargetError(f"invalid endpoint {text!r}: missing :PORT (e.g. {t}:22, or use -p 22)")
    port = parse_port(port_s, where=f" in {text!r}")
    return Endpoint(_check_host(host, text), port, proto)


@dataclass(frozen=True, slots=True)
class Target:
    """A scan target as typed: ``kind`` is "address", "network" or "name"."""

    text: str
    kind: str
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None

    def addresses(self) -> Iterator[str]:
        """Every address of a network (hosts only for /0-/30 IPv4), or the one address."""
        if self.network is None:
            yield _strip_brackets(self.text) if self.kind == "address" else self.text
            return
        net = self.network
        if net.num_addresses == 1:
            yield str(net.network_address)
            return
        for a in net.hosts():
            yield str(a)


def parse_target(text: str) -> Target:
    """A host name, an address (``[v6]`` allowed) or a CIDR block; TargetError otherwise."""
    t = text.strip()
    if not t:
        raise TargetError("empty target: give a host name, an address or a CIDR block such as 10.0.0.0/24")
    if "/" in t:
        addr, _, plen = t.partition("/")
        addr = _strip_brackets(addr)
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            raise TargetError(f"invalid CIDR block {t!r}: {addr!r} is not an IPv4 or IPv6 address") from None
        maxlen = ip.max_prefixlen
        if not plen.isdigit() or not 0 <= int(plen) <= maxlen:
            raise TargetError(
                f"invalid CIDR block {t!r}: the prefix length must be 0-{maxlen} for IPv{ip.version}"
            )
        net = ipaddress.ip_network(f"{addr}/{plen}", strict=False)
        if net.num_addresses > MAX_CIDR_ADDRESSES:
            raise TargetError(
                f"CIDR block {t!r} has {net.num_addresses} addresses; portkit scans at most {MAX_CIDR_ADDRESSES} "
                "per block (split it, e.g. into /16s)"
            )
        return Target(t, "network", net)
    bare = _strip_brackets(t)
    try:
        return Target(str(ipaddress.ip_address(bare)), "address")
    except ValueError:
        pass
    if not _NAME_RE.match(t):
        raise TargetError(f"invalid target {t!r}: give a host name, an IPv4/IPv6 address or a CIDR block")
    return Target(t, "name")


def resolve_addresses(name: str, resolver: Resolver, family: int | None = None) -> list[str]:
    """The addresses of ``name`` (IPv4 first, like nmap's default), limited to ``family``.

    Addresses need no resolver. ResolveError when nothing usable comes back.
    """
    try:
        ip = ipaddress.ip_address(_strip_brackets(name))
    except ValueError:
        pass
    else:
        if family is not None and ip.version != family:
            raise TargetError(f"{name} is an IPv{ip.version} address but -{family} asks for IPv{family} only")
        return [str(ip)]
    pairs = list(resolver(name, family))
    seen: list[str] = []
    for fam, addr in sorted(pairs, key=lambda p: p[0]):
        if (family is None or fam == family) and addr not in seen:
            seen.append(addr)
    if not seen:
        kind = f" IPv{family}" if family else ""
        raise ResolveError(name, f"no{kind} address found")
    return seen
