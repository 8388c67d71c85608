"""iptables-save lines -> evaluator statements (for iptables-nft's opaque xt rules)."""

from __future__ import annotations

from portkit.model.firewall import (
    AnonSet,
    Flags,
    Lit,
    Match,
    Nat,
    Passive,
    Prefix,
    Range,
    SetMark,
    Unknown,
    VerdictStmt,
)
from portkit.parse.iptables_save import parse_rule, parse_save


def test_docker_dnat_rule() -> None:
    stmts = parse_rule("! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80")
    assert stmts == (
        Match(("meta iifname",), "!=", Lit("docker0")),
        Match(("meta l4proto",), "==", Lit("tcp")),
        Match(("tcp dport",), "==", Lit(8080)),
        Nat("dnat", "172.17.0.2", 80),
    )


def test_common_matches() -> None:
    assert parse_rule("-s 10.0.0.0/8 -p udp -m multiport --dports 53,5000:5010 -j ACCEPT") == (
        Match(("ip saddr",), "==", Prefix("10.0.0.0", 8)),
        Match(("meta l4proto",), "==", Lit("udp")),
        Match(("udp dport",), "==", AnonSet((Lit(53), Range(5000, 5010)))),
        VerdictStmt("accept"),
    )
    assert parse_rule("-m addrtype --dst-type LOCAL -j DOCKER") == (
        Match(("fib daddr type",), "==", AnonSet((Lit("local"),))),
        VerdictStmt("jump", "DOCKER"),
    )
    assert parse_rule("-o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")[1] == Match(
        ("ct state",), "==", Flags(("related", "established"))
    )
    assert parse_rule('-m comment --comment "a b" -i eth+ -j RETURN') == (
        Passive("comment"), Match(("meta iifname",), "==", Lit("eth*")), VerdictStmt("return"),
    )  # fmt: skip
    assert parse_rule("-p tcp --dport 82 -j MARK --set-xmark 0x5/0xffffffff")[-1] == SetMark("meta mark", 5)
    assert parse_rule("-j REJECT --reject-with icmp-host-prohibited") == (VerdictStmt("reject", "icmp-host-prohibited"),)
    assert parse_rule("-g OTHER") == (VerdictStmt("goto", "OTHER"),)
    assert parse_rule("-d 2001:db8::/32 -j DROP", family=6)[0] == Match(("ip6 daddr",), "==", Prefix("2001:db8::", 32))


def test_unknown_options_are_named() -> None:
    stmts = parse_rule("-p tcp --dport 25 -m recent --name x --rcheck --seconds 60 -j DROP")
    assert Unknown("iptables -m recent --rcheck") in stmts
    assert stmts[-1] == VerdictStmt("drop")
    # --set only records the source: always true, nothing this packet's fate depends on
    assert parse_rule("-p tcp --dport 22 -m recent --set --name SSH --rsource") == (
        Match(("meta l4proto",), "==", Lit("tcp")), Match(("tcp dport",), "==", Lit(22)), Passive("recent set"),
    )  # fmt: skip
    assert any(isinstance(s, Unknown) and "--limit-iface-in" in s.text for s in parse_rule("-m addrtype --dst-type LOCAL --limit-iface-in -j ACCEPT"))


def test_parse_save_keeps_order_per_chain() -> None:
    text = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j A\n-A FWD -j B\n-A INPUT -j C\nCOMMIT\n*nat\n-A INPUT -j D\nCOMMIT\n"
    assert parse_save(text) == {("filter", "INPUT"): ["-j A", "-j C"], ("filter", "FWD"): ["-j B"], ("nat", "INPUT"): ["-j D"]}


def test_jump_to_a_user_chain_of_any_name() -> None:
    assert parse_rule("-p tcp -m multiport --dports 80,443 -j WEB", chains={"WEB"})[-1] == VerdictStmt("jump", "WEB")
    assert parse_rule("-p tcp -m multiport --dports 80,443 -j WEB")[-1] == Unknown("iptables target WEB")  # not known as a chain


def test_tcp_flags_and_icmp_types() -> None:
    syn = Match(("tcp flags",), "!=", Flags(("syn",)), Flags(("fin", "syn", "rst", "ack")))
    assert syn in parse_rule("-p tcp -m tcp ! --syn -m state --state NEW -j DROP")
    assert Match(("tcp flags",), "==", Flags(()), Flags(("fin", "syn", "rst", "psh", "ack", "urg"))) in parse_rule("-p tcp --tcp-flags ALL NONE -j DROP")
    assert Match(("icmp type",), "==", Lit("echo-request"), None) in parse_rule("-p icmp -m icmp --icmp-type 8 -j ACCEPT")
    assert Unknown("iptables --icmp-type 13") in parse_rule("-p icmp -m icmp --icmp-type 13 -j ACCEPT")
    assert parse_rule("-p tcp --tcp-flags SYN,BOGUS SYN -j DROP")[0].text.startswith("iptables rule")  # type: ignore[union-attr]
