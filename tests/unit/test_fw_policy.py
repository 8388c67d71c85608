"""The policy file format, the policy's own verdicts, shadowed rules and the nft compiler."""

from __future__ import annotations

import ipaddress

import pytest

from portkit.engine.nftcompile import compile_policy, restore_script
from portkit.engine.policy import add_rule, covers, delete_rule, evaluate_policy, shadowed_rules
from portkit.errors import FileFormatError
from portkit.model.firewall import Packet, Policy, PolicyRule, PortRange
from portkit.parse.policy_yaml import dump_policy, load_policy, parse_services

SERVICES = parse_services("ssh\t\t22/tcp\t\t\t# SSH\nhttp 80/tcp www # web\ndomain 53/tcp\ndomain 53/udp\n")
A = ipaddress.ip_address


def load(text: str) -> Policy:
    return load_policy(text, path="p.yaml", services=SERVICES)


def test_parse_services_with_aliases() -> None:
    assert SERVICES[("ssh", "tcp")] == 22 and SERVICES[("www", "tcp")] == 80 and SERVICES[("domain", "udp")] == 53


def test_full_example_parses() -> None:
    p = load(
        "default: {in: reject, out: deny}\n"
        "essential_icmp: false\n"
        "rules:\n"
        "  - {action: allow, proto: tcp, port: [ssh, 8000-8100], from: 10.0.0.0/8, comment: lan}\n"
        "  - direction: out\n"
        "    action: allow\n"
        "    proto: udp\n"
        "    port: domain\n"
        "    to: ['2001:db8::53', 192.0.2.53]\n"
        "    interface: eth0\n"
        "    log: yes\n"
    )
    assert (p.default_in, p.default_out, p.essential_icmp) == ("reject", "deny", False)
    assert p.rules[0].ports == (PortRange(22, 22), PortRange(8000, 8100)) and p.rules[0].line == 4
    assert p.rules[1].destinations == ("2001:db8::53/128", "192.0.2.53/32") and p.rules[1].log and p.rules[1].line == 5


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("rules:\n  - {action: allow, prot: tcp}\n", 2, "unknown key 'prot'"),
        ("defaults: {in: deny}\n", 1, "unknown key 'defaults'"),
        ("rules:\n  - action: allow\n    port: 70000\n", 3, "bad port 70000"),
        ("rules:\n  - action: allow\n    port: nosuchservice\n", 3, "bad port 'nosuchservice'"),
        ("rules:\n  - action: allow\n    port: 90-80\n", 3, "bad port range"),
        ("rules:\n  - action: allow\n    from: 10.0.0.300/8\n", 3, "bad address or CIDR"),
        ("rules:\n  - action: allow\n    proto: icmp\n    port: 22\n", 4, "icmp has no ports"),
        ("rules:\n  - action: allow\n    family: ipv4\n    from: 2001:db8::/32\n", 4, "IPv6 but the rule is ipv4-only"),
        ("rules:\n  - action: allow\n    proto: icmp\n    to: 'fd00::1'\n", 4, "is IPv6 but icmp"),
        ("rules:\n  - {action: allow, from: 10.0.0.0/8, to: 'fd00::/8'}\n", 2, "sources are IPv4 and its destinations IPv6"),
        ("rules:\n  - {action: permit}\n", 2, "bad action 'permit'"),
        ("rules:\n  - {proto: tcp}\n", 2, "has no action"),
        ("rules:\n  - {action: allow, log: maybe}\n", 2, "log must be true or false"),
        ("rules:\n  - {action: allow, interface: 'way too long interface name'}\n", 2, "bad interface name"),
        ("rules: [\n", 2, "not valid YAML"),
        ("rules:\n  - {action: allow, action: deny}\n", 2, "appears twice"),
    ],
)
def test_errors_name_file_line_and_problem(text: str, line: int, words: str) -> None:
    with pytest.raises(FileFormatError) as exc:
        load(text)
    assert exc.value.line == line, str(exc.value)
    assert words in exc.value.problem
    assert str(exc.value).startswith(f"p.yaml:{line}: ")


