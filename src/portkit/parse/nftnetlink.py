"""nf_tables netlink dumps (the kernel's own ruleset bytes) -> :class:`NftRuleset`.

Theory of operation. ``nft -j list ruleset`` asks the kernel for the same dumps
(NFT_MSG_GETTABLE / GETCHAIN / GETSET / GETRULE), then libnftables turns each rule's
bytecode back into high-level expressions and prints JSON, which portkit parses again. On
a 5,000-rule ruleset that round trip costs more than the whole ``fw check`` may take, so
this module reads the dumps directly and decompiles the bytecode into the evaluator's
statement vocabulary (the one :mod:`portkit.parse.nftjson` produces)::

    [ meta load l4proto => reg 1 ] [ cmp eq reg 1 0x06 ]          (dependency, folded)
    [ payload load 2b @ transport header + 2 => reg 1 ]
    [ cmp eq reg 1 0x0016 ]                                      -> Match(("tcp dport",), "==", Lit(22))
    [ immediate reg 0 accept ]                                   -> VerdictStmt("accept")

Registers are tracked as the kernel's 32-bit slots, so concatenations (``ip saddr . tcp
dport @s``) resolve to tuples of fields. A load the decompiler cannot name keeps a raw key
(``@nh,96,32``) that the evaluator reports as undecided; an expression it does not know
becomes ``Unknown(name)``. Nothing is guessed.

Set elements are not part of the rule dump: each set needs its own GETSETELEM dump.
:func:`decode_ruleset` therefore returns set headers (``complete=False``); the caller
loads elements where they are needed (:func:`decode_elements`). Anonymous sets
(``tcp dport { 22, 80 }``) stay ``SetRef("__set0")`` until :func:`inline_anonymous` puts
their elements back into the rule, as nft prints them.

Pure: bytes in, model out. Everything here is checked against libnftables' JSON by the
differential tests (the same packets, the same verdicts and texts).
"""

from __future__ import annotations

import ipaddress
import struct
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from portkit.model.firewall import (
    PORT_PROTOS,
    PROTO_NUMBERS,
    AnonSet,
    Concat,
    Flags,
    Lit,
    Match,
    Nat,
    NftChain,
    NftRule,
    NftRuleset,
    NftSet,
    Opaque,
    Passive,
    Prefix,
    Range,
    SetElement,
    SetMark,
    SetRef,
    Stmt,
    Unknown,
    Value,
    VerdictStmt,
    VMap,
)

FAMILIES = {1: "inet", 2: "ip", 3: "arp", 5: "netdev", 7: "bridge", 10: "ip6"}
_INET_HOOKS = {0: "prerouting", 1: "input", 2: "forward", 3: "output", 4: "postrouting", 5: "ingress"}
_HOOKS = {"netdev": {0: "ingress", 1: "egress"}, "arp": {0: "input", 1: "output", 2: "forward"}}

_HDR = struct.Struct("=HH")
_HOST = sys.byteorder
_u32 = struct.Struct("!I")
_s32 = struct.Struct("!i")

# set flags (NFT_SET_*)
SET_ANONYMOUS, SET_INTERVAL, SET_MAP, SET_CONCAT = 0x1, 0x4, 0x8, 0x80


@dataclass(frozen=True, slots=True)
class RawRuleset:
    """The dumps as the kernel sent them: one payload (nfgenmsg + attributes) per message."""

    tables: Sequence[bytes]
    chains: Sequence[bytes]
    sets: Sequence[bytes]
    rules: Sequence[bytes]
    ifnames: Mapping[int, str]  # interface index -> name, in the ruleset's namespace


def attrs(buf: bytes, off: int = 0) -> dict[int, bytes]:
    """Netlink attributes of ``buf`` from ``off``: {type: payload} (nested flag masked off)."""
    out: dict[int, bytes] = {}
    end = len(buf)
    unpack = _HDR.unpack_from
    while off + 4 <= end:
        ln, typ = unpack(buf, off)
        if ln < 4:
            break
        out[typ & 0x3FFF] = buf[off + 4 : off + ln]
        off += (ln + 3) & ~3
    return out


def attr_list(buf: bytes) -> list[bytes]:
    """Payloads of a nested list (NFTA_LIST_ELEM ...), in order."""
    out: list[bytes] = []
    off, end = 0, len(buf)
    unpack = _HDR.unpack_from
    while off + 4 <= end:
        ln, _typ = unpack(buf, off)
        if ln < 4:
            break
        out.append(buf[off + 4 : off + ln])
        off += (ln + 3) & ~3
    return out


def _str(b: bytes | None) -> str:
    return b.split(b"\0", 1)[0].decode("utf-8", "replace") if b else ""


def _be(b: bytes | None) -> int:
    return int.from_bytes(b, "big") if b else 0


def _data(b: bytes | None) -> bytes:
    """The value of an nft_data attribute (NFTA_DATA_VALUE)."""
    return attrs(b).get(1, b"") if b else b""


# --------------------------------------------------------------------------- values

_PROTO_NAMES = {n: name for name, n in PROTO_NUMBERS.items()}  # 58: "ipv6-icmp", as nft prints it
_ICMP_TYPES = {0: "echo-reply", 3: "destination-unreachable", 4: "source-quench", 5: "redirect",
               8: "echo-request", 9: "router-advertisement", 10: "router-solicitation", 11: "time-exceeded",
               12: "parameter-problem", 13: "timestamp-request", 14: "timestamp-reply", 15: "info-request",
               16: "info-reply", 17: "address-mask-request", 18: "address-mask-reply"}  # fmt: skip
_ICMP6_TYPES = {1: "destination-unreachable", 2: "packet-too-big", 3: "time-exceeded", 4: "parameter-problem",
                128: "echo-request", 129: "echo-reply", 130: "mld-listener-query", 131: "mld-listener-report",
                132: "mld-listener-done", 133: "nd-router-solicit", 134: "nd-router-advert",
                135: "nd-neighbor-solicit", 136: "nd-neighbor-advert", 137: "nd-redirect",
                138: "router-renumbering", 143: "mld2-listener-report"}  # fmt: skip
