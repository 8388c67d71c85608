"""The live-ruleset evaluator on recorded ``nft -j list ruleset`` outputs (tests/fixtures/nft)."""

from __future__ import annotations

import ipaddress
import json
import pathlib

import pytest

from portkit.engine.nfteval import evaluate
from portkit.engine.nftview import list_dnat, ruleset_view
from portkit.model.firewall import FwCheckResult, NftRuleset, Packet
from portkit.parse.iptables_save import merge_iptables
from portkit.parse.nftjson import hidden_nfproto, parse_ruleset, resolve_hidden

FIX = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "nft"
A = ipaddress.ip_address


def load(name: str) -> NftRuleset:
    return parse_ruleset(json.loads((FIX / f"{name}.json").read_text()))


def pkt(src: str, dst: str, dport: int | None, proto: str = "tcp", hook: str = "in", iif: str | None = "eth0", sport: int = 40000) -> Packet:
    return Packet(hook, proto, A(src), A(dst), dport, sport, iif if hook != "out" else None, "eth0" if hook != "in" else None)


def check(rs: NftRuleset, p: Packet, local: set[str] | None = None) -> FwCheckResult:
    return evaluate(rs, p, local_addresses={A(a) for a in local} if local is not None else None)


# --------------------------------------------------------------------------- priorities.json


@pytest.fixture(scope="module")
def prio() -> NftRuleset:
    return load("priorities")


def test_lowest_priority_chain_drops_first(prio: NftRuleset) -> None:
    r = check(prio, pkt("192.0.2.99", "10.0.0.1", 80))
    assert r.verdict == "drop"
    assert r.decided_by is not None and (r.decided_by.table, r.decided_by.chain) == ("ip early", "pre")


def test_accept_ends_only_its_base_chain(prio: NftRuleset) -> None:
    r = check(prio, pkt("192.0.2.1", "10.0.0.1", 2222))
    assert r.verdict == "drop"
    assert r.decided_by is not None and r.decided_by.table == "inet main" and r.decided_by.rule == "tcp dport 2222 drop"
    results = [(s.table, s.result) for s in r.trace]
    assert ("ip early", "accept") in results  # accepted there, then dropped by the next base chain


def test_drop_ends_everything(prio: NftRuleset) -> None:
    r = check(prio, pkt("192.0.2.1", "10.0.0.1", 3333))
    assert r.verdict == "drop" and r.decided_by is not None and r.decided_by.table == "ip early"


def test_verdict_map_and_family_tables(prio: NftRuleset) -> None:
    assert check(prio, pkt("192.0.2.1", "10.0.0.1", 80)).verdict == "accept"
    assert check(prio, pkt("192.0.2.1", "10.0.0.1", 443)).verdict == "accept"
    v6 = check(prio, pkt("2001:db8::1", "fd00::1", 443))
    assert v6.verdict == "reject" and v6.decided_by is not None and v6.decided_by.table == "ip6 v6only"


def test_jump_return_and_goto(prio: NftRuleset) -> None:
    # 8443 -> jump admin_only: admins return to the input chain and meet its policy
    assert check(prio, pkt("10.1.2.3", "10.0.0.1", 8443)).verdict == "drop"
    assert check(prio, pkt("192.168.1.15", "10.0.0.1", 8443)).verdict == "drop"
    assert check(prio, pkt("192.0.2.1", "10.0.0.1", 8443)).verdict == "reject"
    # 9000 -> goto admin_then_accept -> jump admin_only -> return -> accept
    assert check(prio, pkt("10.1.2.3", "10.0.0.1", 9000)).verdict == "accept"
    assert check(prio, pkt("192.0.2.1", "10.0.0.1", 9000)).verdict == "reject"


def test_mark_set_in_prerouting_is_seen_in_input(prio: NftRuleset) -> None:
    r = check(prio, pkt("192.0.2.1", "10.0.0.1", 7777))
    assert r.verdict == "accept" and r.decided_by is not None and "meta mark" in r.decided_by.rule


def test_dnat_to_another_host_goes_to_forward(prio: NftRuleset) -> None:
    r = check(prio, pkt("192.0.2.1", "10.0.0.1", 8080), local={"10.0.0.1", "127.0.0.1"})
    assert r.verdict == "accept" and r.hook == "forward"
    assert r.translated_destination is not None
    assert (r.translated_destination.address, r.translated_destination.port) == ("10.1.0.5", 80)
    assert r.decided_by is not None and r.decided_by.rule == "ct status dnat accept"


def test_dnat_without_local_addresses_stays_on_input(prio: NftRuleset) -> None:
    r = check(prio, pkt("192.0.2.1", "10.0.0.1", 8080))
    assert r.hook == "in" and r.verdict == "accept"  # port 80 after DNAT: the vmap accepts


