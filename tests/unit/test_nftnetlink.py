"""The netlink ruleset decoder and the byte-level pre-check, on bytecode built here.

The attribute layouts are the kernel's (nft_cmp_dump, nft_payload_dump, ...); the
integration test test_fw_netlink_reader checks the same code against real dumps.
"""

from __future__ import annotations

import ipaddress
import struct
import sys
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from portkit.engine.nftbytes import PacketImage, certainly_no_match
from portkit.engine.nfteval import Evaluator
from portkit.model.firewall import (
    Flags,
    Lit,
    Match,
    NftChain,
    NftRule,
    NftRuleset,
    NftSet,
    Packet,
    Prefix,
    Range,
    SetRef,
    VerdictStmt,
)
from portkit.parse import nftconst, nftdecompile, nftexpr
from portkit.parse import nftnetlink as nl

# --------------------------------------------------------------------------- bytecode builders


def nla(t: int, data: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(data), t) + data + bytes(-len(data) % 4)


def nest(t: int, *parts: bytes) -> bytes:
    return nla(t | 0x8000, b"".join(parts))


def u32(t: int, v: int) -> bytes:
    return nla(t, struct.pack("!I", v))


def elem(name: str, *attrs: bytes) -> bytes:
    return nla(1, name.encode() + b"\0") + nest(2, *attrs)


def cmp(reg: int, op: int, data: bytes) -> bytes:
    return elem("cmp", u32(1, reg), u32(2, op), nest(3, nla(1, data)))


def payload(reg: int, base: int, off: int, size: int) -> bytes:
    return elem("payload", u32(1, reg), u32(2, base), u32(3, off), u32(4, size))


def meta(reg: int, key: int) -> bytes:
    return elem("meta", u32(2, key), u32(1, reg))


def ct(reg: int, key: int) -> bytes:
    return elem("ct", u32(1, reg), u32(2, key))


def bitwise(reg: int, mask: bytes) -> bytes:
    return elem("bitwise", u32(1, reg), u32(2, reg), u32(3, len(mask)), nest(4, nla(1, mask)), nest(5, nla(1, bytes(len(mask)))))


def verdict(code: int, chain: str | None = None) -> bytes:
    v = [nla(1, struct.pack("!i", code))]
    if chain:
        v.append(nla(2, chain.encode() + b"\0"))
    return elem("immediate", u32(1, 0), nest(2, nest(2, *v)))


def lookup(reg: int, name: str) -> bytes:
    return elem("lookup", nla(1, name.encode() + b"\0"), u32(2, reg), u32(4, 1))


def blob(*elems: bytes) -> bytes:
    return b"".join(nest(1, e) for e in elems)


NFPROTO, L4PROTO, IIFNAME = 15, 16, 6
ACCEPT, DROP = 1, 0


def rule(raw: bytes, family: str = "inet") -> NftRule:
    return NftRule(family, "t", "c", 1, (), "", None, None, raw)


def stmts(raw: bytes, family: str = "inet", sets: dict[str, NftSet] | None = None) -> tuple[object, ...]:
    return nl.decode_rule(rule(raw, family), sets or {}, {3: "lan"}).stmts


# --------------------------------------------------------------------------- decoding


def test_address_prefix_and_port_fold_their_dependencies() -> None:
    raw = blob(
        meta(1, NFPROTO), cmp(1, 0, b"\x02"),
        payload(1, 1, 12, 3), cmp(1, 0, bytes([10, 1, 2])),
        meta(1, L4PROTO), cmp(1, 0, b"\x06"),
        payload(1, 2, 2, 2), cmp(1, 1, (22).to_bytes(2, "big")),
        verdict(ACCEPT),
    )  # fmt: skip
    assert stmts(raw) == (
        Match(("ip saddr",), "==", Prefix("10.1.2.0", 24)),
        Match(("tcp dport",), "!=", Lit(22)),
        VerdictStmt("accept"),
    )