_CT_STATE = {1: "invalid", 2: "established", 4: "related", 8: "new", 64: "untracked"}
_CT_STATUS = {1: "expected", 2: "seen-reply", 4: "assured", 8: "confirmed", 16: "snat", 32: "dnat", 512: "dying"}
_TCP_FLAGS = {1: "fin", 2: "syn", 4: "rst", 8: "psh", 16: "ack", 32: "urg", 64: "ecn", 128: "cwr"}
_RTN_TYPES = {0: "unspec", 1: "unicast", 2: "local", 3: "broadcast", 4: "anycast", 5: "multicast",
              6: "blackhole", 7: "unreachable", 8: "prohibit"}  # fmt: skip
_PKTTYPES = {0: "host", 1: "broadcast", 2: "multicast", 3: "other"}
_ETHERTYPES = {0x0800: "ip", 0x86DD: "ip6", 0x0806: "arp", 0x8100: "vlan"}
_REJECT_ICMP = {0: "net-unreachable", 1: "host-unreachable", 2: "prot-unreachable", 3: "port-unreachable",
                9: "net-prohibited", 10: "host-prohibited", 13: "admin-prohibited"}  # fmt: skip
_REJECT_ICMP6 = {0: "no-route", 1: "admin-prohibited", 3: "addr-unreachable", 4: "port-unreachable",
                 5: "policy-fail", 6: "reject-route"}  # fmt: skip
_REJECT_ICMPX = {0: "no-route", 1: "port-unreachable", 2: "host-unreachable", 3: "admin-prohibited"}

_FLAG_NAMES = {"ct state": _CT_STATE, "ct status": _CT_STATUS, "tcp flags": _TCP_FLAGS}
_ADDR_LEN = {"ip saddr": 4, "ip daddr": 4, "ip6 saddr": 16, "ip6 daddr": 16}

# set key datatypes (nft's datatype ids) -> a field whose values have that type
_TYPE_KEY = {2: "meta nfproto", 7: "ip saddr", 8: "ip6 saddr", 10: "meta protocol", 12: "meta l4proto",
             13: "th dport", 14: "icmp type", 15: "tcp flags", 19: "meta mark", 20: "meta iif",
             26: "ct state", 27: "ct direction", 28: "ct status", 29: "icmpv6 type", 31: "meta pkttype",
             38: "fib daddr type", 41: "meta iifname"}  # fmt: skip
_TYPE_NAME = {1: "verdict", 2: "nf_proto", 4: "integer", 5: "string", 7: "ipv4_addr", 8: "ipv6_addr",
              9: "ether_addr", 10: "ether_type", 12: "inet_proto", 13: "inet_service", 14: "icmp_type",
              15: "tcp_flag", 19: "mark", 20: "iface_index", 26: "ct_state", 27: "ct_dir", 28: "ct_status",
              29: "icmpv6_type", 31: "pkt_type", 38: "fib_addrtype", 41: "ifname"}  # fmt: skip
_TYPE_LEN = {2: 1, 7: 4, 8: 16, 10: 2, 12: 1, 13: 2, 14: 1, 15: 1, 19: 4, 20: 4, 26: 4, 27: 1, 28: 4,
             29: 1, 31: 1, 38: 4, 41: 16}  # fmt: skip


def _bits(n: int, names: Mapping[int, str]) -> tuple[str, ...] | None:
    out = [name for bit, name in names.items() if n & bit]
    return tuple(out) if sum(b for b in names if n & b) == n else None


def _hex(b: bytes) -> Opaque:
    return Opaque("0x" + b.hex())


def value(key: str, b: bytes, ifnames: Mapping[int, str] | None = None) -> Value:
    """The bytes a register holds for field ``key``, as the value nft would print."""
    head, _, name = key.partition(" ")
    if key in _ADDR_LEN:
        full = _ADDR_LEN[key]
        if len(b) == full:
            return Lit(str(ipaddress.ip_address(b)))
        if len(b) < full:  # a prefix: nft loads only the bytes it compares
            return Prefix(str(ipaddress.ip_address(b + bytes(full - len(b)))), len(b) * 8)
        return _hex(b)
    if name in ("sport", "dport") and len(b) == 2:
        return Lit(int.from_bytes(b, "big"))
    if key in ("meta l4proto", "ip protocol", "ip6 nexthdr") and len(b) == 1:
        return Lit(_PROTO_NAMES.get(b[0], b[0]))
    if key == "meta nfproto" and len(b) == 1:
        return Lit({2: "ipv4", 10: "ipv6"}.get(b[0], b[0]))
    if key == "meta protocol" and len(b) == 2:
        n = int.from_bytes(b, "big")
        return Lit(_ETHERTYPES.get(n, n))
    if key in ("meta iifname", "meta oifname"):
        text = b.split(b"\0", 1)[0].decode("utf-8", "replace")
        return Lit(text if b"\0" in b else f"{text}*")  # no terminator: nft's "eth*" prefix match
    if key in ("meta iif", "meta oif") and len(b) == 4:
        idx = int.from_bytes(b, _HOST)
        known = (ifnames or {}).get(idx)
        return Lit(known) if known is not None else Opaque(f"interface index {idx}")
    if key in ("meta mark", "ct mark") and len(b) == 4:
        return Lit(int.from_bytes(b, _HOST))
    if key == "meta pkttype" and len(b) == 1:
        return Lit(_PKTTYPES.get(b[0], b[0]))
    if key in _FLAG_NAMES:
        n = int.from_bytes(b, _HOST if head == "ct" else "big")
        names = _bits(n, _FLAG_NAMES[key])
        if names is None:
            return _hex(b)
        return Lit(names[0]) if len(names) == 1 else Flags(names)
    if key in ("icmp type", "icmpv6 type") and len(b) == 1:
        return Lit((_ICMP_TYPES if head == "icmp" else _ICMP6_TYPES).get(b[0], b[0]))
    if key == "ct direction" and len(b) == 1:
        return Lit({0: "original", 1: "reply"}.get(b[0], b[0]))
    if key == "ct zone" and len(b) == 2:
        return Lit(int.from_bytes(b, _HOST))
    if key == "fib daddr type" and len(b) == 4:
        n = int.from_bytes(b, _HOST)
        return Lit(_RTN_TYPES.get(n, n))
    if head == "fib" and name.endswith(" oif"):
        if len(b) == 1:  # NFTA_FIB_F_PRESENT: a boolean
            return Lit(bool(b[0]))
        if len(b) == 4 and not any(b):
            return Lit(False)  # "oif missing"
    return _hex(b)