def test_dnat_to_local_and_redirect(prio: NftRuleset) -> None:
    r = check(prio, pkt("192.0.2.1", "10.0.0.1", 8081), local={"10.0.0.1", "127.0.0.1"})
    assert r.hook == "in" and r.verdict == "accept" and r.translated_destination is not None
    assert r.translated_destination.port == 80
    r = check(prio, pkt("192.0.2.1", "10.0.0.1", 8082), local={"10.0.0.1"})
    assert r.translated_destination is not None and r.translated_destination.port == 443 and r.verdict == "accept"


def test_missing_interface_is_unknown_not_a_guess(prio: NftRuleset) -> None:
    r = check(prio, pkt("192.0.2.1", "10.0.0.1", 12345, iif=None))
    assert r.verdict == "unknown"
    assert r.reason is not None and "iifname" in r.reason
    assert check(prio, pkt("192.0.2.1", "10.0.0.1", 12345)).verdict == "drop"
    assert check(prio, pkt("127.0.0.1", "127.0.0.1", 12345, iif="lo")).verdict == "accept"


def test_udp_and_forward_hooks(prio: NftRuleset) -> None:
    assert check(prio, pkt("192.0.2.1", "10.0.0.1", 53, proto="udp")).verdict == "accept"
    fw = check(prio, pkt("192.0.2.1", "10.9.9.9", 80, hook="forward"))
    assert fw.verdict == "drop" and fw.hook == "forward"
    out = check(prio, pkt("10.0.0.1", "192.0.2.1", 80, hook="out"))
    assert out.verdict == "accept" and out.decided_by is None  # no output chains at all


def test_established_packets_skip_nat_chains(prio: NftRuleset) -> None:
    from dataclasses import replace

    r = check(prio, replace(pkt("192.0.2.1", "10.0.0.1", 8080), ct_state="established"))
    assert r.verdict == "accept" and r.translated_destination is None


def test_dnat_listing(prio: NftRuleset) -> None:
    entries = {(e.dport, e.target.address, e.target.port) for e in list_dnat(prio)}
    assert (8080, "10.1.0.5", 80) in entries and (8081, "127.0.0.1", 80) in entries


def test_show_orders_base_chains_as_the_kernel_runs_them(prio: NftRuleset) -> None:
    view = ruleset_view(prio)
    pre4 = next(h for h in view.hooks if h.hook == "prerouting" and h.family == "ipv4")
    assert [c.split(" (")[0] for c in pre4.chains] == ["ip early pre", "inet main pre_mark", "inet main nat_pre"]
    inp6 = next(h for h in view.hooks if h.hook == "input" and h.family == "ipv6")
    assert [c.split(" (")[0] for c in inp6.chains] == ["inet main input", "ip6 v6only in"]
    assert any(r.rule == "tcp dport vmap @svc" for c in view.chains for r in c.rules)


# --------------------------------------------------------------------------- mixed.json


@pytest.fixture(scope="module")
def mixed() -> NftRuleset:
    return load("mixed")


def test_sets_concat_and_wildcards(mixed: NftRuleset) -> None:
    assert check(mixed, pkt("10.1.1.1", "10.0.0.1", 22, iif="wg0")).verdict == "accept"  # saddr @s4 tcp dport {22,80-90}
    assert check(mixed, pkt("192.168.1.5", "10.0.0.1", 85, iif="wg0")).verdict == "accept"  # range element
    assert check(mixed, pkt("10.0.0.9", "10.0.0.1", 1, iif="eth3")).verdict == "accept"  # iifname "eth*"
    r = check(mixed, pkt("192.0.2.1", "10.0.0.1", 443, iif="wg0"))
    assert r.verdict == "accept" and "vmap" in (r.decided_by.rule if r.decided_by else "")


def test_fib_needs_local_addresses(mixed: NftRuleset) -> None:
    unknown = check(mixed, pkt("192.0.2.1", "10.0.0.1", 1234, iif="wg0"))
    assert unknown.verdict == "unknown" and unknown.reason is not None and "fib daddr type" in unknown.reason
    local = check(mixed, pkt("192.0.2.1", "10.0.0.1", 1234, iif="wg0"), local={"10.0.0.1"})
    assert local.verdict == "accept"
    # not local: the next rule is an rpfilter fib portkit cannot evaluate
    other = check(mixed, pkt("192.0.2.1", "10.0.0.7", 1234, iif="wg0"), local={"10.0.0.1"})
    assert other.verdict == "unknown" and other.reason is not None and "fib saddr . iif oif" in other.reason


