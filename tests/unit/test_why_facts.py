"""The gathering step's pure helpers, and resolution with an injected resolver (no real DNS)."""

from __future__ import annotations

import pytest

from portkit.engine.diagnosis import diagnose
from portkit.errors import ResolveError
from portkit.i18n import Message
from portkit.model.diagnosis import Code, Facts, ProbeFact, RouteFact, RuleVerdict, Unknown
from portkit.model.firewall import DecidedBy, FwCheckResult, TraceStep, TranslatedDestination
from portkit.ops import why_firewall as FW
from portkit.ops import why_gather as F


def test_verdict_from_a_firewall_result() -> None:
    res = FwCheckResult("drop", "in", DecidedBy("inet filter", "input", 7, "tcp dport 22 drop"))
    v = FW.verdict_of(res, "in", "tcp 10.0.1.2 -> 10.0.2.2:22")
    assert v == RuleVerdict(
        "in", "drop", "tcp dport 22 drop", "tcp 10.0.1.2 -> 10.0.2.2:22", "filter", "input", 7, "inet"
    )
    assert v.where == "table inet filter chain input handle 7"
    policy = FW.verdict_of(
        FwCheckResult("accept", "in", DecidedBy("ip nat", "input", None, "policy accept")), "in", "p"
    )
    assert policy is not None and policy.where == "table ip nat chain input policy"
    assert (
        FW.verdict_of(FwCheckResult("unknown", "in", None, reason="cannot evaluate meta cpu"), "in", "p")
        is None
    )
    empty = FW.verdict_of(FwCheckResult("accept", "in", None), "in", "p")
    assert empty is not None and empty.where == "" and empty.rule is None


def test_dnat_is_read_from_the_evaluation() -> None:
    res = FwCheckResult(
        "accept",
        "forward",
        None,
        (
            TraceStep(
                "inet nat", "prerouting", 'iifname "wan" tcp dport 8080 dnat ip to 10.0.30.2:2988', "dnat"
            ),
        ),
        TranslatedDestination("10.0.30.2", 2988),
    )
    d = FW.dnat_of(res, "198.51.100.1", 8080)
    assert d is not None and (d.to_address, d.to_port) == ("10.0.30.2", 2988)
    assert d.rule.startswith("table inet nat chain prerouting: ") and "dnat" in d.rule
    assert FW.dnat_of(FwCheckResult("accept", "in", None), "198.51.100.1", 8080) is None
    same = FwCheckResult("accept", "in", None, (), TranslatedDestination("198.51.100.1", 8080))
    assert FW.dnat_of(same, "198.51.100.1", 8080) is None
    redirect = FwCheckResult("accept", "in", None, (), TranslatedDestination("(local)", 3128))
    r = FW.dnat_of(redirect, "198.51.100.1", 80)
    assert r is not None and (r.to_address, r.to_port) == ("198.51.100.1", 3128)


def test_packet_text() -> None:
    assert (
        FW.packet_text("tcp", "10.0.1.2", "fd00::2", 80, iif="lan", oif="wan")
        == "tcp 10.0.1.2 -> [fd00::2]:80 iif lan oif wan"
    )


def test_unresolvable_name_is_a_fact_not_an_error() -> None:
    def resolver(name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        raise ResolveError(name, "Name or service not known")

    f = F.gather("nosuch.lab", 80, "tcp", F.GatherOptions(resolver=resolver))
    assert (
        f.address is None and f.resolution is not None and f.resolution.error == "Name or service not known"
    )
    d = diagnose(f, Message)
    assert d.findings[0].code == Code.NAME_NOT_RESOLVED and not d.reachable


def test_family_without_address_is_not_resolved() -> None:
    f = F.gather("v4only.lab", 80, "tcp", F.GatherOptions(family=6, resolver=lambda n: (("10.0.2.2",), ())))
    assert f.address is None and f.resolution is not None
    assert f.resolution.ipv4 == ("10.0.2.2",) and f.resolution.error == "no IPv6 address"


def test_attempt_records_why_a_fact_is_missing() -> None:
    acc = FW.Gathering()

    def boom() -> int:
        raise PermissionError(1, "Operation not permitted")

    assert acc.attempt("inbound", boom) is None
    assert acc.unknowns == [Unknown("inbound", "Operation not permitted")]


def test_unknown_for_missing_privilege_says_run_as_root() -> None:
    f = Facts(
        target="10.0.2.2",
        port=80,
        proto="tcp",
        address="10.0.2.2",
        roles=frozenset({"client"}),
        route=RouteFact("10.0.2.2", "unicast", "lan", "10.0.1.2"),
        probe=ProbeFact("10.0.2.2", 80, "tcp", "filtered", "no-response"),
        unknowns=(Unknown("outbound", "nft needs CAP_NET_ADMIN (run as root)"),),
    )
    d = diagnose(f, Message)
    assert d.findings[0].code == Code.UNKNOWN
    assert d.findings[0].fix is not None and "as root" in d.findings[0].fix
    g = Facts(
        **{
            **{k: getattr(f, k) for k in f.__dataclass_fields__},
            "unknowns": (Unknown("outbound", "cannot evaluate meta cpu"),),
        }
    )
    assert diagnose(g, Message).findings[0].fix is None


@pytest.mark.parametrize("text", ["10.0.0.1", "[fd00::1]", "::1"])
def test_is_address(text: str) -> None:
    assert F._is_address(text)
    assert not F._is_address("db.lan")