def _range(lo: Value, hi: Value, text: str) -> Value:
    """``lo-hi`` of two decoded literals; Opaque(text) when they are not plain values."""
    if isinstance(lo, Lit) and isinstance(hi, Lit) and not isinstance(lo.value, bool) and not isinstance(hi.value, bool):
        return Range(lo.value, hi.value)
    return Opaque(text)


def _mask_len(mask: bytes) -> int | None:
    """Prefix length of a contiguous netmask, else None."""
    n = int.from_bytes(mask, "big")
    bits = len(mask) * 8
    ones = bin(n).count("1")
    return ones if n == ((1 << ones) - 1) << (bits - ones) else None


# --------------------------------------------------------------------------- expressions
# One rule expression (NFTA_LIST_ELEM payload) -> a small tuple; cached by its exact bytes,
# since most expressions (loads, verdicts, counters) repeat across thousands of rules.

_VERDICTS = {0: "drop", 1: "accept", 3: "queue", -1: "continue", -3: "jump", -4: "goto", -5: "return"}
_CMP_OPS = {0: "==", 1: "!=", 2: "<", 3: "<=", 4: ">", 5: ">="}
_META_KEYS = {1: "protocol", 3: "mark", 4: "iif", 5: "oif", 6: "iifname", 7: "oifname", 15: "nfproto",
              16: "l4proto", 19: "pkttype", 2: "priority", 8: "iiftype", 9: "oiftype", 10: "skuid",
              11: "skgid", 12: "nftrace", 13: "rtclassid", 14: "secmark", 20: "cpu", 21: "iifgroup",
              22: "oifgroup", 23: "cgroup", 24: "random", 25: "secpath", 26: "iifkind", 27: "oifkind",
              0: "length", 33: "sdif", 34: "sdifname"}  # fmt: skip
_CT_KEYS = {0: "state", 1: "direction", 2: "status", 3: "mark", 4: "secmark", 5: "expiration", 6: "helper",
            7: "l3proto", 8: "saddr", 9: "daddr", 10: "protocol", 11: "proto-src", 12: "proto-dst",
            13: "label", 14: "packets", 15: "bytes", 16: "avgpkt", 17: "zone", 18: "event", 19: "ip saddr",
            20: "ip daddr", 21: "ip6 saddr", 22: "ip6 daddr", 23: "id"}  # fmt: skip
_LIMIT_UNITS = {1: "second", 60: "minute", 3600: "hour", 86400: "day", 604800: "week"}
_PASSIVE_EXPRS = {"counter": "counter", "log": "log", "notrack": "notrack", "last": "last", "synproxy": "synproxy"}

Expr = tuple[Any, ...]  # (kind, operands...): internal, see _expr
_cache: dict[bytes, Expr] = {}


def _slot(reg: int) -> int:
    """A register number as the index of its first 32-bit slot (NFT_REG_1..4 are 16 bytes)."""
    return (reg - 1) * 4 if 1 <= reg <= 4 else reg - 8


def expr(elem: bytes) -> Expr:
    got = _cache.get(elem)
    if got is not None:
        return got
    # cmp carries each rule's own constant, so it is parsed at its fixed offsets (the
    # kernel's nft_cmp_dump layout) and not cached; anything unexpected takes the slow path.
    if (
        elem[4:8] == b"cmp\0" and elem[12:19] == b"\x08\x00\x01\x00\x00\x00\x00"
        and elem[20:27] == b"\x08\x00\x02\x00\x00\x00\x00" and elem[34:36] == b"\x01\x00"
    ):  # fmt: skip
        vlen = int.from_bytes(elem[32:34], "little") - 4
        return ("cmp", _slot(elem[19]), _CMP_OPS.get(elem[27], "?"), elem[36 : 36 + vlen])
    got = _expr(elem)
    if len(_cache) < 50000:
        _cache[elem] = got
    return got