def test_masked_prefix_range_and_flags() -> None:
    raw = blob(
        payload(1, 1, 12, 4), bitwise(1, bytes([255, 255, 240, 0])), cmp(1, 0, bytes([10, 0, 16, 0])),
        meta(1, L4PROTO), cmp(1, 0, b"\x11"),
        payload(1, 2, 2, 2), cmp(1, 5, (1000).to_bytes(2, "big")), cmp(1, 3, (2000).to_bytes(2, "big")),
        ct(1, 0), bitwise(1, (2 | 4).to_bytes(4, sys.byteorder)), cmp(1, 1, bytes(4)),
        verdict(-3, "next"),
    )  # fmt: skip
    assert stmts(raw, "ip") == (
        Match(("ip saddr",), "==", Prefix("10.0.16.0", 20)),
        Match(("udp dport",), "==", Range(1000, 2000)),
        Match(("ct state",), "in", Flags(("established", "related"))),
        VerdictStmt("jump", "next"),
    )


def test_interface_wildcard_and_unknown_expression() -> None:
    raw = blob(meta(1, IIFNAME), cmp(1, 0, b"eth"), elem("osf", u32(1, 1)), cmp(1, 0, b"Linux\0"), verdict(DROP))
    out = stmts(raw)
    assert out[0] == Match(("meta iifname",), "==", Lit("eth*"))
    assert isinstance(out[1], Match) and out[1].key == ("osf",)  # the evaluator reports it as undecided
    assert out[-1] == VerdictStmt("drop")


def test_cmp_fast_path_equals_generic_decoding() -> None:
    e = cmp(9, 4, bytes([1, 2, 3]))
    assert nftexpr.expr(e) == nftexpr._expr(e) == ("cmp", 1, ">", bytes([1, 2, 3]))
    reordered = elem("cmp", u32(2, 4), u32(1, 9), nest(3, nla(1, bytes([1, 2, 3]))))
    assert nftexpr.expr(reordered) == nftexpr.expr(e)


def test_concatenated_lookup() -> None:
    s = NftSet("inet", "t", "pairs", ("ipv4_addr", "inet_service"), complete=False, key_ids=(7, 13), field_lens=(4, 2), key_len=8)
    raw = blob(meta(1, L4PROTO), cmp(1, 0, b"\x06"), payload(1, 1, 12, 4), payload(9, 2, 2, 2), lookup(1, "pairs"), verdict(ACCEPT))
    out = stmts(raw, "ip", {"pairs": s})
    assert out[-2] == Match(("ip saddr", "tcp dport"), "==", SetRef("pairs"))


# --------------------------------------------------------------------------- set elements


def _elements_msg(elems: list[bytes]) -> bytes:
    return bytes(4) + nla(1, b"t\0") + nla(2, b"s\0") + nest(3, *(nest(1, e) for e in elems))


@given(st.lists(st.tuples(st.integers(1, 60000), st.integers(0, 50)), min_size=1, max_size=8))
@settings(max_examples=150, deadline=None)
def test_interval_sets_come_back_as_written(spans: list[tuple[int, int]]) -> None:
    # disjoint, non-adjacent ranges, as nft stores them: a start element and an end element
    # (flag 1) one past the last port, plus the leading "end" at 0; dumped newest first
    ranges: list[tuple[int, int]] = []
    for lo, width in sorted(spans):
        hi = min(65534, lo + width)
        if ranges and lo <= ranges[-1][1] + 1:
            continue
        ranges.append((lo, hi))
    items = [nest(1, nla(1, bytes(2))) + u32(3, 1)]
    for lo, hi in ranges:
        items.append(nest(1, nla(1, lo.to_bytes(2, "big"))))
        items.append(nest(1, nla(1, (hi + 1).to_bytes(2, "big"))) + u32(3, 1))
    header = NftSet("inet", "t", "s", ("inet_service",), complete=False, flags=nftconst.SET_INTERVAL, key_ids=(13,), field_lens=(2,), key_len=2)
    got = nl.decode_elements(header, [_elements_msg(items[::-1])])
    want = [Lit(lo) if lo == hi else Range(lo, hi) for lo, hi in ranges]
    assert [e.key for e in got.elements] == want and got.complete


