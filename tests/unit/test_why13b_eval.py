"""Issue 13 items 4 and 9: what decided a verdict, and matches that cannot decide anything."""

from __future__ import annotations

import ipaddress

from portkit.engine.nfteval import evaluate
from portkit.model.firewall import (
    Lit,
    Match,
    Nat,
    NftChain,
    NftRule,
    NftRuleset,
    Packet,
    Unknown,
    VerdictStmt,
)
from portkit.ops.why_firewall import dnat_of

A = ipaddress.ip_address


def rule(chain: str, text: str, *stmts: object, table: str = "t", family: str = "ip") -> NftRule:
    return NftRule(family, table, chain, 1, tuple(stmts), text)  # type: ignore[arg-type]


def kernel_forward() -> NftRuleset:
    """portkit's `forward --kernel 9091:10.0.30.2:2989`: a DNAT and a masquerade, no filter chain."""
    pre = NftChain("ip", "t", "pre", (rule("pre", "tcp dport 9091 dnat to 10.0.30.2:2989",
                   Match(("tcp dport",), "==", Lit(9091)), Nat("dnat", "10.0.30.2", 2989)),), "nat", "prerouting", -100, "accept")
    post = NftChain("ip", "t", "post", (rule("post", "ct status dnat masquerade",
                    Match(("ct status",), "==", Lit("dnat")), Nat("masquerade")),), "nat", "postrouting", 100, "accept")
    return NftRuleset(chains=(pre, post))  # fmt: skip


def test_forward_accept_is_not_decided_by_a_masquerade() -> None:
    p = Packet("in", "tcp", A("10.0.10.12"), A("10.0.10.1"), 9091, 40000, "eth0", "eth1")
    res = evaluate(kernel_forward(), p, local_addresses={A("10.0.10.1")})
    assert res.verdict == "accept" and res.hook == "forward"
    assert res.decided_by is None or "masquerade" not in res.decided_by.rule
    dnat = dnat_of(res, "10.0.10.1", 9091)
    assert dnat is not None and (dnat.to_address, dnat.to_port) == ("10.0.30.2", 2989)
    assert "dnat to 10.0.30.2:2989" in dnat.rule and "masquerade" not in dnat.rule


def test_opaque_match_without_verdict_does_not_decide() -> None:
    inp = NftChain("ip", "t", "in", (
        rule("in", "xt match recent", Match(("tcp dport",), "==", Lit(22)), Unknown("xt match recent")),
        rule("in", "tcp dport 22 accept", Match(("tcp dport",), "==", Lit(22)), VerdictStmt("accept")),
    ), "filter", "input", 0, "drop")  # fmt: skip
    p = Packet("in", "tcp", A("10.0.10.12"), A("10.0.10.1"), 22, 40000, "eth0")
    res = evaluate(NftRuleset(chains=(inp,)), p)
    assert res.verdict == "accept" and res.decided_by is not None and res.decided_by.rule == "tcp dport 22 accept"
    # an opaque *target* may still change the packet's fate: that stays unknown
    act = NftChain("ip", "t", "in", (rule("in", "xt target FOO", Unknown("xt target FOO")),), "filter", "input", 0, "accept")
    assert evaluate(NftRuleset(chains=(act,)), p).verdict == "unknown"
