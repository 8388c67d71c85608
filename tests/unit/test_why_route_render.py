"""`ip -j route get` parsing, and the why/trace renderers (story in English and Korean, JSON contract)."""

from __future__ import annotations

import json

from portkit.backends.host import parse_route_get
from portkit.engine.diagnosis import diagnose
from portkit.i18n import Message, translator
from portkit.model.diagnosis import Facts, Listener, ProbeFact, RouteFact, RuleVerdict
from portkit.model.trace import HOP_DESTINATION, HOP_SILENT, HOP_TIME_EXCEEDED, TraceHop, TraceResult
from portkit.render.jsonout import dumps
from portkit.render.why import trace_json, trace_text, why_json, why_text


def test_parse_route_via_gateway() -> None:
    text = '[{"dst":"10.71.3.2","gateway":"10.71.1.1","dev":"lan","prefsrc":"10.71.1.2","flags":[],"uid":0,"cache":[]}]'
    assert parse_route_get("10.71.3.2", text) == RouteFact(
        "10.71.3.2", "unicast", "lan", "10.71.1.2", "10.71.1.1"
    )


def test_parse_route_local_and_v6_and_forwarded() -> None:
    local = '[{"type":"local","dst":"10.71.1.2","dev":"lo","prefsrc":"10.71.1.2","flags":[],"uid":0,"cache":["local"]}]'
    assert parse_route_get("10.71.1.2", local).kind == "local"
    v6 = '[{"dst":"fd71:3::2","from":"::","gateway":"fd71:1::1","dev":"lan","prefsrc":"fd71:1::2","metric":1024,"flags":[],"pref":"medium"}]'
    r = parse_route_get("fd71:3::2", v6)
    assert (r.gateway, r.source) == ("fd71:1::1", "fd71:1::2")
    fwd = '[{"dst":"10.71.3.2","from":"10.71.1.2","dev":"wan","flags":[],"cache":[],"iif":"mid"}]'
    r = parse_route_get("10.71.3.2", fwd)
    assert (r.kind, r.dev, r.gateway, r.source) == ("unicast", "wan", None, None)


def test_parse_route_blackhole_and_empty_are_no_route() -> None:
    assert parse_route_get("10.9.9.9", '[{"type":"blackhole","dst":"10.9.9.9","flags":[]}]').kind == "none"
    assert parse_route_get("10.9.9.9", "").kind == "none"


def _loopback_only() -> Facts:
    return Facts(
        target="db.lab",
        port=3306,
        proto="tcp",
        address="10.0.2.2",
        roles=frozenset({"server"}),
        client="10.0.1.2",
        local_target=True,
        listeners=(Listener("127.0.0.1", 3306, "tcp", "mysqld", 42),),
        inbound=RuleVerdict(
            "in",
            "accept",
            "tcp dport 3306 accept",
            "tcp 10.0.1.2 -> 10.0.2.2:3306 iif lan",
            "filter",
            "input",
            4,
            "inet",
        ),
    )


def test_story_english_has_ticks_crosses_verdict_and_fix() -> None:
    d = diagnose(_loopback_only(), Message)
    text = why_text(d, translator("en"))
    assert "✓ inbound rules" in text and "✗ listener" in text
    assert "verdict: not reachable" in text
    assert "LOOPBACK_ONLY" in text and "fix: bind to 0.0.0.0 or 10.0.2.2 instead of 127.0.0.1:3306" in text
    assert "\x1b[" not in text


def test_story_korean_is_translated_but_keeps_codes_and_values() -> None:
    d = diagnose(_loopback_only(), Message)
    en = why_text(d, translator("en"))
    ko = why_text(d, translator("ko"))
    assert ko != en
    assert "LOOPBACK_ONLY" in ko and "127.0.0.1:3306" in ko and "mysqld" in ko
    assert "verdict: not reachable" not in ko
    assert any("\uac00" <= ch <= "\ud7a3" for ch in ko), "no Hangul in the Korean story"


def test_json_is_english_whatever_the_language() -> None:
    d = diagnose(_loopback_only(), Message)
    doc = json.loads(dumps(why_json(d)))
    assert doc["schema"] == 1 and doc["reachable"] is False and doc["address"] == "10.0.2.2"
    f = doc["findings"][0]
    assert f["code"] == "LOOPBACK_ONLY" and f["message"].startswith("mysqld listens on 127.0.0.1:3306 only")
    assert {c["name"] for c in doc["checks"]} >= {"inbound", "listen"}


def test_color_only_when_asked() -> None:
    d = diagnose(_loopback_only(), Message)
    assert "\x1b[" in why_text(d, translator("en"), color=True)


TR = TraceResult(
    "srv.lab",
    "10.0.2.2",
    81,
    "tcp",
    False,
    "filtered",
    (TraceHop(1, "10.0.1.1", 0.2, HOP_TIME_EXCEEDED), TraceHop(2, None, None, HOP_SILENT)),
    "10.0.1.1",
)


def test_trace_json_contract() -> None:
    doc = trace_json(TR)
    assert list(doc) == [
        "schema",
        "target",
        "address",
        "port",
        "proto",
        "reached",
        "state",
        "hops",
        "last_hop",
    ]
    assert doc["hops"][1] == {"ttl": 2, "address": None, "rtt_ms": None}


def test_trace_text_names_last_hop_in_both_languages() -> None:
    en = trace_text(TR, translator("en"))
    assert "the probes die after hop 1 (10.0.1.1)" in en and "(srv.lab)" in en
    ko = trace_text(TR, translator("ko"))
    assert "10.0.1.1" in ko and ko != en


def test_trace_text_reached() -> None:
    t = TraceResult(
        "10.0.2.2",
        "10.0.2.2",
        80,
        "tcp",
        True,
        "open",
        (TraceHop(1, "10.0.2.2", 0.3, HOP_DESTINATION, "syn-ack"),),
        "10.0.2.2",
        "syn-ack",
    )
    assert "reached 10.0.2.2 in 1 hops: open (syn-ack)" in trace_text(t, translator("en"))


def test_probe_evidence_mentions_icmp_sender() -> None:
    f = Facts(
        target="10.0.2.2",
        port=22,
        proto="tcp",
        address="10.0.2.2",
        roles=frozenset({"client"}),
        route=RouteFact("10.0.2.2", "unicast", "lan", "10.0.1.2", "10.0.1.1"),
        outbound=RuleVerdict("out", "accept", None, "p"),
        probe=ProbeFact("10.0.2.2", 22, "tcp", "filtered", "admin-prohibited", "10.0.2.2"),
    )
    d = diagnose(f, Message)
    assert "admin-prohibited from 10.0.2.2" in d.findings[0].evidence[0]