def _expr(elem: bytes) -> Expr:
    a = attrs(elem)
    name = _str(a.get(1))
    d = attrs(a.get(2, b""))
    if name == "cmp":
        return ("cmp", _slot(_be(d.get(1))), _CMP_OPS.get(_be(d.get(2)), "?"), _data(d.get(3)))
    if name == "payload":
        if 5 in d:  # NFTA_PAYLOAD_SREG: a payload write
            return ("passive", "payload set")
        return ("payload", _slot(_be(d.get(1))), _be(d.get(2)), _be(d.get(3)), _be(d.get(4)))
    if name == "meta":
        key = _META_KEYS.get(_be(d.get(2)), f"key{_be(d.get(2))}")
        if 3 in d:
            return ("meta_set", _slot(_be(d.get(3))), key)
        return ("load", _slot(_be(d.get(1))), f"meta {key}", 0)
    if name == "ct":
        key = _CT_KEYS.get(_be(d.get(2)), f"key{_be(d.get(2))}")
        if 3 in d:
            key = ("original " if d[3][:1] == bytes(1) else "reply ") + key
        if 4 in d:
            return ("ct_set", _slot(_be(d.get(4))), key)
        return ("load", _slot(_be(d.get(1))), f"ct {key}", 0)
    if name == "immediate":
        data = attrs(d.get(2, b""))
        if 2 in data:
            v = attrs(data[2])
            code = _s32.unpack(v[1])[0] if len(v.get(1, b"")) == 4 else 0
            return ("verdict", _VERDICTS.get(code, f"verdict {code}"), _str(v.get(2)) or None)
        return ("imm", _slot(_be(d.get(1))), data.get(1, b""))
    if name == "bitwise":
        if _be(d.get(6)) != 0:  # a shift
            return ("unknown_load", _slot(_be(d.get(2))), "bitwise shift")
        return ("bitwise", _slot(_be(d.get(1))), _slot(_be(d.get(2))), _data(d.get(4)), _data(d.get(5)))
    if name == "range":
        return ("range", _slot(_be(d.get(1))), _be(d.get(2)), _data(d.get(3)), _data(d.get(4)))
    if name == "lookup":
        dreg = _slot(_be(d[3])) if 3 in d else None
        return ("lookup", _slot(_be(d.get(2))), _str(d.get(1)), dreg, bool(_be(d.get(5)) & 1))
    if name == "fib":
        flags = _be(d.get(3))
        parts = [n for bit, n in ((1, "saddr"), (2, "daddr"), (4, "mark"), (8, "iif"), (16, "oif")) if flags & bit]
        result = {1: "oif", 2: "oifname", 3: "type"}.get(_be(d.get(2)), "?")
        return ("load", _slot(_be(d.get(1))), f"fib {' . '.join(parts)} {result}", 0)
    if name in _PASSIVE_EXPRS:
        return ("passive", _PASSIVE_EXPRS[name])
    if name == "limit":
        rate, unit, burst = _be(d.get(1)), _be(d.get(2)), _be(d.get(3))
        per = _LIMIT_UNITS.get(unit, f"{unit} seconds")
        text = f"limit rate {'over ' if _be(d.get(5)) & 1 else ''}{rate}{' bytes' if _be(d.get(4)) == 1 else ''}/{per}"
        if burst:
            text += f" burst {burst} {'bytes' if _be(d.get(4)) == 1 else 'packets'}"
        return ("passive", text)
    if name == "reject":
        rtype, code = _be(d.get(1)), (d.get(2) or b"\0")[0]
        return ("reject", rtype, code)
    if name == "nat":
        regs = tuple(_slot(_be(d[i])) if i in d else None for i in (3, 4, 5, 6))
        return ("nat", "dnat" if _be(d.get(1)) == 1 else "snat", _be(d.get(2)), *regs)
    if name == "masq":
        return ("nat", "masquerade", 0, None, None, None, None)
    if name == "redir":
        regs = tuple(_slot(_be(d[i])) if i in d else None for i in (1, 2))
        return ("nat", "redirect", 0, None, None, *regs)
    if name == "queue":
        return ("verdict", "queue", None)
    if name in ("match", "target"):
        return ("unknown", f"xt {name} {_str(d.get(1))}")
    if name == "objref":
        kind = {1: "counter", 2: "quota", 3: "ct helper", 4: "limit"}.get(_be(d.get(1)), "object")
        obj = _str(d.get(2)) or f"map @{_str(d.get(4))}"
        return ("passive", f"counter name {obj}") if kind == "counter" else ("unknown", f"{kind} name {obj}")
    if name == "dynset":
        return ("unknown", f"update @{_str(d.get(1))}")
    if name == "connlimit":
        return ("unknown", f"ct count {'over ' if _be(d.get(2)) & 1 else ''}{_be(d.get(1))}")
    if name == "quota":
        return ("unknown", "quota")
    if name in ("exthdr", "socket", "rt", "osf", "hash", "numgen", "xfrm", "tunnel", "inner"):
        if 1 in d:  # a load into a register: a later compare on it is undecided
            return ("unknown_load", _slot(_be(d.get(1))), name)
        return ("unknown", name)
    return ("unknown", name)


# --------------------------------------------------------------------------- decompiling a rule


@dataclass(slots=True)
class _Reg:
    key: str  # field name ("tcp dport"), "" for an immediate or a map result
    size: int  # bytes loaded
    mask: bytes | None = None
    xor: bytes | None = None
    imm: bytes | None = None
    origin: str = ""  # for map results: "tcp dport map @m"
    parts: tuple[tuple[str, int], ...] = ()  # a merged load of adjacent fields: (field, bytes) each
    deps: tuple[int, ...] = ()  # indexes of the dependency matches this field implies


_NH = {"ip": {9: ("ip protocol", 1), 12: ("ip saddr", 4), 16: ("ip daddr", 4)},
       "ip6": {6: ("ip6 nexthdr", 1), 8: ("ip6 saddr", 16), 24: ("ip6 daddr", 16)}}  # fmt: skip


def _field_size(key: str) -> int:
    if key in _ADDR_LEN:
        return _ADDR_LEN[key]
    return 2 if key.endswith(("sport", "dport")) else 1 if key.endswith(("protocol", "nexthdr")) else 0


def _payload_key(base: int, off: int, size: int, nh: str | None, l4: str | None) -> tuple[str, str | None]:
    """(field name, dependency it used) of a payload load; a raw ``@base,bit,bits`` if unnamed."""
    if base == 1 and nh in _NH:
        hit = _NH[nh].get(off)
        if hit is not None and size <= hit[1]:
            return hit[0], "nh"
    if base == 2:
        if off in (0, 2) and size == 2 and (l4 in PORT_PROTOS or l4 is None):
            return f"{l4 or 'th'} {'sport' if off == 0 else 'dport'}", "l4" if l4 else None
        if l4 == "tcp" and off == 13 and size == 1:
            return "tcp flags", "l4"
        if l4 in ("icmp", "icmpv6") and off == 0 and size == 1:
            return f"{l4} type", "l4"
        if l4 in ("icmp", "icmpv6") and off == 1 and size == 1:
            return f"{l4} code", "l4"
    return f"@{('ll', 'nh', 'th', 'ih')[base] if base < 4 else base},{off * 8},{size * 8}", None


