"""The netlink ruleset reader agrees with libnftables' JSON, rule by rule and packet by packet.

`fw check` reads the ruleset straight from the kernel (portkit.parse.nftnetlink), decodes
rules only when a packet reaches them and skips rules whose bytecode certainly does not
match (portkit.engine.nftbytes). Here random hand-written rulesets and compiled policies
are loaded into a throwaway namespace, and for many random packets every way of reading
gives the same answer as the JSON reader: the verdict, the deciding rule, the trace and
the translated destination. Rule texts are compared too (nft's own printing is the
reference). No packet is sent; the kernel differential test covers that.

Reproduce a failure with PK_FW_SEED=<seed printed in the assertion>.
"""

from __future__ import annotations

import ipaddress
import os
import random
import secrets
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from portkit.backends.nftlive import complete, live_ruleset_json, read_live
from portkit.engine.nftcompile import compile_policy
from portkit.engine.nfteval import Evaluator
from portkit.model.firewall import FwCheckResult, NftRuleset, NftSet, Packet
from portkit.syntax.nfttext import rule_text
from tests.conftest import needs_tool
from tests.fwgen import Universe, random_nft_ruleset, random_packet, random_policy

pytestmark = [pytest.mark.root, needs_tool("nft")]

CLIENTS4 = tuple(f"10.78.0.{i}" for i in range(2, 7))
CLIENTS6 = tuple(f"fd78::{i}" for i in range(2, 7))
SERVERS4 = ("10.78.0.1", "10.78.0.100")
SERVERS6 = ("fd78::1", "fd78::100")
U = Universe(CLIENTS4, CLIENTS6, SERVERS4, SERVERS6, tuple(range(7001, 7021)), ("lan",))
LOCAL: frozenset[ipaddress.IPv4Address | ipaddress.IPv6Address] = frozenset()


