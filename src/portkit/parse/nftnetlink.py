"""nf_tables netlink dumps (the kernel's own ruleset bytes) -> :class:`NftRuleset`.

Theory of operation. ``nft -j list ruleset`` asks the kernel for the same dumps
(NFT_MSG_GETTABLE / GETCHAIN / GETSET / GETRULE), then libnftables turns each rule's
bytecode back into high-level expressions and prints JSON, which portkit parses again. On
a 5,000-rule ruleset that round trip costs more than the whole ``fw check`` may take, so
portkit reads the dumps directly. The work is split by job:

* :mod:`portkit.parse.netlink_tlv`: netlink attributes (the framing);
* :mod:`portkit.parse.nftconst`: the kernel's numbers and nft's names for them;
* :mod:`portkit.parse.nftexpr`: one rule expression -> a tuple;
* :mod:`portkit.parse.nftdecompile`: a rule's expressions -> statements (the evaluator's
  vocabulary, the one :mod:`portkit.parse.nftjson` produces);
* this module: tables, chains, rules and sets assembled into the ruleset.

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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from portkit.model.firewall import (
    AnonSet,
    Concat,
    Match,
    NftChain,
    NftRule,
    NftRuleset,
    NftSet,
    Opaque,
    Prefix,
    Range,
    SetElement,
    SetRef,
    Stmt,
    Value,
    VerdictStmt,
    VMap,
)
from portkit.parse.netlink_tlv import BE_S32, attr_list, attr_str, attrs, be_int
from portkit.parse.nftconst import (
    ADDR_LEN,
    FAMILIES,
    HOOKS,
    INET_HOOKS,
    SET_INTERVAL,
    SET_MAP,
    TYPE_KEY,
    TYPE_LEN,
    TYPE_NAME,
    VERDICTS,
)
from portkit.parse.nftdecompile import Decompiler, hex_value, value, value_range
from portkit.parse.nftexpr import data_value, expr


@dataclass(frozen=True, slots=True)
class RawRuleset:
    """The dumps as the kernel sent them: one payload (nfgenmsg + attributes) per message."""

    tables: Sequence[bytes]
    chains: Sequence[bytes]
    sets: Sequence[bytes]
    rules: Sequence[bytes]
    ifnames: Mapping[int, str]  # interface index -> name, in the ruleset's namespace


# --------------------------------------------------------------------------- whole ruleset


_SET_SHAPES: dict[tuple[bytes | None, ...], tuple[Any, ...]] = {}


def _set_shape(flag_b: bytes | None, type_b: bytes | None, len_b: bytes | None, dtype_b: bytes | None, desc_b: bytes | None) -> tuple[Any, ...]:
    flags = be_int(flag_b)
    ktype = be_int(type_b)
    ids: list[int] = []
    while ktype:
        ids.insert(0, ktype & 0x3F)
        ktype >>= 6
    klen = be_int(len_b)
    if len(ids) == 1:  # most sets: one field, as long as the key
        lens: tuple[int, ...] = (klen,)
    else:
        desc = attrs(desc_b) if desc_b else {}
        lens = tuple(be_int(attrs(f).get(1)) for f in attr_list(desc[2])) if 2 in desc else ()
        if len(lens) != len(ids):
            lens = tuple(TYPE_LEN.get(i, 0) for i in ids)
    dtype = be_int(dtype_b) if flags & SET_MAP else None
    key_type = tuple(TYPE_NAME.get(i, f"type{i}") for i in ids)
    map_type = TYPE_NAME.get(dtype, f"type{dtype}") if dtype is not None else None
    return (key_type, bool(flags & SET_MAP), map_type, flags, tuple(ids), lens, klen)


def _set_header(msg: bytes) -> NftSet:
    a = attrs(msg, 4)
    key = (a.get(3), a.get(4), a.get(5), a.get(6), a.get(9))
    shape = _SET_SHAPES.get(key)
    if shape is None:
        shape = _SET_SHAPES[key] = _set_shape(*key)
    key_type, is_map, map_type, flags, ids, lens, klen = shape
    family = FAMILIES.get(msg[0], str(msg[0]))
    return NftSet(family, attr_str(a.get(1)), attr_str(a.get(2)), key_type, (), is_map, map_type, False, flags, ids, lens, klen)


def decode_rule(rule: NftRule, sets: Mapping[str, NftSet], ifnames: Mapping[int, str]) -> NftRule:
    """A rule read lazily (``raw`` bytecode) with its statements decoded."""
    if rule.raw is None:
        return rule
    stmts = Decompiler(rule.family, sets, ifnames).run([expr(x) for x in attr_list(rule.raw)])
    return replace(rule, stmts=stmts, raw=None)


def decode_ruleset(raw: RawRuleset, *, lazy: bool = False) -> NftRuleset:
    """Tables, chains, rules and set headers (elements are read separately). ``lazy``:
    rules keep their bytecode (``raw``) and are decoded by :func:`decode_rule` when needed."""
    tables = []
    for msg in raw.tables:
        tables.append((FAMILIES.get(msg[0], str(msg[0])), attr_str(attrs(msg, 4).get(1))))
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
        table = names.get(tb) or names.setdefault(tb, attr_str(tb))
        chain = names.get(cb) or names.setdefault(cb, attr_str(cb))
        blob = a.get(4, b"")
        stmts: tuple[Stmt, ...] = ()
        if not lazy:
            stmts = Decompiler(family, by_table.get((family, table), {}), raw.ifnames).run([expr(x) for x in attr_list(blob)])
        comment = None
        ud = a.get(7)
        if ud:
            off = 0
            while off + 2 <= len(ud):
                t, ln = ud[off], ud[off + 1]
                if t == 0:
                    comment = attr_str(ud[off + 2 : off + 2 + ln])
                off += 2 + ln
        handle = be_int(a.get(3)) if 3 in a else None
        rule = NftRule(family, table, chain, handle, stmts, "", comment or None, None, blob if lazy else None)
        rules.setdefault((family, table, chain), []).append(rule)
    chains = []
    for msg in raw.chains:
        family = FAMILIES.get(msg[0], str(msg[0]))
        a = attrs(msg, 4)
        table, name = attr_str(a.get(1)), attr_str(a.get(3))
        hook = prio = policy = device = ctype = None
        if 4 in a:
            h = attrs(a[4])
            hooks = HOOKS.get(family, INET_HOOKS)
            hook = hooks.get(be_int(h.get(1)), f"hook{be_int(h.get(1))}")
            prio = BE_S32.unpack(h[2])[0] if len(h.get(2, b"")) == 4 else 0
            if 3 in h:
                device = attr_str(h[3])
            elif 4 in h:
                device = ",".join(attr_str(x) for x in attr_list(h[4]))
            policy = "drop" if be_int(a.get(5)) == 0 and 5 in a else "accept"
            ctype = attr_str(a.get(7)) or "filter"
        chains.append(NftChain(family, table, name, tuple(rules.get((family, table, name), ())), ctype, hook, prio, policy, device or None))
    ifnames = tuple(sorted(raw.ifnames.items()))
    return NftRuleset(chains=tuple(chains), sets=tuple(sets), tables=tuple(tables), ifnames=ifnames)


def decode_elements(s: NftSet, msgs: Iterable[bytes], ifnames: Mapping[int, str] | None = None) -> NftSet:
    """A set header plus its GETSETELEM dump -> the complete set."""
    fields = [(TYPE_KEY.get(i, ""), ln) for i, ln in zip(s.key_ids, s.field_lens, strict=False)]
    interval = bool(s.flags & SET_INTERVAL)
    points: list[tuple[bytes, bool, SetElement | None]] = []  # interval sets: (key, is_end, element)
    out: list[SetElement] = []
    plain: list[tuple[bytes, SetElement]] = []
    for msg in msgs:
        a = attrs(msg, 4)
        for elem in attr_list(a.get(3, b"")):
            ea = attrs(elem)
            flags = be_int(ea.get(3))
            if flags & 2:  # the catch-all element "*"
                out.append(SetElement(Opaque("*"), *_elem_data(ea, s)))
                continue
            key = data_value(ea.get(1))
            if interval and 10 in ea:  # pipapo: start and (inclusive) end in one element
                out.append(SetElement(_span(fields, key, data_value(ea[10]), ifnames), *_elem_data(ea, s)))
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
        code = BE_S32.unpack(v[1])[0] if len(v.get(1, b"")) == 4 else 0
        return VerdictStmt(VERDICTS.get(code, f"verdict {code}"), attr_str(v.get(2)) or None), None
    return None, hex_value(d.get(1, b""))


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
        return hex_value(key)
    vals = [value(k, b, ifnames) if k else hex_value(b) for k, b in parts]
    return vals[0] if len(vals) == 1 else Concat(tuple(vals))


def _span(fields: Sequence[tuple[str, int]], lo: bytes, hi: bytes, ifnames: Mapping[int, str] | None) -> Value:
    lps, hps = _parts(fields, lo), _parts(fields, hi)
    if lps is None or hps is None:
        return hex_value(lo)
    vals: list[Value] = []
    for (k, a), (_, b) in zip(lps, hps, strict=True):
        if a == b:
            vals.append(value(k, a, ifnames) if k else hex_value(a))
            continue
        if k in ADDR_LEN:
            lo_i, hi_i = int.from_bytes(a, "big"), int.from_bytes(b, "big")
            span = hi_i - lo_i + 1
            if span & (span - 1) == 0 and lo_i % span == 0:
                plen = len(a) * 8 - (span.bit_length() - 1)
                vals.append(Prefix(str(ipaddress.ip_address(a)), plen))
            else:
                vals.append(Range(str(ipaddress.ip_address(a)), str(ipaddress.ip_address(b))))
            continue
        vals.append(value_range(value(k, a, ifnames), value(k, b, ifnames), f"0x{a.hex()}-0x{b.hex()}"))
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