def test_address_intervals_become_prefixes() -> None:
    header = NftSet("ip", "t", "s", ("ipv4_addr",), complete=False, flags=nftconst.SET_INTERVAL, key_ids=(7,), field_lens=(4,), key_len=4)
    items = [
        nest(1, nla(1, bytes(4))) + u32(3, 1),
        nest(1, nla(1, bytes([10, 0, 0, 0]))),
        nest(1, nla(1, bytes([11, 0, 0, 0]))) + u32(3, 1),
        nest(1, nla(1, bytes([192, 0, 2, 5]))),
        nest(1, nla(1, bytes([192, 0, 2, 10]))) + u32(3, 1),
    ]
    got = nl.decode_elements(header, [_elements_msg(items)])
    assert [e.key for e in got.elements] == [Prefix("10.0.0.0", 8), Range("192.0.2.5", "192.0.2.9")]


# --------------------------------------------------------------------------- the pre-check


ADDRS = [f"10.0.{a}.{b}" for a in (0, 1) for b in (1, 2, 3)] + ["fd00::1", "fd00::2", "fd00:1::1"]


def _addr_match(addr: str, plen: int, neg: bool) -> list[bytes]:
    ip = ipaddress.ip_address(addr)
    full = 4 if ip.version == 4 else 16
    nbytes = (plen + 7) // 8
    out = [meta(1, NFPROTO), cmp(1, 0, bytes([2 if ip.version == 4 else 10]))]
    out.append(payload(1, 1, 12 if ip.version == 4 else 8, nbytes))
    if plen % 8:
        mask = ((1 << plen) - 1) << (nbytes * 8 - plen)
        out.append(bitwise(1, mask.to_bytes(nbytes, "big")))
    net = ipaddress.ip_network(f"{addr}/{plen}", strict=False).network_address.packed[:nbytes]
    assert nbytes <= full
    out.append(cmp(1, 1 if neg else 0, net))
    return out


rule_parts = st.tuples(
    st.one_of(st.none(), st.tuples(st.sampled_from(ADDRS), st.integers(1, 32), st.booleans())),
    st.one_of(st.none(), st.tuples(st.sampled_from(["tcp", "udp"]), st.integers(20, 25), st.booleans())),
    st.sampled_from([ACCEPT, DROP]),
    st.booleans(),  # a mark set before the compares: the pre-check must stop there
    st.booleans(),  # a match on that mark
)


@given(st.lists(rule_parts, min_size=1, max_size=6), st.sampled_from(ADDRS), st.sampled_from(["tcp", "udp", "icmp"]), st.integers(20, 25))
@settings(max_examples=500, deadline=None)
def test_precheck_never_changes_an_answer(rules: list[tuple[Any, ...]], src: str, proto: str, dport: int) -> None:
    built = []
    for i, (addr, port, code, mark, on_mark) in enumerate(rules):
        parts: list[bytes] = []
        if on_mark:
            parts += [meta(1, 3), cmp(1, 0, (7).to_bytes(4, sys.byteorder))]
        if mark:
            parts += [elem("immediate", u32(1, 1), nest(2, nla(1, (7).to_bytes(4, sys.byteorder)))), elem("meta", u32(2, 3), u32(3, 1))]
        if addr is not None:
            a, plen, neg = addr
            plen = min(plen, 32 if ":" not in a else 128)
            parts += _addr_match(a, plen, neg)
        if port is not None:
            p4, p, neg = port
            parts += [meta(1, L4PROTO), cmp(1, 0, bytes([6 if p4 == "tcp" else 17])), payload(1, 2, 2, 2), cmp(1, 1 if neg else 0, p.to_bytes(2, "big"))]
        parts.append(verdict(code))
        built.append(NftRule("inet", "t", "in", i + 1, (), "", None, None, blob(*parts)))
    rs = NftRuleset(chains=(NftChain("inet", "t", "in", tuple(built), "filter", "input", 0, "accept"),))
    s = ipaddress.ip_address(src)
    d = ipaddress.ip_address("10.0.9.9" if s.version == 4 else "fd00:9::9")
    pkt = Packet("in", proto if not (proto == "icmp" and s.version == 6) else "icmpv6", s, d, dport if proto != "icmp" else None, 40000, "lan")
    fast = Evaluator(rs, local_addresses=frozenset({d}))
    slow = Evaluator(rs, local_addresses=frozenset({d}))
    slow.prefilter = False
    assert fast.evaluate(pkt) == slow.evaluate(pkt)
    img = PacketImage(pkt, d, pkt.dport)
    for r in built:
        if certainly_no_match(r.raw or b"", img):
            one = NftRuleset(chains=(NftChain("inet", "t", "in", (r,), "filter", "input", 0, "accept"),))
            ev = Evaluator(one, local_addresses=frozenset({d}))
            ev.prefilter = False
            res = ev.evaluate(pkt)
            assert res.decided_by is not None and res.decided_by.rule == "policy accept"