def test_empty_file_is_the_defaults() -> None:
    assert load("") == Policy()
    assert load("rules:\n") == Policy()


def test_dump_round_trips() -> None:
    p = load(
        "default: {in: deny, out: reject}\nrules:\n"
        "  - {action: allow, proto: tcp, port: [ssh, 80-90], from: ['10.0.0.0/8', '2001:db8::/32'], interface: 'eth*', log: true, comment: 'say \"yes: no\"'}\n"
        "  - {direction: out, action: deny, proto: icmpv6, family: ipv6}\n"
    )
    again = load(dump_policy(p))
    strip = [r.__class__(**{**{f: getattr(r, f) for f in r.__slots__}, "line": None}) for r in p.rules]
    strip2 = [r.__class__(**{**{f: getattr(r, f) for f in r.__slots__}, "line": None}) for r in again.rules]
    assert strip == strip2 and again.default_out == "reject"


def packet(src: str, dst: str, dport: int | None, proto: str = "tcp", hook: str = "in", iif: str | None = "eth0", icmp: str | None = None) -> Packet:
    return Packet(hook, proto, A(src), A(dst), dport, 40000, iif if hook == "in" else None, iif if hook == "out" else None, icmp)


def test_policy_verdicts() -> None:
    p = load(
        "default: {in: deny, out: allow}\nrules:\n"
        "  - {action: allow, proto: tcp, port: ssh, from: 10.0.0.0/8}\n"
        "  - {action: reject, proto: any, port: 53}\n"
        "  - {direction: out, action: reject, to: 192.0.2.0/24}\n"
        "  - {action: allow, interface: wg0}\n"
    )
    r = evaluate_policy(p, packet("10.1.1.1", "10.0.0.1", 22))
    assert r.verdict == "accept" and r.decided_by is not None
    assert (r.decided_by.table, r.decided_by.chain, r.decided_by.handle) == ("policy", "in", 1)
    assert evaluate_policy(p, packet("192.0.2.1", "10.0.0.1", 22)).verdict == "drop"
    assert evaluate_policy(p, packet("192.0.2.1", "10.0.0.1", 53, "udp")).verdict == "reject"
    assert evaluate_policy(p, packet("10.0.0.1", "192.0.2.9", 443, hook="out")).verdict == "reject"
    assert evaluate_policy(p, packet("10.0.0.1", "198.51.100.1", 443, hook="out")).verdict == "accept"
    assert evaluate_policy(p, packet("127.0.0.1", "127.0.0.1", 9, iif="lo")).verdict == "accept"
    assert evaluate_policy(p, packet("192.0.2.1", "10.0.0.1", 9, "icmp", icmp="destination-unreachable")).verdict == "accept"
    assert evaluate_policy(p, packet("192.0.2.1", "10.0.0.1", None, "icmp")).verdict == "drop"  # echo is not essential
    assert evaluate_policy(p, packet("fd00::1", "fd00::2", None, "icmpv6", icmp="nd-neighbor-solicit")).verdict == "accept"
    unknown = evaluate_policy(p, packet("192.0.2.1", "10.0.0.1", 9, iif=None))
    assert unknown.verdict == "unknown" and unknown.reason is not None and "wg0" in unknown.reason
    assert evaluate_policy(p, packet("192.0.2.1", "10.0.0.1", 9, iif="wg0")).verdict == "accept"


def test_shadowed_rules() -> None:
    p = load(
        "rules:\n"
        "  - {action: allow, proto: tcp, port: 1000-2000, from: 10.0.0.0/8}\n"
        "  - {action: deny, proto: tcp, port: 1500, from: 10.1.0.0/16}\n"
        "  - {action: allow, proto: any, port: 22}\n"
        "  - {action: deny, proto: udp, port: 22}\n"
        "  - {action: deny, proto: tcp, port: 22, from: 192.0.2.1}\n"
        "  - {action: allow, proto: udp, port: 1500, from: 10.1.0.0/16}\n"
    )
    warnings = shadowed_rules(p)
    assert [(w.rule, w.line) for w in warnings] == [(2, 3), (4, 5), (5, 6)]
    assert "never matches" in warnings[0].message and "rule 1" in warnings[0].message


