"""Fixes in the language of the table's owner, with validated values only (issue 13, items 11-12)."""

from __future__ import annotations

import shlex

import pytest

from portkit.engine.fixes import allow_command, owner_of
from portkit.model.diagnosis import RuleVerdict


def verdict(table: str | None, chain: str | None, family: str | None, handle: int | None = 7) -> RuleVerdict:
    return RuleVerdict(
        "in", "reject", "tcp dport 22 reject", "tcp 10.0.10.12 -> 10.0.20.3:22", table, chain, handle, family
    )


@pytest.mark.parametrize(
    ("table", "chain", "family", "owner", "start"),
    [
        ("portkit", "input", "inet", "portkit", "portkit fw allow 22/tcp --in --from 10.0.10.12"),
        ("filter", "ufw-user-input", "ip", "ufw", "ufw allow proto tcp from 10.0.10.12 to any port 22"),
        ("firewalld", "filter_IN_public_deny", "inet", "firewalld", "firewall-cmd --add-rich-rule="),
        ("filter", "DOCKER", "ip", "docker", "iptables -I DOCKER-USER -s 10.0.10.12 -d 10.0.20.3 -p tcp"),
        (
            "filter",
            "INPUT",
            "ip",
            "iptables",
            "iptables -I INPUT -s 10.0.10.12 -d 10.0.20.3 -p tcp --dport 22",
        ),
        (
            "filter",
            "input",
            "inet",
            "nft",
            "nft insert rule inet filter input position 7 ip saddr 10.0.10.12",
        ),
    ],
)
def test_each_owner_gets_its_own_language(
    table: str, chain: str, family: str, owner: str, start: str
) -> None:
    v = verdict(table, chain, family)
    assert owner_of(v) == owner
    lines = allow_command(v, direction="in", proto="tcp", port=22, peer="10.0.10.12", dst="10.0.20.3")
    assert lines is not None and lines[0].startswith(start)
    for line in lines:
        shlex.split(line)  # every line is a well-formed command line


def test_firewalld_gets_a_permanent_line_too() -> None:
    lines = allow_command(
        verdict("firewalld", "filter_INPUT", "inet"),
        direction="in",
        proto="udp",
        port=53,
        peer=None,
        dst="10.0.20.3",
    )
    assert lines == ["firewall-cmd --add-port=53/udp", "firewall-cmd --permanent --add-port=53/udp"]


def test_ip6tables_for_an_ip6_table() -> None:
    lines = allow_command(
        verdict("filter", "INPUT", "ip6"), direction="in", proto="tcp", port=80, peer="fd00::2", dst="fd00::3"
    )
    assert lines == ["ip6tables -I INPUT -s fd00::2 -d fd00::3 -p tcp --dport 80 -j ACCEPT"]


def test_policy_decided_appends() -> None:
    lines = allow_command(
        verdict("filter", "input", "inet", None),
        direction="in",
        proto="tcp",
        port=80,
        peer=None,
        dst="10.0.20.3",
    )
    assert lines == ["nft add rule inet filter input ip daddr 10.0.20.3 tcp dport 80 accept"]


@pytest.mark.parametrize(
    ("table", "chain", "proto", "port", "peer", "dst"),
    [
        ("filter", "input; flush ruleset", "tcp", 22, None, "10.0.20.3"),
        ("filter", "input", "tcp; rm", 22, None, "10.0.20.3"),
        ("filter", "input", "tcp", 0, None, "10.0.20.3"),
        ("filter", "input", "tcp", 70000, None, "10.0.20.3"),
        ("filter", "input", "tcp", 22, "10.0.0.1 accept", "10.0.20.3"),
        ("filter", "input", "tcp", 22, None, "server.example"),
        ("filter", "INPUT$(id)", "tcp", 22, None, "10.0.20.3"),
    ],
)
def test_unchecked_values_give_no_command(
    table: str, chain: str, proto: str, port: int, peer: str | None, dst: str
) -> None:
    for family in ("inet", "ip"):
        v = verdict(table, chain, family)
        assert allow_command(v, direction="in", proto=proto, port=port, peer=peer, dst=dst) is None


def test_fw_apply_warns_about_other_tables_on_the_same_hook() -> None:
    from portkit.ops.firewall_apply import other_filters

    ruleset = {
        "nftables": [
            {"metainfo": {"json_schema_version": 1}},
            {"chain": {"family": "inet", "table": "portkit", "name": "input", "type": "filter", "hook": "input"}},
            {"chain": {"family": "inet", "table": "filter", "name": "input", "type": "filter", "hook": "input"}},
            {"chain": {"family": "ip", "table": "nat", "name": "PREROUTING", "type": "nat", "hook": "prerouting"}},
            {"chain": {"family": "inet", "table": "filter", "name": "helper"}},
        ]
    }
    (w,) = other_filters(ruleset)
    assert "table inet filter also filters the input hook (chain input)" in w.message