def test_precheck_skips_what_certainly_fails() -> None:
    pkt = Packet("in", "tcp", ipaddress.ip_address("10.0.0.2"), ipaddress.ip_address("10.0.9.9"), 22, 40000, "lan")
    img = PacketImage(pkt, pkt.dst, pkt.dport)
    other_net = blob(*_addr_match("10.0.1.1", 24, False), verdict(ACCEPT))
    same_net = blob(*_addr_match("10.0.0.1", 24, False), verdict(ACCEPT))
    other_port = blob(meta(1, L4PROTO), cmp(1, 0, b"\x06"), payload(1, 2, 2, 2), cmp(1, 0, (80).to_bytes(2, "big")), verdict(DROP))
    udp_only = blob(meta(1, L4PROTO), cmp(1, 0, b"\x11"), payload(1, 2, 2, 2), cmp(1, 0, (22).to_bytes(2, "big")), verdict(DROP))
    marked_first = blob(meta(1, 3), cmp(1, 0, bytes(4)), *_addr_match("10.0.1.1", 24, False), verdict(ACCEPT))
    assert certainly_no_match(other_net, img) and certainly_no_match(other_port, img) and certainly_no_match(udp_only, img)
    assert certainly_no_match(marked_first, img)  # an unknown compare decides nothing; the address does
    assert not certainly_no_match(same_net, img)
    effect_first = blob(elem("counter"), elem("notrack"), *_addr_match("10.0.1.1", 24, False), verdict(ACCEPT))
    assert not certainly_no_match(effect_first, img)  # notrack changes the packet before the compare


def test_merged_loads_split_into_their_fields() -> None:
    # nft compiles "tcp sport 7008 tcp dport 8017" (and "ip saddr A ip daddr B") into one load
    ports = (7008).to_bytes(2, "big") + (8017).to_bytes(2, "big")
    raw = blob(meta(1, L4PROTO), cmp(1, 0, b"\x06"), payload(1, 2, 0, 4), cmp(1, 0, ports), verdict(ACCEPT))
    assert stmts(raw, "ip") == (Match(("tcp sport",), "==", Lit(7008)), Match(("tcp dport",), "==", Lit(8017)), VerdictStmt("accept"))
    addrs = bytes([10, 0, 0, 1, 10, 0, 0, 2])
    raw = blob(payload(1, 1, 12, 8), cmp(1, 0, addrs), verdict(DROP))
    assert stmts(raw, "ip")[:2] == (Match(("ip saddr",), "==", Lit("10.0.0.1")), Match(("ip daddr",), "==", Lit("10.0.0.2")))
    raw = blob(payload(1, 1, 12, 8), cmp(1, 1, addrs), verdict(DROP))  # "!=" of both cannot be split: undecided
    assert stmts(raw, "ip")[0] == Match(("@nh,96,64",), "!=", nftdecompile.hex_value(addrs))