def _key_text(key: str) -> str:
    return {"meta iifname": "iifname", "meta oifname": "oifname", "meta iif": "iif", "meta oif": "oif"}.get(key, key)


class _Decompiler:
    """Turns one rule's expressions into statements (see the module docstring)."""

    __slots__ = ("family", "ifnames", "l4", "l4_dep", "nh", "nh_dep", "regs", "sets", "stmts", "used")

    def __init__(self, family: str, sets: Mapping[str, NftSet], ifnames: Mapping[int, str]) -> None:
        self.family = family
        self.sets = sets
        self.ifnames = ifnames
        self.regs: dict[int, _Reg] = {}
        self.stmts: list[Stmt | None] = []
        self.nh: str | None = {"ip": "ip", "ip6": "ip6"}.get(family)
        self.l4: str | None = None
        self.nh_dep: int | None = None
        self.l4_dep: int | None = None
        self.used: set[int] = set()

    def run(self, exprs: Iterable[Expr]) -> tuple[Stmt, ...]:
        for e in exprs:
            self.step(e)
        out: list[Stmt] = []
        for i, s in enumerate(self.stmts):
            if s is None or i in self.used:
                continue
            prev = out[-1] if out else None
            if (  # "tcp dport 10-20" compiled as two compares
                isinstance(s, Match) and isinstance(prev, Match) and prev.op == ">=" and s.op == "<="
                and prev.key == s.key and prev.mask is None and s.mask is None
                and isinstance(prev.right, Lit) and isinstance(s.right, Lit)
                and not isinstance(prev.right.value, bool) and not isinstance(s.right.value, bool)
                and type(prev.right.value) is type(s.right.value)
            ):  # fmt: skip
                out[-1] = Match(s.key, "==", Range(prev.right.value, s.right.value))
                continue
            out.append(s)
        return tuple(out)

    def _dep(self, key: str, v: Value, op: str) -> None:
        if op != "==" or not isinstance(v, Lit):
            return
        idx = len(self.stmts)  # the match about to be appended
        if key in ("meta nfproto", "meta protocol") and v.value in ("ipv4", "ip", "ipv6", "ip6"):
            self.nh = "ip" if v.value in ("ipv4", "ip") else "ip6"
            self.nh_dep = idx
        elif key in ("meta l4proto", "ip protocol", "ip6 nexthdr") and isinstance(v.value, str):
            self.l4 = "icmpv6" if v.value == "ipv6-icmp" else v.value
            self.l4_dep = idx

    def _load(self, slot: int, reg: _Reg) -> None:
        for s in range(slot, slot + max(1, (reg.size + 3) // 4)):
            self.regs.pop(s, None)
        self.regs[slot] = reg

    def _deps(self, used: str | None) -> tuple[int, ...]:
        """The dependency matches a field named through them makes redundant."""
        if used == "nh" and self.nh_dep is not None:
            return (self.nh_dep,)
        if used == "l4" and self.l4_dep is not None:
            # icmp implies IPv4 and icmpv6 IPv6: nft hides the family match too
            if self.nh_dep is not None and (self.l4, self.nh) in (("icmp", "ip"), ("icmpv6", "ip6")):
                return (self.l4_dep, self.nh_dep)
            return (self.l4_dep,)
        return ()

    def _fold(self, reg: _Reg) -> None:
        """A match on a field hides the dependency matches it implies, as nft's listing
        does. Not so for a map lookup feeding a statement (``dnat to tcp dport map @m``):
        there no match on the field is left to fail for a packet without that header."""
        self.used.update(reg.deps)

    def step(self, e: Expr) -> None:
        kind = e[0]
        if kind == "payload":
            _, slot, base, off, size = e
            key, used = _payload_key(base, off, size, self.nh, self.l4)
            parts: tuple[tuple[str, int], ...] = ()
            if key.startswith("@"):  # nft merges adjacent compared fields into one load
                parts, used = self._merged(base, off, size)
            self._load(slot, _Reg(key, size, parts=parts, deps=self._deps(used)))
        elif kind == "load":
            _, slot, key, _ = e
            size = 16 if key in ("meta iifname", "meta oifname") else 4
            self._load(slot, _Reg(str(key), size))
        elif kind == "unknown_load":
            self._load(e[1], _Reg(str(e[2]), 16))
        elif kind == "imm":
            _, slot, data = e
            self._load(slot, _Reg("", len(data), imm=data))
        elif kind == "bitwise":
            _, sreg, dreg, mask, xor = e
            src = self.regs.get(sreg)
            if src is None:
                self.stmts.append(Unknown("bitwise on an unset register"))
                return
            self._load(dreg, _Reg(src.key, src.size, mask, xor, deps=src.deps))
        elif kind == "cmp":
            self._cmp(e)
        elif kind == "range":
            _, sreg, op, lo, hi = e
            reg = self.regs.get(sreg)
            if reg is None or reg.mask is not None:
                self.stmts.append(Unknown("range"))
                return
            self._fold(reg)
            a, b = value(reg.key, lo, self.ifnames), value(reg.key, hi, self.ifnames)
            rng = _range(a, b, f"{a}-{b}")
            self.stmts.append(Match((reg.key,), "!=" if op == 1 else "==", rng))
        elif kind == "lookup":
            self._lookup(e)
        elif kind == "verdict":
            self.stmts.append(VerdictStmt(str(e[1]), e[2] if isinstance(e[2], str) else None))
        elif kind == "reject":
            if int(e[1]) == 0 and self.nh_dep is not None:
                self.used.add(self.nh_dep)  # nft's listing hides the family an icmp reject needs
            self.stmts.append(VerdictStmt("reject", self._reject(int(e[1]), int(e[2]))))
        elif kind == "nat":
            self.stmts.append(self._nat(e))
        elif kind in ("meta_set", "ct_set"):
            what = f"{'meta' if kind == 'meta_set' else 'ct'} {e[2]}"
            if what in ("meta mark", "ct mark"):
                reg = self.regs.get(e[1])
                val = int.from_bytes(reg.imm, _HOST) if reg is not None and reg.imm is not None and len(reg.imm) == 4 else None
                self.stmts.append(SetMark(what, val))
            else:
                self.stmts.append(Passive(f"set {what}"))
        elif kind == "passive":
            self.stmts.append(Passive(str(e[1])))
            self.nh_dep = self.l4_dep = None  # nft keeps a dependency written before a statement
        else:
            self.stmts.append(Unknown(str(e[1])))

    def _reject(self, rtype: int, code: int) -> str:
        if rtype == 1:
            return "tcp reset"
        if rtype == 2:
            return f"icmpx type {_REJECT_ICMPX.get(code, code)}"
        if self.nh == "ip6":
            return f"icmpv6 type {_REJECT_ICMP6.get(code, code)}"
        return f"icmp type {_REJECT_ICMP.get(code, code)}"

    def _merged(self, base: int, off: int, size: int) -> tuple[tuple[tuple[str, int], ...], str | None]:
        """``tcp sport 1 tcp dport 2`` loaded as one 4-byte word: the fields it spans."""
        parts: list[tuple[str, int]] = []
        used: str | None = None
        pos, end = off, off + size
        while pos < end:
            for width in (16, 4, 2, 1):
                key, dep = _payload_key(base, pos, width, self.nh, self.l4)
                if not key.startswith("@") and pos + width <= end and _field_size(key) == width:
                    parts.append((key, width))
                    used = used or dep
                    pos += width
                    break
            else:
                return (), None
        return tuple(parts), used

    def _cmp(self, e: Expr) -> None:
        _, sreg, op, data = e
        reg = self.regs.get(sreg)
        assert isinstance(data, bytes) and isinstance(op, str)
        if reg is None:
            self.stmts.append(Unknown("cmp on an unset register"))
            return
        self._fold(reg)
        if reg.parts and op == "==" and reg.mask is None and len(data) == reg.size:
            at = 0
            for key, width in reg.parts:
                self.stmts.append(Match((key,), "==", value(key, data[at : at + width], self.ifnames)))
                at += width
            return
        key = reg.key
        if not key:
            self.stmts.append(Unknown("cmp of a constant"))
            return
        mask: Value | None = None
        if reg.mask is not None:
            if reg.xor is not None and any(reg.xor):
                self.stmts.append(Match((key,), op, _hex(data), _hex(reg.mask)))
                return
            if key in _ADDR_LEN:
                plen = _mask_len(reg.mask)
                if plen is None or op not in ("==", "!="):
                    self.stmts.append(Match((key,), op, _hex(data), _hex(reg.mask)))
                    return
                full = _ADDR_LEN[key]
                addr = ipaddress.ip_address(data[: reg.size] + bytes(full - min(full, reg.size)))
                self.stmts.append(Match((key,), op, Prefix(str(addr), plen)))
                return
            if key in _FLAG_NAMES:
                m = value(key, reg.mask)
                if not any(data):  # "ct state established,related" / "ct state != ..."
                    names = m.names if isinstance(m, Flags) else ((str(m.value),) if isinstance(m, Lit) else ())
                    self.stmts.append(Match((key,), "in" if op == "!=" else "!=", Flags(names)))
                    return
                mask = m
            else:
                m = value(key, reg.mask)
                mask = m if isinstance(m, Lit) and isinstance(m.value, int) else _hex(reg.mask)
        v = value(key, data, self.ifnames)
        if mask is None:
            self._dep(key, v, op)
        self.stmts.append(Match((key,), op, v, mask))

    def _lookup(self, e: Expr) -> None:
        _, sreg, name, dreg, inv = e
        assert isinstance(sreg, int) and isinstance(name, str)
        s = self.sets.get(name)
        klen = s.key_len if s is not None else 4
        keys: list[str] = []
        regs: list[_Reg] = []
        slot, covered = sreg, 0
        while covered < klen:
            reg = self.regs.get(slot)
            if reg is None or not reg.key or reg.mask is not None:
                self.stmts.append(Unknown(f"lookup in @{name}"))
                return
            keys.append(reg.key)
            regs.append(reg)
            step = (reg.size + 3) // 4
            slot += step
            covered += step * 4
        ref = SetRef(name)
        vmap = dreg is not None and dreg == _slot(0)
        if dreg is None or vmap:
            for reg in regs:
                self._fold(reg)
        if dreg is None:
            self.stmts.append(Match(tuple(keys), "!=" if inv else "==", ref))
        elif vmap:
            self.stmts.append(VMap(tuple(keys), ref))
        else:
            text = f"{' . '.join(_key_text(k) for k in keys)} map @{name}"
            self._load(int(dreg), _Reg("", 16, origin=text))

    def _nat(self, e: Expr) -> Stmt:
        _, kind, family, amin, amax, pmin, pmax = e
        assert isinstance(kind, str)
        addr: str | None = None
        port: int | None = None
        opaque: str | None = None
        for slot in (amin, pmin):  # "dnat to tcp dport map @m": address and port both from a map
            reg = self.regs.get(slot) if slot is not None else None
            if reg is not None and reg.origin:
                return Nat(kind, None, None, reg.origin)
        for slot, what in ((amin, "addr"), (pmin, "port")):
            if slot is None:
                continue
            reg = self.regs.get(slot)
            if reg is None or reg.imm is None:
                opaque = reg.origin if reg is not None and reg.origin else f"{kind} {what} from a register"
                continue
            if what == "addr":
                imm = reg.imm[:4] if family == 2 else reg.imm[:16]
                try:
                    addr = str(ipaddress.ip_address(imm))
                except ValueError:
                    opaque = "0x" + reg.imm.hex()
            else:
                port = int.from_bytes(reg.imm[:2], "big")
        for slot, lo in ((amax, amin), (pmax, pmin)):
            if slot is not None and slot != lo:
                r1, r2 = self.regs.get(slot), self.regs.get(lo)
                if r1 is None or r2 is None or r1.imm != r2.imm:
                    opaque = opaque or f"{kind} to a range"
        return Nat(kind, addr, port, opaque)


# --------------------------------------------------------------------------- whole ruleset


_SET_SHAPES: dict[tuple[bytes | None, ...], tuple[Any, ...]] = {}


def _set_shape(flag_b: bytes | None, type_b: bytes | None, len_b: bytes | None, dtype_b: bytes | None, desc_b: bytes | None) -> tuple[Any, ...]:
    flags = _be(flag_b)
    ktype = _be(type_b)
    ids: list[int] = []
    while ktype:
        ids.insert(0, ktype & 0x3F)
        ktype >>= 6
    klen = _be(len_b)
    if len(ids) == 1:  # most sets: one field, as long as the key
        lens: tuple[int, ...] = (klen,)
    else:
        desc = attrs(desc_b) if desc_b else {}
        lens = tuple(_be(attrs(f).get(1)) for f in attr_list(desc[2])) if 2 in desc else ()
        if len(lens) != len(ids):
            lens = tuple(_TYPE_LEN.get(i, 0) for i in ids)
    dtype = _be(dtype_b) if flags & SET_MAP else None
    key_type = tuple(_TYPE_NAME.get(i, f"type{i}") for i in ids)
    map_type = _TYPE_NAME.get(dtype, f"type{dtype}") if dtype is not None else None
    return (key_type, bool(flags & SET_MAP), map_type, flags, tuple(ids), lens, klen)


def _set_header(msg: bytes) -> NftSet:
    a = attrs(msg, 4)
    key = (a.get(3), a.get(4), a.get(5), a.get(6), a.get(9))
    shape = _SET_SHAPES.get(key)
    if shape is None:
        shape = _SET_SHAPES[key] = _set_shape(*key)
    key_type, is_map, map_type, flags, ids, lens, klen = shape
    family = FAMILIES.get(msg[0], str(msg[0]))
    return NftSet(family, _str(a.get(1)), _str(a.get(2)), key_type, (), is_map, map_type, False, flags, ids, lens, klen)


def decode_rule(rule: NftRule, sets: Mapping[str, NftSet], ifnames: Mapping[int, str]) -> NftRule:
    """A rule read lazily (``raw`` bytecode) with its statements decoded."""
    if rule.raw is None:
        return rule
    stmts = _Decompiler(rule.family, sets, ifnames).run([expr(x) for x in attr_list(rule.raw)])
    return replace(rule, stmts=stmts, raw=None)


def decode_ruleset(raw: RawRuleset, *, lazy: bool = False) -> NftRuleset:
    """Tables, chains, rules and set headers (elements are read separately). ``lazy``:
    rules keep their bytecode (``raw``) and are decoded by :func:`decode_rule` when needed."""
    tables = []
    for msg in raw.tables:
        tables.append((FAMILIES.get(msg[0], str(msg[0])), _str(attrs(msg, 4).get(1))))
    sets = [_set_header(m) for m in raw.sets]
    by_table: dict[tuple[str, str], dict[str, NftSet]] = {}
    for s in sets:
        by_table.setdefault((s.family, s.table), {})[s.name] = s
    rules: dict[tuple[str, str, str], list[NftRule]] = {}
    names: dict[bytes, str] = {}
    for msg in raw.rules:
        family = FAMILIES.get(msg[0], str(msg[0]))
        a = attrs(msg, 4)
        tb, cb = a.get(1, b""), a.get(2, b"")
        table = names.get(tb) or names.setdefault(tb, _str(tb))
        chain = names.get(cb) or names.setdefault(cb, _str(cb))
        blob = a.get(4, b"")
        stmts: tuple[Stmt, ...] = ()
        if not lazy:
            stmts = _Decompiler(family, by_table.get((family, table), {}), raw.ifnames).run([expr(x) for x in attr_list(blob)])
        comment = None
        ud = a.get(7)
        if ud:
            off = 0
            while off + 2 <= len(ud):
                t, ln = ud[off], ud[off + 1]
                if t == 0:
                    comment = _str(ud[off + 2 : off + 2 + ln])
                off += 2 + ln
        handle = _be(a.get(3)) if 3 in a else None
        rule = NftRule(family, table, chain, handle, stmts, "", comment or None, None, blob if lazy else None)
        rules.setdefault((family, table, chain), []).append(rule)
    chains = []
    for msg in raw.chains:
        family = FAMILIES.get(msg[0], str(msg[0]))
        a = attrs(msg, 4)
        table, name = _str(a.get(1)), _str(a.get(3))
        hook = prio = policy = device = ctype = None
        if 4 in a:
            h = attrs(a[4])
            hooks = _HOOKS.get(family, _INET_HOOKS)
            hook = hooks.get(_be(h.get(1)), f"hook{_be(h.get(1))}")
            prio = _s32.unpack(h[2])[0] if len(h.get(2, b"")) == 4 else 0
            if 3 in h:
                device = _str(h[3])
            elif 4 in h:
                device = ",".join(_str(x) for x in attr_list(h[4]))
            policy = "drop" if _be(a.get(5)) == 0 and 5 in a else "accept"
            ctype = _str(a.get(7)) or "filter"
        chains.append(NftChain(family, table, name, tuple(rules.get((family, table, name), ())), ctype, hook, prio, policy, device or None))
    ifnames = tuple(sorted(raw.ifnames.items()))
    return NftRuleset(chains=tuple(chains), sets=tuple(sets), tables=tuple(tables), ifnames=ifnames)


def decode_elements(s: NftSet, msgs: Iterable[bytes], ifnames: Mapping[int, str] | None = None) -> NftSet:
    """A set header plus its GETSETELEM dump -> the complete set."""
    fields = [(_TYPE_KEY.get(i, ""), ln) for i, ln in zip(s.key_ids, s.field_lens, strict=False)]
    interval = bool(s.flags & SET_INTERVAL)
    points: list[tuple[bytes, bool, SetElement | None]] = []  # interval sets: (key, is_end, element)
    out: list[SetElement] = []
    plain: list[tuple[bytes, SetElement]] = []
    for msg in msgs:
        a = attrs(msg, 4)
        for elem in attr_list(a.get(3, b"")):
            ea = attrs(elem)
            flags = _be(ea.get(3))
            if flags & 2:  # the catch-all element "*"
                out.append(SetElement(Opaque("*"), *_elem_data(ea, s)))
                continue
            key = _data(ea.get(1))
            if interval and 10 in ea:  # pipapo: start and (inclusive) end in one element
                out.append(SetElement(_span(fields, key, _data(ea[10]), ifnames), *_elem_data(ea, s)))
            elif interval:
                points.append((key, bool(flags & 1), None if flags & 1 else SetElement(Opaque(""), *_elem_data(ea, s))))
            else:
                plain.append((key, SetElement(_split(fields, key, ifnames), *_elem_data(ea, s))))
    plain.sort(key=lambda p: p[0])  # nft lists elements by value
    out.extend(e for _, e in plain)
    if points:
        points.sort(key=lambda p: (p[0], not p[1]))  # an end sorts before a start at the same key
        for i, (key, is_end, el) in enumerate(points):
            if is_end or el is None:
                continue
            nxt = next((p for p in points[i + 1 :] if p[1]), None)
            if nxt is not None:
                n = int.from_bytes(nxt[0], "big") - 1
                hi = n.to_bytes(len(nxt[0]), "big")
            else:
                hi = b"\xff" * len(key)
            out.append(replace(el, key=_span(fields, key, hi, ifnames)))
    return replace(s, elements=tuple(out), complete=True)


def _elem_data(ea: Mapping[int, bytes], s: NftSet) -> tuple[VerdictStmt | None, Value | None]:
    if not s.is_map or 2 not in ea:
        return None, None
    d = attrs(ea[2])
    if 2 in d:
        v = attrs(d[2])
        code = _s32.unpack(v[1])[0] if len(v.get(1, b"")) == 4 else 0
        return VerdictStmt(_VERDICTS.get(code, f"verdict {code}"), _str(v.get(2)) or None), None
    return None, _hex(d.get(1, b""))


def _parts(fields: Sequence[tuple[str, int]], key: bytes) -> list[tuple[str, bytes]] | None:
    if len(fields) <= 1:
        return [(fields[0][0] if fields else "", key[: fields[0][1]] if fields and fields[0][1] else key)]
    out, off = [], 0
    for k, ln in fields:
        if ln <= 0 or off + ln > len(key):
            return None
        out.append((k, key[off : off + ln]))
        off += (ln + 3) & ~3
    return out


def _split(fields: Sequence[tuple[str, int]], key: bytes, ifnames: Mapping[int, str] | None) -> Value:
    parts = _parts(fields, key)
    if parts is None:
        return _hex(key)
    vals = [value(k, b, ifnames) if k else _hex(b) for k, b in parts]
    return vals[0] if len(vals) == 1 else Concat(tuple(vals))


def _span(fields: Sequence[tuple[str, int]], lo: bytes, hi: bytes, ifnames: Mapping[int, str] | None) -> Value:
    lps, hps = _parts(fields, lo), _parts(fields, hi)
    if lps is None or hps is None:
        return _hex(lo)
    vals: list[Value] = []
    for (k, a), (_, b) in zip(lps, hps, strict=True):
        if a == b:
            vals.append(value(k, a, ifnames) if k else _hex(a))
            continue
        if k in _ADDR_LEN:
            lo_i, hi_i = int.from_bytes(a, "big"), int.from_bytes(b, "big")
            span = hi_i - lo_i + 1
            if span & (span - 1) == 0 and lo_i % span == 0:
                plen = len(a) * 8 - (span.bit_length() - 1)
                vals.append(Prefix(str(ipaddress.ip_address(a)), plen))
            else:
                vals.append(Range(str(ipaddress.ip_address(a)), str(ipaddress.ip_address(b))))
            continue
        vals.append(_range(value(k, a, ifnames), value(k, b, ifnames), f"0x{a.hex()}-0x{b.hex()}"))
    return vals[0] if len(vals) == 1 else Concat(tuple(vals))


# --------------------------------------------------------------------------- anonymous sets


def has_xt_bytes(raw: bytes) -> bool:
    """Does a rule's bytecode hold an xtables match or target (iptables-nft)?"""
    return b"\x0a\x00\x01\x00match\x00" in raw or b"\x0b\x00\x01\x00target\x00" in raw


def is_anonymous(name: str) -> bool:
    return name.startswith("__")


def anonymous_refs(rule: NftRule) -> set[str]:
    out = set()
    for s in rule.stmts:
        if isinstance(s, Match) and isinstance(s.right, SetRef) and is_anonymous(s.right.name):
            out.add(s.right.name)
        elif isinstance(s, VMap) and isinstance(s.data, SetRef) and is_anonymous(s.data.name):
            out.add(s.data.name)
    return out


def inline_anonymous(rule: NftRule, sets: Mapping[str, NftSet]) -> NftRule:
    """The rule with its anonymous sets written out (``tcp dport { 22, 80-90 }``)."""
    stmts: list[Stmt] = []
    changed = False
    for s in rule.stmts:
        if isinstance(s, Match) and isinstance(s.right, SetRef) and is_anonymous(s.right.name):
            got = sets.get(s.right.name)
            if got is not None and got.complete:
                s = replace(s, right=AnonSet(tuple(e.key for e in got.elements)))
                changed = True
        elif isinstance(s, VMap) and isinstance(s.data, SetRef) and is_anonymous(s.data.name):
            got = sets.get(s.data.name)
            if got is not None and got.complete and all(e.verdict is not None for e in got.elements):
                s = replace(s, data=tuple((e.key, e.verdict) for e in got.elements if e.verdict is not None))
                changed = True
        stmts.append(s)
    return replace(rule, stmts=tuple(stmts)) if changed else rule
