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

Strict input (one place per kind of value; the CLI, the policy reader and the forward specs
all call these):

* a port is 1-5 ASCII digits (``str.isdigit`` would take ``'²'``, Arabic-Indic and
  full-width digits, and ``int()`` of a 4,300-digit string raises): :func:`parse_port`;
* an IPv4 literal is a dotted quad of decimal bytes; ``1.2.3``, ``0x7f.1`` and
  ``2130706433`` are refused as malformed addresses, never resolved as names (the C
  library's ``inet_aton`` would read them as 1.2.0.3 and 127.0.0.1): :func:`check_name`;
* an IPv6 link-local address (fe80::/10) needs its interface, ``fe80::1%eth0``:
  :func:`parse_address`;
* an interface name follows the kernel's ``dev_valid_name`` (1-15 bytes, not ``.`` or
  ``..``) with a conservative character set ``[A-Za-z0-9_.@-]``; a pattern may end in
  ``*``: :func:`check_ifname`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from portkit.errors import PortSpecError, ResolveError, TargetError
from portkit.model.probe import Endpoint
from portkit.parse.scalars import (
    IFNAME_MAX,
    MAX_PORT_DIGITS,
    check_ifname,
    is_ascii_number,
    is_ifname,
    parse_number,
    parse_port,
    shown,
)

__all__ = [
    "IFNAME_MAX",
    "MAX_CIDR_ADDRESSES",
    "MAX_PORT_DIGITS",
    "Endpoint",
    "Resolver",
    "Target",
    "check_ifname",
    "check_name",
    "is_ascii_number",
    "parse_address",
    "parse_endpoint",
    "parse_ipv4",
    "parse_number",
    "parse_port",
    "parse_ports",
    "parse_target",
    "resolve_addresses",
    "shown",
]

PROTOS = ("tcp", "udp")
MAX_CIDR_ADDRESSES = 65536  # a /16 of IPv4; larger blocks are almost surely a typo

# A resolver maps (name, family or None) to a list of (family, address) pairs,
# family being 4 or 6. It raises ResolveError (or returns []) when the name is unknown.
Resolver = Callable[[str, int | None], Sequence[tuple[int, str]]]

_NAME_RE = re.compile(
    r"^(?=.{1,253}\Z)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62}))*\.?\Z"
)


_DOTTED_QUAD = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
# What inet_aton/getaddrinfo would read as an IPv4 address: 1-4 parts, each decimal,
# octal (leading 0) or hex (0x...). A name made only of such parts is no host name.
_INET_ATON_PART = re.compile(r"(?:0[xX][0-9A-Fa-f]*|[0-9]+)")


def parse_ipv4(text: str, *, what: str = "address", where: str = "") -> ipaddress.IPv4Address | None:
    """A dotted quad (``"10.0.0.2"``) as an address; None when ``text`` is no dotted quad.

    Raises TargetError for a dotted quad that is no address (a byte above 255, a leading 0).
    """
    if _DOTTED_QUAD.fullmatch(text) is None:
        return None
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        raise TargetError(
            f"invalid {what} {shown(text)!r}{where}: not a valid IPv4 address (four numbers 0-255, without leading zeros)"
        ) from None