@pytest.fixture(scope="module")
def ns() -> Iterator[str]:
    name = f"pk-nlr-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        # "iif lan" needs the interface to exist when the rule is loaded
        subprocess.run(["ip", "-n", name, "link", "add", "lan", "type", "veth", "peer", "name", "eth0"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _load(ns: str, script: str) -> None:
    proc = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script, text=True, capture_output=True, check=False)
    assert proc.returncode == 0, f"{proc.stderr}\n{script}"


def _key(r: FwCheckResult) -> tuple[Any, ...]:
    d = r.decided_by
    decided = (d.table, d.chain, d.handle, _normal(d.rule)) if d else None
    trace = tuple((t.table, t.chain, _normal(t.rule), t.result) for t in r.trace)
    return (r.verdict, r.hook, decided, trace, r.translated_destination, r.reason and _normal(r.reason))


def _texts(rs: NftRuleset) -> list[tuple[str, str, str, int | None, str]]:
    return [(c.family, c.table, c.name, r.handle, rule_text(r)) for c in rs.chains for r in c.rules]


def _normal(text: str) -> str:
    # nft hides or shows the "meta l4proto tcp" a tcp reset depends on, and the family an
    # icmp reject depends on, by where the user wrote it; portkit shows what the bytecode has.
    for dep in ("meta l4proto tcp ", "meta nfproto ipv4 ", "meta nfproto ipv6 "):
        text = text.replace(dep + "reject", "reject")
    if "reject with tcp reset" in text:
        text = text.replace("meta l4proto tcp ", "")
    if "{" not in text:
        return text
    head, _, rest = text.partition("{")
    inner, _, tail = rest.partition("}")
    return f"{head}{{{', '.join(sorted(x.strip() for x in inner.split(',')))}}}{_normal(tail)}"


def test_netlink_reader_agrees_with_json(ns: str) -> None:
    seed = int(os.environ.get("PK_FW_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    checked = 0
    for round_no in range(30):
        if round_no % 3 == 0:
            script = "flush ruleset\n" + compile_policy(random_policy(rng, U))
        else:
            dnat = (SERVERS4[rng.randrange(2)], SERVERS6[0]) if rng.random() < 0.5 else None
            script = random_nft_ruleset(rng, U, dnat_to=dnat)
        _load(ns, script)
        by_json = live_ruleset_json(netns=ns, cache=False)
        lazy, load = read_live(netns=ns, cache=False)
        full = complete(lazy, load)
        assert [_normal(t[4]) for t in _texts(full)] == [_normal(t[4]) for t in _texts(by_json)], f"seed {seed}\n{script}"
        assert [t[:4] for t in _texts(full)] == [t[:4] for t in _texts(by_json)]
        ev_json = Evaluator(by_json, local_addresses=LOCAL)
        ev_full = Evaluator(full, local_addresses=LOCAL)
        ev_lazy = Evaluator(lazy, local_addresses=LOCAL, load_set=load)
        ev_plain = Evaluator(lazy, local_addresses=LOCAL, load_set=load)
        ev_plain.prefilter = False
        for _ in range(150):
            pkt = random_packet(rng, U, rng.choice(["in", "in", "out"]))
            want = _key(ev_json.evaluate(pkt))
            for name, ev in (("complete", ev_full), ("lazy+prefilter", ev_lazy), ("lazy", ev_plain)):
                got = _key(ev.evaluate(pkt))
                assert got == want, f"seed {seed}, {name} reader, {pkt}:\n netlink {got}\n json    {want}\n{script}"
            checked += 1
    assert checked == 4500


def test_sets_are_read_only_when_a_packet_reaches_them(ns: str) -> None:
    """A check that fails every rule on its address never dumps the rules' sets."""
    rules = "\n".join(f"    ip saddr 10.9.{i}.0/24 tcp dport {{ {7000 + i}, {8000 + i} }} accept" for i in range(50))
    _load(ns, f"flush ruleset\ntable inet t {{\n  chain c {{\n    type filter hook input priority 0; policy drop;\n{rules}\n    tcp dport 22 accept\n  }}\n}}\n")
    lazy, load = read_live(netns=ns, cache=False)
    assert load is not None
    loaded: list[str] = []

    def counting(s: NftSet) -> NftSet:
        loaded.append(s.name)
        return load(s)

    pkt = Packet("in", "tcp", ipaddress.ip_address("10.78.0.2"), ipaddress.ip_address("10.78.0.1"), 22, 40000, "lan")
    res = Evaluator(lazy, local_addresses=LOCAL, load_set=counting).evaluate(pkt)
    assert res.verdict == "accept" and res.decided_by is not None and res.decided_by.rule == "tcp dport 22 accept"
    assert loaded == []
    pkt = Packet("in", "tcp", ipaddress.ip_address("10.9.7.3"), ipaddress.ip_address("10.78.0.1"), 8007, 40000, "lan")
    res = Evaluator(lazy, local_addresses=LOCAL, load_set=counting).evaluate(pkt)
    assert res.verdict == "accept" and res.decided_by is not None
    assert res.decided_by.rule.startswith("ip saddr 10.9.7.0/24 tcp dport { ")
    assert "7007" in res.decided_by.rule and "8007" in res.decided_by.rule
    assert len(loaded) == 1


TRICKY = """flush ruleset
table inet f {
  set pairs { type ipv4_addr . inet_service; elements = { 10.78.0.2 . 7001, 10.78.0.3 . 7002 } }
  set nets6 { type ipv6_addr; flags interval; elements = { fd78::/125, fd78::100-fd78::1ff } }
  map ports { type inet_service : verdict; elements = { 7005 : drop, 7006 : accept } }
  chain in {
    type filter hook input priority 0; policy drop;
    ct state vmap { invalid : drop, established : accept, related : accept }
    ip saddr 10.78.0.2 ip daddr 10.78.0.1 tcp sport 40000 tcp dport 7003 drop
    tcp sport 40000 tcp dport 7004 reject with tcp reset
    ip saddr . tcp dport @pairs accept
    ip6 saddr @nets6 udp dport 7010-7012 reject
    iifname "la*" tcp dport 7013 limit rate over 10/second drop
    iifname "la*" tcp dport 7013 accept
    tcp dport vmap @ports
    meta l4proto { tcp, udp } th dport { 7014, 7016-7018 } counter accept
    icmp type { echo-request, destination-unreachable } accept
    icmpv6 type { echo-request, nd-neighbor-solicit } accept
    meta mark set 7 tcp dport 7019 jump marked
    udp dport != { 7001-7020 } reject with icmpx type admin-prohibited
  }
  chain marked {
    meta mark 7 ip saddr != 10.78.0.0/29 accept
    return
  }
}
table ip nat {
  map fwdmap { type inet_service : ipv4_addr . inet_service; elements = { 8001 : 10.78.0.100 . 7001 } }
  chain pre {
    type nat hook prerouting priority dstnat; policy accept;
    ip saddr 10.78.0.4 tcp sport 40000 tcp dport 8017 dnat to 10.78.0.1:7016
    tcp dport 8002 dnat to 10.78.0.100:7002
    dnat ip to tcp dport map @fwdmap
  }
}
"""


def test_tricky_ruleset_agrees(ns: str) -> None:
    _load(ns, TRICKY)
    by_json = live_ruleset_json(netns=ns, cache=False)
    lazy, load = read_live(netns=ns, cache=False)
    full = complete(lazy, load)
    assert [_normal(t[4]) for t in _texts(full)] == [_normal(t[4]) for t in _texts(by_json)]
    rng = random.Random(7)
    local = frozenset({ipaddress.ip_address(a) for a in (*SERVERS4, *SERVERS6)})
    evs = [Evaluator(by_json, local_addresses=local), Evaluator(full, local_addresses=local), Evaluator(lazy, local_addresses=local, load_set=load)]
    seen = set()
    for _ in range(600):
        pkt = random_packet(rng, U, "in")
        if pkt.sport is not None and rng.random() < 0.3:
            pkt = Packet(pkt.hook, pkt.proto, pkt.src, pkt.dst, rng.choice([8001, 8002, 8017, 7003, 7004]), 40000, pkt.iif)
        got = [_key(ev.evaluate(pkt)) for ev in evs]
        assert got[1] == got[0] and got[2] == got[0], f"{pkt}\n json     {got[0]}\n complete {got[1]}\n lazy     {got[2]}"
        seen.add(got[0][0])
    assert {"accept", "drop", "reject"} <= seen


def test_exotic_expressions_are_named_not_guessed(ns: str) -> None:
    """Objects, quotas, helpers, dynamic sets, ct tuples, exthdr, link-layer and netdev/bridge
    tables: the reader never fails on them, names what it cannot evaluate, and agrees with
    the JSON reader on every packet."""
    _load(ns, EXOTIC)
    by_json = live_ruleset_json(netns=ns, cache=False)
    lazy, load = read_live(netns=ns, cache=False)
    full = complete(lazy, load)
    texts = [t[4] for t in _texts(full)]
    assert "ct original ip saddr 0x0a000001 accept" in texts and "update @dyn" in " ".join(texts)
    ingress = next(c for c in full.chains if c.hook == "ingress")
    assert ingress.device == "lan"
    rng = random.Random(11)
    evs = [Evaluator(by_json, local_addresses=LOCAL), Evaluator(full, local_addresses=LOCAL), Evaluator(lazy, local_addresses=LOCAL, load_set=load)]
    for _ in range(300):
        pkt = random_packet(rng, U, rng.choice(["in", "out"]))
        got = [ev.evaluate(pkt) for ev in evs]
        keys = [(r.verdict, r.decided_by and (r.decided_by.table, r.decided_by.chain, r.decided_by.handle)) for r in got]
        assert keys[0] == keys[1] == keys[2], f"{pkt}: {keys}"
        if got[1].verdict == "unknown":
            assert got[1].reason


EXOTIC = """flush ruleset
table netdev n {
  chain ing {
    type filter hook ingress device "lan" priority 0; policy accept;
    ip saddr 10.0.0.1 drop
  }
}
table bridge b {
  chain f {
    type filter hook forward priority 0; policy accept;
    ether type ip counter
  }
}
table inet x {
  counter c1 { }
  quota q1 { over 10 mbytes }
  set dyn { type ipv4_addr; flags dynamic, timeout; timeout 1m; }
  chain in {
    type filter hook input priority 0; policy accept;
    counter name c1
    ip saddr 10.78.0.6 quota name q1 drop
    ip saddr 10.78.0.5 add @dyn { ip saddr }
    ct original ip saddr 10.0.0.1 accept
    meta skuid 0 accept
    tcp dport 7001 tcp option maxseg size 1400 accept
    ip ttl 64 accept
    ip6 hoplimit 1 drop
    meta mark & 0xff == 0x1 accept
    ether saddr 00:11:22:33:44:55 drop
    ct status dnat accept
    meta pkttype broadcast drop
    udp dport 7002 notrack
    icmp type echo-request limit rate 5/second accept
    ip dscp cs1 accept
  }
  chain out {
    type route hook output priority 0; policy accept;
    meta mark set 0x10
  }
  chain post {
    type nat hook postrouting priority 100; policy accept;
    oifname "lan" masquerade
  }
  chain pre {
    type nat hook prerouting priority -100; policy accept;
    tcp dport 8080 redirect to :80
  }
}
"""
