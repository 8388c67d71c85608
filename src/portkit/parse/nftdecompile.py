"""nf_tables bytecode -> the evaluator's statements: the decompiler.

Theory of operation. nft compiles each high-level match into loads into registers and
operations on them; libnftables turns them back into expressions when it lists a ruleset.
This module does the same for the expression tuples of :mod:`portkit.parse.nftexpr`,
producing the statement vocabulary :mod:`portkit.parse.nftjson` produces::

    [ meta load l4proto => reg 1 ] [ cmp eq reg 1 0x06 ]          (dependency, folded)
    [ payload load 2b @ transport header + 2 => reg 1 ]
    [ cmp eq reg 1 0x0016 ]                                      -> Match(("tcp dport",), "==", Lit(22))
    [ immediate reg 0 accept ]                                   -> VerdictStmt("accept")

Registers are tracked as the kernel's 32-bit slots, so concatenations (``ip saddr . tcp
dport @s``) resolve to tuples of fields. A load the decompiler cannot name keeps a raw key
(``@nh,96,32``) that the evaluator reports as undecided; an expression it does not know
becomes ``Unknown(name)``. Nothing is guessed.

:func:`value` turns the bytes a register holds for a field into the value nft prints; the
ruleset assembler (:mod:`portkit.parse.nftnetlink`) uses it for set elements too.
Pure: tuples and bytes in, model out.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from portkit.model.firewall import (
    PORT_PROTOS,
    Flags,
    Lit,
    Match,
    Nat,
    NftSet,
    Opaque,
    Passive,
    Prefix,
    Range,
    SetMark,
    SetRef,
    Stmt,
    Unknown,
    Value,
    VerdictStmt,
    VMap,
)
from portkit.parse.nftconst import (
    ADDR_LEN,
    ETHERTYPES,
    FLAG_NAMES,
    ICMP6_TYPES,
    ICMP_TYPES,
    NH_FIELDS,
    PKTTYPES,
    PROTO_NAMES,
    REJECT_ICMP,
    REJECT_ICMP6,
    REJECT_ICMPX,
    RTN_TYPES,
)
from portkit.parse.nftexpr import Expr, register_slot
from portkit.parse.nftvalues import key_text

_HOST = sys.byteorder

# --------------------------------------------------------------------------- values


def _bits(n: int, names: Mapping[int, str]) -> tuple[str, ...] | None:
    out = [name for bit, name in names.items() if n & bit]
    return tuple(out) if sum(b for b in names if n & b) == n else None


def hex_value(b: bytes) -> Opaque:
    return Opaque("0x" + b.hex())


def value(key: str, b: bytes, ifnames: Mapping[int, str] | None = None) -> Value:
    """The bytes a register holds for field ``key``, as the value nft would print."""
    head, _, name = key.partition(" ")
    if key in ADDR_LEN:
        full = ADDR_LEN[key]
        if len(b) == full:
            return Lit(str(ipaddress.ip_address(b)))
        if len(b) < full:  # a prefix: nft loads only the bytes it compares
            return Prefix(str(ipaddress.ip_address(b + bytes(full - len(b)))), len(b) * 8)
        return hex_value(b)
    if name in ("sport", "dport") and len(b) == 2:
        return Lit(int.from_bytes(b, "big"))
    if key in ("meta l4proto", "ip protocol", "ip6 nexthdr") and len(b) == 1:
        return Lit(PROTO_NAMES.get(b[0], b[0]))
    if key == "meta nfproto" and len(b) == 1:
        return Lit({2: "ipv4", 10: "ipv6"}.get(b[0], b[0]))
    if key == "meta protocol" and len(b) == 2:
        n = int.from_bytes(b, "big")
        return Lit(ETHERTYPES.get(n, n))
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
        return Lit(PKTTYPES.get(b[0], b[0]))
    if key in FLAG_NAMES:
        n = int.from_bytes(b, _HOST if head == "ct" else "big")
        names = _bits(n, FLAG_NAMES[key])
        if names is None:
            return hex_value(b)
        return Lit(names[0]) if len(names) == 1 else Flags(names)
    if key in ("icmp type", "icmpv6 type") and len(b) == 1:
        return Lit((ICMP_TYPES if head == "icmp" else ICMP6_TYPES).get(b[0], b[0]))
    if key == "ct direction" and len(b) == 1:
        return Lit({0: "original", 1: "reply"}.get(b[0], b[0]))
    if key == "ct zone" and len(b) == 2:
        return Lit(int.from_bytes(b, _HOST))
    if key == "fib daddr type" and len(b) == 4:
        n = int.from_bytes(b, _HOST)
        return Lit(RTN_TYPES.get(n, n))
    if head == "fib" and name.endswith(" oif"):
        if len(b) == 1:  # NFTA_FIB_F_PRESENT: a boolean
            return Lit(bool(b[0]))
        if len(b) == 4 and not any(b):
            return Lit(False)  # "oif missing"
    return hex_value(b)


def value_range(lo: Value, hi: Value, text: str) -> Value:
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



def _field_size(key: str) -> int:
    if key in ADDR_LEN:
        return ADDR_LEN[key]
    return 2 if key.endswith(("sport", "dport")) else 1 if key.endswith(("protocol", "nexthdr")) else 0


def _payload_key(base: int, off: int, size: int, nh: str | None, l4: str | None) -> tuple[str, str | None]:
    """(field name, dependency it used) of a payload load; a raw ``@base,bit,bits`` if unnamed."""
    if base == 1 and nh in NH_FIELDS:
        hit = NH_FIELDS[nh].get(off)
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


class Decompiler:
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
            rng = value_range(a, b, f"{a}-{b}")
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
            return f"icmpx type {REJECT_ICMPX.get(code, code)}"
        if self.nh == "ip6":
            return f"icmpv6 type {REJECT_ICMP6.get(code, code)}"
        return f"icmp type {REJECT_ICMP.get(code, code)}"

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
                self.stmts.append(Match((key,), op, hex_value(data), hex_value(reg.mask)))
                return
            if key in ADDR_LEN:
                plen = _mask_len(reg.mask)
                if plen is None or op not in ("==", "!="):
                    self.stmts.append(Match((key,), op, hex_value(data), hex_value(reg.mask)))
                    return
                full = ADDR_LEN[key]
                addr = ipaddress.ip_address(data[: reg.size] + bytes(full - min(full, reg.size)))
                self.stmts.append(Match((key,), op, Prefix(str(addr), plen)))
                return
            if key in FLAG_NAMES:
                m = value(key, reg.mask)
                if not any(data):  # "ct state established,related" / "ct state != ..."
                    names = m.names if isinstance(m, Flags) else ((str(m.value),) if isinstance(m, Lit) else ())
                    self.stmts.append(Match((key,), "in" if op == "!=" else "!=", Flags(names)))
                    return
                mask = m
            else:
                m = value(key, reg.mask)
                mask = m if isinstance(m, Lit) and isinstance(m.value, int) else hex_value(reg.mask)
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
        vmap = dreg is not None and dreg == register_slot(0)
        if dreg is None or vmap:
            for reg in regs:
                self._fold(reg)
        if dreg is None:
            self.stmts.append(Match(tuple(keys), "!=" if inv else "==", ref))
        elif vmap:
            self.stmts.append(VMap(tuple(keys), ref))
        else:
            text = f"{' . '.join(key_text(k) for k in keys)} map @{name}"
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
