"""Value matching for the nftables evaluator: addresses, prefixes, ranges, sets, flags.

``contains(kind, value, v, sets)`` answers whether a packet's field value is in an nft
value (a literal, a prefix, a range, an anonymous or named set); anything it cannot compare
raises :class:`Undecided`. Addresses are compared as integers; IPv4 text is parsed without
:mod:`ipaddress`, which is the evaluator's hot path on big rulesets.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from portkit.model.firewall import (
    PROTO_NUMBERS,
    AnonSet,
    Concat,
    Flags,
    IPAddress,
    Lit,
    NftSet,
    Opaque,
    Prefix,
    Range,
    SetRef,
    Value,
)

_ADDR_KEYS = {"ip saddr", "ip daddr", "ip6 saddr", "ip6 daddr"}
_PROTO_KEYS = {"meta l4proto", "ip protocol", "ip6 nexthdr"}
_IFACE_KEYS = {"meta iifname", "meta oifname", "meta iif", "meta oif"}
FLAG_KEYS = {"ct state", "ct status", "tcp flags"}


class Undecided(Exception):
    """A match or statement portkit cannot evaluate; the message names it."""


@lru_cache(maxsize=65536)
def address_or_none(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@lru_cache(maxsize=65536)
def _net(addr: str, length: int) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(f"{addr}/{length}", strict=False)
    except ValueError:
        return None


@lru_cache(maxsize=131072)
def _span(addr: str, length: int) -> tuple[int, int, int] | None:
    """(version, first, last) of ``addr/length`` as integers; IPv4 parsed without ipaddress (fast)."""
    if ":" not in addr:
        parts = addr.split(".")
        if len(parts) != 4 or not all(p.isdigit() and int(p) < 256 for p in parts) or not 0 <= length <= 32:
            return None
        n = (int(parts[0]) << 24) | (int(parts[1]) << 16) | (int(parts[2]) << 8) | int(parts[3])
        host = (1 << (32 - length)) - 1
        return (4, n & ~host, n | host)
    net = _net(addr, length)
    if net is None:
        return None
    return (6, int(net.network_address), int(net.broadcast_address))


def proto_number(proto: str | int) -> int | None:
    if isinstance(proto, int):
        return proto
    if proto.isdigit():
        return int(proto)
    return PROTO_NUMBERS.get(proto.lower())


def _iface_match(name: str, pattern: str) -> bool:
    if pattern.endswith("*") and not pattern.endswith("\\*"):
        return name.startswith(pattern[:-1])
    return name == pattern.replace("\\*", "*")


def key_class(key: str) -> str:
    if key in _ADDR_KEYS:
        return "addr"
    if key in _PROTO_KEYS:
        return "proto"
    if key in _IFACE_KEYS:
        return "iface"
    return "plain"


def _lit_equal(kc: str, val: object, lit: str | int | bool) -> bool:
    if isinstance(val, frozenset):  # flags (ct state) as a map key: the packet's flag is one of them
        return lit in val
    if kc == "addr":
        if not isinstance(lit, str) or not isinstance(val, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return False
        span = _span(lit, 32 if val.version == 4 else 128)
        return span is not None and span[0] == val.version and span[1] == int(val)
    if kc == "proto":
        return proto_number(lit) == val if isinstance(lit, str | int) and not isinstance(lit, bool) else False
    if kc == "iface":
        return isinstance(val, str) and isinstance(lit, str) and _iface_match(val, lit)
    return val == lit


def contains(kc: str, val: object, v: Value, sets: dict[str, NftSet]) -> bool:
    """Does value ``v`` (a literal, prefix, range, set) hold the packet value ``val``?"""
    if isinstance(v, Lit):
        return _lit_equal(kc, val, v.value)
    if isinstance(v, Prefix):
        span = _span(v.addr, v.length)
        if span is None or not isinstance(val, ipaddress.IPv4Address | ipaddress.IPv6Address):
            raise Undecided(f"prefix {v.addr}/{v.length}")
        return val.version == span[0] and span[1] <= int(val) <= span[2]
    if isinstance(v, Range):
        if kc == "addr":
            lo, hi = address_or_none(str(v.lo)), address_or_none(str(v.hi))
            if lo is None or hi is None or not isinstance(val, ipaddress.IPv4Address | ipaddress.IPv6Address):
                raise Undecided(f"range {v.lo}-{v.hi}")
            return val.version == lo.version == hi.version and lo <= val <= hi  # type: ignore[operator]
        if kc == "proto":
            lo_n, hi_n = proto_number(v.lo), proto_number(v.hi)
            if lo_n is None or hi_n is None or not isinstance(val, int):
                raise Undecided(f"range {v.lo}-{v.hi}")
            return lo_n <= val <= hi_n
        if isinstance(v.lo, int) and isinstance(v.hi, int) and isinstance(val, int):
            return v.lo <= val <= v.hi
        raise Undecided(f"range {v.lo}-{v.hi}")
    if isinstance(v, AnonSet):
        return any(contains(kc, val, e, sets) for e in v.elements)
    if isinstance(v, SetRef):
        s = sets.get(v.name)
        if s is None:
            raise Undecided(f"set @{v.name} (not in the ruleset)")
        return any(contains(kc, val, e.key, sets) for e in s.elements)
    if isinstance(v, Flags):
        return any(_lit_equal(kc, val, n) for n in v.names)
    raise Undecided(f"value {v.text if isinstance(v, Opaque) else v!r}")


def contains_concat(kcs: tuple[str, ...], vals: tuple[object, ...], v: Value, sets: dict[str, NftSet]) -> bool:
    if isinstance(v, Concat):
        if len(v.parts) != len(vals):
            return False
        return all(contains(kc, val, part, sets) for kc, val, part in zip(kcs, vals, v.parts, strict=True))
    if isinstance(v, AnonSet):
        return any(contains_concat(kcs, vals, e, sets) for e in v.elements)
    if isinstance(v, SetRef):
        s = sets.get(v.name)
        if s is None:
            raise Undecided(f"set @{v.name} (not in the ruleset)")
        return any(contains_concat(kcs, vals, e.key, sets) for e in s.elements)
    raise Undecided(f"concatenation compared with {v!r}")