def test_covers_is_conservative() -> None:
    tcp22 = PolicyRule("in", "allow", "tcp", (PortRange(22, 22),))
    any22 = PolicyRule("in", "allow", "any", (PortRange(22, 22),))
    assert covers(any22, tcp22) and not covers(tcp22, any22)
    assert not covers(tcp22, PolicyRule("out", "allow", "tcp", (PortRange(22, 22),)))
    v4only = PolicyRule("in", "deny", "any", family="ipv4")
    assert covers(v4only, PolicyRule("in", "deny", "tcp", (PortRange(1, 1),), sources=("10.0.0.0/8",)))
    assert not covers(v4only, PolicyRule("in", "deny", "tcp", (PortRange(1, 1),)))


def test_edits() -> None:
    r1, r2 = PolicyRule("in", "allow", "tcp", (PortRange(22, 22),)), PolicyRule("in", "deny", "any")
    p = add_rule(add_rule(Policy(), r1), r2, position=1)
    assert p.rules == (r2, r1)
    assert delete_rule(p, 1).rules == (r1,)
    with pytest.raises(IndexError, match="valid: 1-2"):
        delete_rule(p, 3)
    with pytest.raises(IndexError):
        add_rule(p, r1, position=5)


def test_compile_is_deterministic_and_complete() -> None:
    p = load(
        "default: {in: reject, out: allow}\nlog_default: true\nrules:\n"
        "  - {action: allow, proto: tcp, port: [22, 8000-8100], from: [10.0.0.0/8, 'fd00::/8'], log: true, comment: 'say \"hi\"'}\n"
        "  - {action: reject, port: 53}\n"
        "  - {action: deny, family: ipv6, interface: eth1}\n"
        "  - {direction: out, action: deny, proto: udp, port: 123}\n"
    )
    script = compile_policy(p, source="p.yaml")
    assert script == compile_policy(p, source="p.yaml")
    lines = [ln.strip() for ln in script.splitlines()]
    assert lines[1:4] == ["table inet portkit", "delete table inet portkit", "table inet portkit {"]
    assert "type filter hook input priority filter; policy drop;" in lines
    assert "type filter hook output priority filter; policy accept;" in lines
    assert 'ip saddr 10.0.0.0/8 tcp dport { 22, 8000-8100 } log prefix "portkit in #1 allow: " accept comment "portkit #1: say \'hi\'"' in lines
    assert any(ln.startswith("ip6 saddr fd00::/8 tcp dport { 22, 8000-8100 }") for ln in lines)
    assert 'meta l4proto { tcp, udp } th dport 53 meta l4proto tcp reject with tcp reset comment "portkit #2: reject in any 53"' in lines
    assert 'meta nfproto ipv6 iifname "eth1" drop comment "portkit #3: deny in any ipv6 on eth1"' in lines
    assert 'udp dport 123 drop comment "portkit #4: deny out udp 123"' in lines
    assert any(ln.startswith('meta l4proto tcp log prefix "portkit in default reject: " reject with tcp reset') for ln in lines)
    assert lines.index("ct state established,related accept") < lines.index('iifname "lo" accept')


def test_restore_script() -> None:
    assert restore_script(None) == "table inet portkit\ndelete table inet portkit\n"
    assert restore_script("table inet portkit {\n}\n").endswith("table inet portkit {\n}\n")


def test_long_unicode_comments_fit_nft_byte_limits() -> None:
    import re

    rule = PolicyRule("in", "allow", "tcp", (PortRange(22, 22),), ("22",), log=True, comment="ü" * 130 + '"; drop')
    script = compile_policy(Policy(rules=(rule,)))
    comments = re.findall(r'comment "([^"]*)"', script)
    prefixes = re.findall(r'log prefix "([^"]*)"', script)
    assert comments and prefixes
    assert all(len(c.encode()) <= 128 for c in comments) and all(len(p.encode()) <= 127 for p in prefixes)
    assert "ü" * 50 in script and "\ufffd" not in script  # cut on a character boundary