def test_reject_with_family_specific_icmp_only_applies_to_its_family(mixed: NftRuleset) -> None:
    r = check(mixed, pkt("fd00::5", "fd00::1", 99, proto="udp", iif="wg0"))
    assert r.verdict == "reject"


# --------------------------------------------------------------------------- iptables-nft (xt)


def test_docker_published_port_goes_through_forward_not_input() -> None:
    rs = load("docker_ufwlike")
    assert check(rs, pkt("192.0.2.1", "10.50.0.2", 8080), local={"10.50.0.2", "172.17.0.1"}).verdict == "unknown"
    rs = merge_iptables(rs, (FIX / "docker_ufwlike.iptables-save").read_text(), "")
    local = {"10.50.0.2", "172.17.0.1", "127.0.0.1"}

    def route(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
        return "docker0" if addr in ipaddress.ip_network("172.17.0.0/16") else "eth0"

    r = evaluate(rs, pkt("192.0.2.1", "10.50.0.2", 8080), local_addresses={A(a) for a in local}, route=route)
    # the ufw-like inet filter input chain (policy drop) never sees it: Docker bypasses it
    assert r.verdict == "accept" and r.hook == "forward"
    assert r.translated_destination is not None and r.translated_destination.address == "172.17.0.2"
    blocked = evaluate(rs, pkt("192.0.2.66", "10.50.0.2", 8080), local_addresses={A(a) for a in local}, route=route)
    assert blocked.verdict == "drop" and blocked.decided_by is not None and blocked.decided_by.chain == "DOCKER-USER"
    assert check(rs, pkt("192.0.2.1", "10.50.0.2", 23), local=local).verdict == "drop"
    assert any("iptables-save" in n for n in rs.notes)


def test_xt_matches_read_through_iptables_save() -> None:
    rs = merge_iptables(load("iptables_xt"), (FIX / "iptables_xt.iptables-save").read_text(), None)
    assert check(rs, pkt("192.0.2.1", "10.0.0.1", 443), local={"10.0.0.1"}).verdict == "accept"  # multiport
    r = check(rs, pkt("192.0.2.1", "10.0.0.1", 22), local={"10.0.0.1"})
    assert r.verdict == "unknown" and r.reason is not None and "--limit-iface-in" in r.reason


def test_xt_without_iptables_save_is_unknown_naming_the_match() -> None:
    r = check(load("iptables_xt"), pkt("192.0.2.1", "10.0.0.1", 22), local={"10.0.0.1"})
    assert r.verdict == "unknown" and r.reason is not None and "xt match multiport" in r.reason


def test_hidden_nfproto_is_ambiguous_until_the_bytecode_says() -> None:
    doc = {"nftables": [
        {"table": {"family": "inet", "name": "t", "handle": 1}},
        {"chain": {"family": "inet", "table": "t", "name": "i", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}},
        {"rule": {"family": "inet", "table": "t", "chain": "i", "handle": 2, "expr": [
            {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}}, {"reject": {"type": "tcp reset"}}]}},
    ]}  # fmt: skip
    rs = parse_ruleset(doc)
    assert check(rs, pkt("fd00::2", "fd00::1", 80)).verdict == "unknown"
    assert check(rs, pkt("10.0.0.2", "10.0.0.1", 80, proto="udp")).verdict == "accept"  # tcp reset needs tcp
    debug = "inet t i 2\n  [ meta load nfproto => reg 1 ]\n  [ cmp eq reg 1 0x00000002 ]\n  [ reject type 1 code 0 ]\n"
    fixed = resolve_hidden(rs, hidden_nfproto(debug))
    assert check(fixed, pkt("fd00::2", "fd00::1", 80)).verdict == "accept"
    assert check(fixed, pkt("10.0.0.2", "10.0.0.1", 80)).verdict == "reject"
    none = resolve_hidden(rs, hidden_nfproto("inet t i 2\n  [ meta load l4proto => reg 1 ]\n  [ cmp eq reg 1 0x00000006 ]\n"))
    assert check(none, pkt("fd00::2", "fd00::1", 80)).verdict == "reject"  # no nfproto: both families
    assert check(resolve_hidden(rs, hidden_nfproto("")), pkt("fd00::2", "fd00::1", 80)).verdict == "unknown"