def parse_address(
    text: str, *, what: str = "address", where: str = "", require_scope: bool = True
) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An IPv4 dotted quad or an IPv6 literal (brackets allowed) -> the address, or None when
    ``text`` is not written as an address at all (it may be a host name).

    Refused (TargetError): a numeric form that is no dotted quad (``1.2.3``, ``0x7f.1``), an
    IPv6 link-local address without ``%iface`` (unless ``require_scope`` is False: a scan
    reports that per target and goes on with the others), a bad scope.
    """
    t = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    v4 = parse_ipv4(t, what=what, where=where)
    if v4 is not None:
        return v4
    if ":" in t:
        try:
            v6 = ipaddress.IPv6Address(t)
        except ValueError:
            raise TargetError(
                f"invalid IPv6 {what} {shown(text)!r}{where}: expected e.g. fd00::2 or fe80::1%eth0"
            ) from None
        if "." in t.rpartition(":")[2] and parse_ipv4(t.rpartition(":")[2]) is None:
            raise TargetError(
                f"invalid IPv6 {what} {shown(text)!r}{where}: an embedded IPv4 address is a dotted quad"
            )
        scope = v6.scope_id
        if scope is not None and not (is_ascii_number(scope) or is_ifname(scope)):
            raise TargetError(
                f"invalid scope {scope!r} in {what} {shown(text)!r}{where}: give an interface name, e.g. %eth0"
            )
        if v6.is_link_local and not scope and require_scope:
            raise TargetError(
                f"invalid {what} {shown(text)!r}{where}: a link-local address: name its interface, e.g. {t}%eth0"
            )
        return v6
    if _looks_numeric(t):
        raise TargetError(
            f"invalid {what} {shown(text)!r}{where}: not a valid IPv4 address (write four numbers, e.g. 10.0.0.2)"
        )
    return None


def _looks_numeric(text: str) -> bool:
    """Digits and dots only (any script), or what inet_aton would take as an address."""
    if text and all(c == "." or c.isdigit() for c in text):
        return True
    parts = text.split(".")
    if parts and parts[-1] == "":
        parts = parts[:-1]
    return 1 <= len(parts) <= 4 and all(_INET_ATON_PART.fullmatch(p) for p in parts)


def check_name(name: str, *, what: str = "host", where: str = "") -> str:
    """A DNS host name (ASCII letters, digits, '-', '_', dots; 1-253 characters), not a
    numeric address in disguise (its last label is not all digits); TargetError otherwise.
    ``where`` names the context in errors (" in 'x:80'")."""
    if _looks_numeric(name) or (name.rstrip(".").rpartition(".")[2].isdigit()):
        raise TargetError(
            f"invalid {what} {shown(name)!r}{where}: write IPv4 addresses as four numbers, e.g. 10.0.0.2"
        )
    if not _NAME_RE.match(name) or not name.isascii():
        raise TargetError(
            f"invalid {what} {shown(name)!r}{where}: give a host name (letters, digits, '-', '.') or an IP address"
        )
    return name


_SERVICE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,31}")


def service_port(name: str, proto: str | None = None) -> int | None:
    """The port of a well-known service name (``ssh`` -> 22), or None; only for ``proto`` when given."""
    if not _SERVICE_NAME.fullmatch(name):
        return None
    from portkit.registry.ports import common_port_by_name

    c = common_port_by_name(name)
    if c is None or (proto is not None and proto not in c.protos):
        return None
    return c.port


def _port_or_service(text: str, *, where: str = "", proto: str | None = None) -> int:
    """A port number, or a service name such as ``ssh`` or ``http`` (issue 13: names wherever a port goes)."""
    port = service_port(text, proto)
    return port if port is not None else parse_port(text, where=where)


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
            raise PortSpecError(f"invalid port specification {shown(spec)!r}: empty item between commas")
        named = service_port(part)
        if named is not None:
            ports.add(named)
        elif "-" in part:
            lo_s, _, hi_s = part.partition("-")
            if not lo_s or not hi_s:
                raise PortSpecError(
                    f"invalid port range {part!r} in {shown(spec)!r}: a range needs both ends, e.g. 5-100 (or - for all ports)"
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
            f"invalid endpoint {shown(original)!r}: the host is missing (e.g. 10.0.0.2:22 or [fd00::2]:80)"
        )
    ip = parse_address(host, what="host", where=f" in {shown(original)!r}")
    if ip is not None:
        return str(ip)
    return check_name(host, where=f" in {shown(original)!r}")


def parse_endpoint(text: str, default_proto: str = "tcp") -> Endpoint:
    """``"host:port[/tcp|/udp]"`` or ``"[v6]:port"`` -> :class:`Endpoint`.

    >>> parse_endpoint("[fd00::2]:53/udp")
    Endpoint(host='fd00::2', port=53, proto='udp')
    """
    t = text.strip(" ")
    proto = default_proto
    if "/" in t:
        t, _, proto = t.rpartition("/")
        proto = proto.lower()
        if proto not in PROTOS:
            raise TargetError(f"invalid protocol {proto!r} in {shown(text)!r}: valid ones are tcp, udp")
    if t.startswith("["):
        close = t.find("]")
        if close < 0 or t[close + 1 : close + 2] != ":":
            raise TargetError(f"invalid endpoint {shown(text)!r}: write an IPv6 endpoint as [fd00::2]:80")
        host, port_s = t[1:close], t[close + 2 :]
        if ":" not in host or parse_address(host, what="IPv6 address", where=f" in {shown(text)!r}") is None:
            raise TargetError(
                f"invalid IPv6 address {shown(host)!r} in {shown(text)!r}: brackets hold an IPv6 address"
            )
    else:
        if t.count(":") > 1:
            raise TargetError(
                f"invalid endpoint {shown(text)!r}: put an IPv6 address in brackets, e.g. [fd00::2]:80"
            )
        host, sep, port_s = t.rpartition(":")
        if not sep:
            raise TargetError(f"invalid endpoint {shown(text)!r}: missing :PORT (e.g. {t}:22, or use -p 22)")
    port = _port_or_service(port_s, where=f" in {shown(text)!r}", proto=proto)
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
    t = text.strip(" ")
    if not t:
        raise TargetError("empty target: give a host name, an address or a CIDR block such as 10.0.0.0/24")
    if "/" in t:
        addr, _, plen = t.partition("/")
        addr = _strip_brackets(addr)
        try:
            ip = parse_address(addr, what="network", where=f" in {shown(t)!r}") if "%" not in addr else None
        except TargetError as exc:
            if "link-local" in str(exc):
                raise
            ip = None
        if ip is None:
            raise TargetError(
                f"invalid CIDR block {shown(t)!r}: {shown(addr)!r} is not an IPv4 or IPv6 address"
            )
        maxlen = ip.max_prefixlen
        if not is_ascii_number(plen) or len(plen) > 3 or not 0 <= int(plen) <= maxlen:
            raise TargetError(
                f"invalid CIDR block {shown(t)!r}: the prefix length must be 0-{maxlen} for IPv{ip.version}"
            )
        net = ipaddress.ip_network(f"{addr}/{plen}", strict=False)
        if net.num_addresses > MAX_CIDR_ADDRESSES:
            raise TargetError(
                f"CIDR block {shown(t)!r} has {net.num_addresses} addresses; portkit scans at most {MAX_CIDR_ADDRESSES} "
                "per block (split it, e.g. into /16s)"
            )
        return Target(t, "network", net)
    bare = _strip_brackets(t)
    ip = parse_address(bare, what="target", require_scope=False)
    if ip is not None:
        return Target(str(ip), "address")
    if not _NAME_RE.match(t):
        raise TargetError(
            f"invalid target {shown(t)!r}: give a host name, an IPv4/IPv6 address or a CIDR block"
        )
    return Target(check_name(t, what="target"), "name")


def resolve_addresses(name: str, resolver: Resolver, family: int | None = None) -> list[str]:
    """The addresses of ``name`` (IPv4 first, like nmap's default), limited to ``family``.

    Addresses need no resolver. ResolveError when nothing usable comes back.
    """
    ip = parse_address(_strip_brackets(name))
    if ip is None:
        check_name(name)
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