def test_a_device_the_hook_does_not_have_is_the_empty_name() -> None:
    doc = {"nftables": [
        {"table": {"family": "ip", "name": "nat", "handle": 1}},
        {"chain": {"family": "ip", "table": "nat", "name": "pre", "handle": 1, "type": "nat", "hook": "prerouting", "prio": -100, "policy": "accept"}},
        {"rule": {"family": "ip", "table": "nat", "chain": "pre", "handle": 2, "expr": [
            {"match": {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": "lan"}},
            {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 8011}},
            {"dnat": {"family": "ip", "addr": "10.0.0.9", "port": 80}}]}},
        {"rule": {"family": "ip", "table": "nat", "chain": "pre", "handle": 3, "expr": [
            {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "lan"}},
            {"dnat": {"family": "ip", "addr": "10.0.0.8", "port": 81}}]}},
    ]}  # fmt: skip
    r = check(parse_ruleset(doc), pkt("192.0.2.1", "10.0.0.1", 8011))
    assert r.translated_destination is not None and r.translated_destination.address == "10.0.0.9"
    r = check(parse_ruleset(doc), pkt("192.0.2.1", "10.0.0.1", 8012))
    assert r.translated_destination is None


def test_show_lists_named_sets_and_maps(mixed: NftRuleset) -> None:
    sets = {s.name: s for s in ruleset_view(mixed).sets}
    assert sets["s4"].kind == "set" and sets["s4"].type == "ipv4_addr"
    assert "10.0.0.0/8" in sets["s4"].elements and "192.168.1.1-192.168.1.9" in sets["s4"].elements
    assert sets["vm"].kind == "map" and sets["vm"].type == "inet_service : verdict"
    assert set(sets["vm"].elements) == {"22 : accept", "80 : jump c2"}
    assert sets["cc"].type == "ipv4_addr . inet_service" and sets["cc"].elements == ("10.1.1.1 . 22",)


def _rpf_ruleset() -> NftRuleset:
    fib = {"fib": {"result": "oif", "flags": ["saddr", "mark", "iif"]}}
    return parse_ruleset({"nftables": [
        {"table": {"family": "inet", "name": "firewalld"}},
        {"chain": {"family": "inet", "table": "firewalld", "name": "pre", "type": "filter", "hook": "prerouting", "prio": 10, "policy": "accept"}},
        {"rule": {"family": "inet", "table": "firewalld", "chain": "pre", "handle": 3,
                  "expr": [{"match": {"op": "==", "left": fib, "right": False}}, {"drop": None}]}},
    ]})  # fmt: skip


def test_reverse_path_check_from_the_routes() -> None:
    rs = _rpf_ruleset()
    routes = {A("192.0.2.1"): "eth0", A("10.9.0.1"): "wg0", A("2001:db8::1"): "eth0", A("fd00::1"): "wg0"}
    local = {A("10.0.0.1"), A("fd00::99")}

    def ev(src: str, iif: str, dst: str = "10.0.0.1") -> FwCheckResult:
        return evaluate(rs, pkt(src, dst, 22, iif=iif), local_addresses=local, route=routes.get)

    assert ev("192.0.2.1", "eth0").verdict == "accept"  # the way back is the way in
    assert ev("10.9.0.1", "eth0").verdict == "drop"  # spoofed: the way back is wg0
    assert ev("10.9.0.1", "lo").verdict == "accept"  # loopback passes without a lookup
    assert ev("2001:db8::1", "eth0", "fd00::99").verdict == "accept"
    v6 = ev("fd00::1", "eth0", "fd00::99")  # IPv6 looks up routes restricted to the device
    assert v6.verdict == "unknown" and v6.reason is not None and "fib saddr . mark . iif oif" in v6.reason
    assert evaluate(rs, pkt("192.0.2.1", "10.0.0.1", 22), local_addresses=local).verdict == "unknown"  # no routes


def test_limit_over_is_false_for_a_first_packet_and_ct_count_is_unknown() -> None:
    def rule(handle: int, port: int, *mid: object) -> dict[str, object]:
        m = {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": port}}
        return {"rule": {"family": "inet", "table": "t", "chain": "c", "handle": handle, "expr": [m, *mid, {"drop": None}]}}

    rs = parse_ruleset({"nftables": [
        {"table": {"family": "inet", "name": "t"}},
        {"chain": {"family": "inet", "table": "t", "name": "c", "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}},
        rule(2, 1, {"limit": {"rate": 10, "burst": 5, "per": "second", "inv": True}}),
        rule(3, 2, {"limit": {"rate": 10, "burst": 5, "per": "second"}}),
        rule(4, 3, {"ct count": {"val": 20, "inv": True}}),
    ]})  # fmt: skip
    over = check(rs, pkt("192.0.2.1", "10.0.0.1", 1))
    assert over.verdict == "accept"  # under any rate, "limit rate over" does not match
    under = check(rs, pkt("192.0.2.1", "10.0.0.1", 2))
    assert under.verdict == "drop" and under.decided_by is not None and "limit rate 10/second burst 5 packets" in under.decided_by.rule
    count = check(rs, pkt("192.0.2.1", "10.0.0.1", 3))
    assert count.verdict == "unknown" and count.reason is not None and "ct count over 20" in count.reason
