"""The why reasoning on recorded fact snapshots: every code, the ordering, disagreements, unknowns."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portkit.engine.diagnosis import diagnose, listener_covers
from portkit.i18n import Message, translator
from portkit.model.diagnosis import (
    CHECK_STATUSES,
    Code,
    ConntrackFact,
    Diagnosis,
    DnatFact,
    Facts,
    ForwardPath,
    Listener,
    ProbeFact,
    Resolution,
    RouteFact,
    RuleVerdict,
    Unknown,
)
from portkit.model.trace import HOP_SILENT, HOP_TIME_EXCEEDED, TraceHop, TraceResult
from portkit.render.jsonout import document

CLIENT = frozenset({"client"})
SERVER = frozenset({"server"})
ROUTER = frozenset({"router"})

ROUTE = RouteFact("10.0.2.2", "unicast", dev="lan", source="10.0.1.2", gateway="10.0.1.1")
ACCEPT_OUT = RuleVerdict(
    "out", "accept", "policy accept", "tcp 10.0.1.2 -> 10.0.2.2:80", "filter", "output", None, "inet"
)
OPEN = ProbeFact("10.0.2.2", 80, "tcp", "open", "syn-ack", None, 0.4)
TIMEOUT = ProbeFact("10.0.2.2", 80, "tcp", "filtered", "no-response")
REFUSED = ProbeFact("10.0.2.2", 80, "tcp", "closed", "conn-refused")
TRACE = TraceResult(
    "10.0.2.2",
    "10.0.2.2",
    80,
    "tcp",
    False,
    "filtered",
    (
        TraceHop(1, "10.0.1.1", 0.2, HOP_TIME_EXCEEDED),
        TraceHop(2, "10.0.5.1", 0.3, HOP_TIME_EXCEEDED),
        TraceHop(3, None, None, HOP_SILENT),
    ),
    "10.0.5.1",
)


def client(**kw: object) -> Facts:
    base = Facts(
        target="10.0.2.2",
        port=80,
        proto="tcp",
        address="10.0.2.2",
        roles=CLIENT,
        client="10.0.1.2",
        route=ROUTE,
        outbound=ACCEPT_OUT,
        probe=OPEN,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


IN_ACCEPT = RuleVerdict(
    "in", "accept", "tcp dport 80 accept", "tcp 10.0.1.2 -> 10.0.2.2:80 iif wan", "filter", "input", 5, "inet"
)
IN_DROP = RuleVerdict(
    "in", "drop", "policy drop", "tcp 10.0.1.2 -> 10.0.2.2:80 iif wan", "filter", "input", None, "inet"
)
IN_REJECT = RuleVerdict(
    "in",
    "reject",
    "tcp dport 80 reject with icmpx admin-prohibited",
    "tcp 10.0.1.2 -> 10.0.2.2:80 iif wan",
    "filter",
    "input",
    7,
    "inet",
)
HTTPD = Listener("0.0.0.0", 80, "tcp", "httpd", 321)


def server(**kw: object) -> Facts:
    base = Facts(
        target="10.0.2.2",
        port=80,
        proto="tcp",
        address="10.0.2.2",
        roles=SERVER,
        client="10.0.1.2",
        local_target=True,
        listeners=(HTTPD,),
        inbound=IN_ACCEPT,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


DNAT = DnatFact(
    "table ip nat chain prerouting handle 3: iifname wan tcp dport 8080 dnat to 10.0.2.2:2988",
    "10.0.2.2",
    2988,
)
FWD_ACCEPT = RuleVerdict(
    "forward",
    "accept",
    "policy accept",
    "tcp 192.0.2.7 -> 10.0.2.2:2988 iif wan oif lan",
    "filter",
    "forward",
    None,
    "inet",
)
FWD_DROP = RuleVerdict("forward", "drop", "policy drop", FWD_ACCEPT.packet, "filter", "forward", None, "inet")
TARGET_OPEN = ProbeFact("10.0.2.2", 2988, "tcp", "open", "syn-ack", vantage="10.0.2.1")


def router(fp: ForwardPath | None = None, **kw: object) -> Facts:
    path = fp or ForwardPath(
        "10.0.2.2",
        2988,
        DNAT,
        FWD_ACCEPT,
        RouteFact("10.0.2.2", "unicast", dev="lan", source="10.0.2.1"),
        probe=TARGET_OPEN,
    )
    base = Facts(
        target="192.0.2.1",
        port=8080,
        proto="tcp",
        address="192.0.2.1",
        roles=ROUTER,
        client="192.0.2.7",
        local_target=True,
        forwards=(path,),
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def run(f: Facts) -> Diagnosis:
    return diagnose(f, Message)


def codes(d: Diagnosis) -> list[str]:
    return [x.code for x in d.findings]


def check_status(d: Diagnosis, name: str) -> str:
    return next(c.status for c in d.checks if c.name == name)


# ----------------------------------------------------------------- client vantage


def test_reachable_from_client() -> None:
    d = run(client())
    assert d.reachable and codes(d) == [Code.REACHABLE]
    assert d.findings[0].fix is None
    assert any("syn-ack" in e for e in d.findings[0].evidence)
    assert check_status(d, "probe") == "pass" and check_status(d, "outbound") == "pass"


def test_name_not_resolved_is_a_finding_and_skips_the_rest() -> None:
    d = run(
        client(
            target="nosuch.lab",
            address=None,
            resolution=Resolution("nosuch.lab", error="Name or service not known"),
            route=None,
            probe=None,
        )
    )
    assert codes(d) == [Code.NAME_NOT_RESOLVED] and not d.reachable
    assert d.address is None
    assert "getent ahosts nosuch.lab" in (d.findings[0].fix or "")
    assert check_status(d, "resolve") == "fail" and check_status(d, "probe") == "skipped"


def test_resolution_names_both_families() -> None:
    d = run(client(target="srv.lab", resolution=Resolution("srv.lab", ("10.0.2.2",), ("fd00:2::2",))))
    detail = next(c.detail for c in d.checks if c.name == "resolve")
    assert "10.0.2.2" in detail and "fd00:2::2" in detail


def test_no_route() -> None:
    d = run(client(route=RouteFact("10.0.2.2", "none", error="Network is unreachable"), probe=None))
    assert codes(d) == [Code.NO_ROUTE]
    assert "Network is unreachable" in d.findings[0].evidence[0]
    assert check_status(d, "probe") == "skipped"


def test_outbound_drop_is_main_cause_with_pasteable_fix() -> None:
    out = RuleVerdict("out", "drop", "tcp dport 80 drop", ACCEPT_OUT.packet, "filter", "output", 9, "inet")
    d = run(client(outbound=out, probe=TIMEOUT))
    assert codes(d) == [Code.FIREWALL_OUTBOUND]
    f = d.findings[0]
    assert f.fix == "nft insert rule inet filter output position 9 ip daddr 10.0.2.2 tcp dport 80 accept"
    assert any("table inet filter chain output handle 9" in e for e in f.evidence)


def test_outbound_drop_of_portkit_policy_fix_uses_fw() -> None:
    out = RuleVerdict("out", "drop", "policy drop", ACCEPT_OUT.packet, "portkit", "output", None, "inet")
    d = run(client(outbound=out, probe=TIMEOUT))
    assert d.findings[0].fix == "portkit fw allow 80/tcp --out --to 10.0.2.2"


def test_outbound_drop_but_probe_open_trusts_the_probe_and_says_so() -> None:
    out = RuleVerdict("out", "drop", "tcp dport 80 drop", ACCEPT_OUT.packet, "filter", "output", 9, "inet")
    d = run(client(outbound=out))
    assert d.reachable and codes(d) == [Code.REACHABLE]
    assert any("yet the probe got through" in e for e in d.findings[0].evidence)


def test_filtered_on_path_names_last_hop_when_rules_accept() -> None:
    d = run(client(probe=TIMEOUT, trace=TRACE))
    assert codes(d) == [Code.FILTERED_ON_PATH]
    f = d.findings[0]
    assert "after hop 2 (10.0.5.1)" in f.message
    assert "outside this host" in f.message  # the probe-vs-config disagreement is said
    assert any("the probes die after hop 2 (10.0.5.1)" in e for e in f.evidence)
    assert check_status(d, "trace") == "fail"


def test_filtered_without_trace_still_filtered_on_path() -> None:
    d = run(client(probe=TIMEOUT))
    assert codes(d) == [Code.FILTERED_ON_PATH]


def test_timeout_with_undetermined_outbound_is_unknown_not_a_guess() -> None:
    d = run(
        client(
            probe=TIMEOUT, outbound=None, unknowns=(Unknown("outbound", "reading the ruleset needs root"),)
        )
    )
    assert codes(d) == [Code.UNKNOWN] and not d.reachable
    assert any("needs root" in e for e in d.findings[0].evidence)
    assert check_status(d, "outbound") == "unknown"


def test_refused_from_client_is_not_listening() -> None:
    d = run(client(probe=REFUSED))
    assert codes(d) == [Code.NOT_LISTENING]
    assert any("tcp reset" in e for e in d.findings[0].evidence)


def test_icmp_prohibited_from_target_is_inbound_reject() -> None:
    p = ProbeFact("10.0.2.2", 80, "tcp", "filtered", "admin-prohibited", "10.0.2.2")
    assert codes(run(client(probe=p))) == [Code.FIREWALL_INBOUND_REJECT]


def test_icmp_prohibited_from_router_is_filtered_on_path() -> None:
    p = ProbeFact("10.0.2.2", 80, "tcp", "filtered", "admin-prohibited", "10.0.1.1")
    d = run(client(probe=p))
    assert codes(d) == [Code.FILTERED_ON_PATH]
    assert "10.0.1.1" in d.findings[0].message


def test_host_unreach_from_router_is_no_route_on_path() -> None:
    p = ProbeFact("10.0.2.2", 80, "tcp", "filtered", "host-unreach", "10.0.1.1")
    d = run(client(probe=p))
    assert codes(d) == [Code.NO_ROUTE] and d.findings[0].stage == "path"


def test_udp_silence_is_unknown() -> None:
    p = ProbeFact("10.0.2.2", 53, "udp", "open|filtered", "no-response")
    d = run(client(proto="udp", port=53, probe=p))
    assert codes(d) == [Code.UNKNOWN]
    assert check_status(d, "probe") == "unknown"


def test_other_family_that_works_is_evidence() -> None:
    v6 = ProbeFact("fd00:2::2", 80, "tcp", "closed", "conn-refused")
    d = run(client(address="fd00:2::2", probe=v6, other_family=OPEN))
    assert codes(d) == [Code.NOT_LISTENING]
    assert any("other address family works" in e for e in d.findings[0].evidence)


# ----------------------------------------------------------------- server vantage


def test_server_reachable() -> None:
    d = run(server())
    assert d.reachable and codes(d) == [Code.REACHABLE]
    assert "from 10.0.1.2" in d.findings[0].message


def test_not_listening() -> None:
    d = run(server(listeners=()))
    assert codes(d) == [Code.NOT_LISTENING]


def test_loopback_only_fix_names_both_binds() -> None:
    d = run(server(listeners=(Listener("127.0.0.1", 80, "tcp", "mysqld", 77),)))
    assert codes(d) == [Code.LOOPBACK_ONLY]
    assert (
        d.findings[0].fix == "bind to 0.0.0.0 or 10.0.2.2 instead of 127.0.0.1:80 (in mysqld's configuration)"
    )
    assert any("mysqld (pid 77)" in e for e in d.findings[0].evidence)


def test_loopback_target_on_loopback_listener_is_fine() -> None:
    lo = Listener("127.0.0.1", 80, "tcp", "mysqld", 77)
    d = run(server(address="127.0.0.1", target="127.0.0.1", listeners=(lo,)))
    assert d.reachable


def test_bound_to_other_address() -> None:
    d = run(server(listeners=(Listener("10.0.3.1", 80, "tcp", "httpd", 5),)))
    assert codes(d) == [Code.BOUND_TO_OTHER_ADDRESS]
    assert "10.0.3.1:80" in d.findings[0].message


def test_inbound_drop_and_reject() -> None:
    d = run(server(inbound=IN_DROP))
    assert codes(d) == [Code.FIREWALL_INBOUND_DROP]
    assert (
        d.findings[0].fix
        == "nft add rule inet filter input ip saddr 10.0.1.2 ip daddr 10.0.2.2 tcp dport 80 accept"
    )
    d = run(server(inbound=IN_REJECT))
    assert codes(d) == [Code.FIREWALL_INBOUND_REJECT]
    assert "position 7" in (d.findings[0].fix or "")


def test_inbound_portkit_policy_fix_is_fw_allow_from_client() -> None:
    v = replace(IN_DROP, table="portkit")
    assert run(server(inbound=v)).findings[0].fix == "portkit fw allow 80/tcp --in --from 10.0.1.2"


def test_firewall_comes_before_listener_along_the_path() -> None:
    d = run(server(inbound=IN_DROP, listeners=()))
    assert codes(d) == [Code.FIREWALL_INBOUND_DROP, Code.NOT_LISTENING]


def test_server_with_unreadable_ruleset_is_unknown() -> None:
    d = run(server(inbound=None, unknowns=(Unknown("inbound", "nft needs CAP_NET_ADMIN"),)))
    assert codes(d) == [Code.UNKNOWN]
    assert check_status(d, "inbound") == "unknown"


def test_definite_cause_wins_over_unknown() -> None:
    d = run(server(inbound=None, listeners=(), unknowns=(Unknown("inbound", "nft needs CAP_NET_ADMIN"),)))
    assert codes(d) == [Code.NOT_LISTENING]


def test_local_probe_open_does_not_override_server_checks() -> None:
    d = run(
        server(
            roles=frozenset({"client", "server"}),
            probe=OPEN,
            inbound=IN_DROP,
            route=RouteFact("10.0.2.2", "local"),
        )
    )
    assert codes(d) == [Code.FIREWALL_INBOUND_DROP]


# ----------------------------------------------------------------- router vantage


def test_router_reachable_and_conntrack() -> None:
    ct = ConntrackFact(
        "tcp 192.0.2.7:40000 -> 192.0.2.1:8080", "192.0.2.7:40000 -> 10.0.2.2:2988", "ESTABLISHED"
    )
    d = run(router(conntrack=(ct,)))
    assert d.reachable and codes(d) == [Code.REACHABLE]
    assert check_status(d, "conntrack") == "pass" and check_status(d, "dnat") == "pass"


def test_router_stale_conntrack_is_history_not_a_pass() -> None:
    # the DNAT now goes to :2988; a TIME_WAIT flow from when it went to :2989 proves nothing
    old = ConntrackFact("tcp 192.0.2.7:40001 -> 192.0.2.1:8080", "192.0.2.7:40001 -> 10.0.2.2:2989", "TIME_WAIT")
    d = run(router(conntrack=(old,)))
    assert codes(d) == [Code.REACHABLE]
    assert check_status(d, "conntrack") == "skipped"
    assert not any("2989" in str(e) for f in d.findings for e in f.evidence)
    new = ConntrackFact("tcp 192.0.2.7:40002 -> 192.0.2.1:8080", "192.0.2.7:40002 -> 10.0.2.2:2988", "ESTABLISHED")
    d = run(router(conntrack=(old, new)))
    assert check_status(d, "conntrack") == "pass"
    assert "2988" in str(next(c for c in d.checks if c.name == "conntrack").detail)


def test_firewall_forward() -> None:
    fp = ForwardPath("10.0.2.2", 2988, DNAT, FWD_DROP, probe=TARGET_OPEN)
    d = run(router(fp))
    assert codes(d) == [Code.FIREWALL_FORWARD]
    assert (
        d.findings[0].fix
        == "nft add rule inet filter forward ip saddr 192.0.2.7 ip daddr 10.0.2.2 tcp dport 2988 accept"
    )


def test_forward_target_not_listening_remote() -> None:
    p = ProbeFact("10.0.2.2", 2988, "tcp", "closed", "conn-refused", vantage="10.0.2.1")
    d = run(router(ForwardPath("10.0.2.2", 2988, DNAT, FWD_ACCEPT, probe=p)))
    assert codes(d) == [Code.FORWARD_TARGET_NOT_LISTENING]
    assert "10.0.2.2:2988" in d.findings[0].message


def test_forward_target_not_listening_local_names_the_real_port() -> None:
    near = (Listener("0.0.0.0", 2989, "tcp", "python3", 10), Listener("0.0.0.0", 22, "tcp", "sshd", 1))
    fp = ForwardPath("10.0.2.1", 2988, DNAT, None, target_local=True, listeners=(), nearby=near)
    d = run(router(fp))
    assert codes(d) == [Code.FORWARD_TARGET_NOT_LISTENING]
    assert d.findings[0].fix is not None
    assert d.findings[0].fix.startswith("forward 8080 points at 2988 but the service listens on 2989")


def test_forward_target_unreachable_by_probe_and_by_route() -> None:
    p = ProbeFact("10.0.2.2", 2988, "tcp", "filtered", "host-unreach", "10.0.2.1")
    assert codes(run(router(ForwardPath("10.0.2.2", 2988, DNAT, FWD_ACCEPT, probe=p)))) == [
        Code.FORWARD_TARGET_UNREACHABLE
    ]
    nr = RouteFact("10.9.9.9", "none", error="Network is unreachable")
    assert codes(run(router(ForwardPath("10.9.9.9", 2988, DNAT, FWD_ACCEPT, route=nr)))) == [
        Code.FORWARD_TARGET_UNREACHABLE
    ]


def test_exposed_despite_inbound_deny_is_a_warning_after_reachable() -> None:
    d = run(router(inbound=replace(IN_DROP, packet="tcp 192.0.2.7 -> 192.0.2.1:8080 iif wan")))
    assert codes(d) == [Code.REACHABLE, Code.EXPOSED_DESPITE_INBOUND_DENY]
    assert d.reachable
    ex = d.findings[1]
    assert "ct status dnat drop" in (ex.fix or "") and "DOCKER-USER" in (ex.fix or "")
    assert any("DNAT rule" in e for e in ex.evidence)


def test_no_exposure_warning_when_forward_target_is_dead() -> None:
    p = ProbeFact("10.0.2.2", 2988, "tcp", "closed", "conn-refused")
    d = run(router(ForwardPath("10.0.2.2", 2988, DNAT, FWD_ACCEPT, probe=p), inbound=IN_DROP))
    assert codes(d) == [Code.FORWARD_TARGET_NOT_LISTENING]


def test_router_unknown_forward_verdict() -> None:
    fp = ForwardPath("10.0.2.2", 2988, DNAT, None, probe=TARGET_OPEN)
    d = run(router(fp, unknowns=(Unknown("forward", "the rule uses an xt match portkit cannot read"),)))
    assert codes(d) == [Code.UNKNOWN]


def test_plain_forwarding_router_without_dnat() -> None:
    fp = ForwardPath("10.0.2.2", 80, None, FWD_DROP)
    d = run(router(fp, target="10.0.2.2", address="10.0.2.2", port=80, local_target=False))
    assert codes(d) == [Code.FIREWALL_FORWARD]
    assert check_status(d, "dnat") == "skipped"


# ----------------------------------------------------------------- ordering, rendering, contract


def test_path_order_client_then_router_then_server() -> None:
    out = RuleVerdict("out", "drop", "policy drop", "p", "filter", "output", None, "inet")
    fp = ForwardPath("10.0.2.2", 2988, DNAT, FWD_DROP)
    f = Facts(
        target="10.0.2.2",
        port=80,
        proto="tcp",
        address="10.0.2.2",
        roles=frozenset({"client", "router", "server"}),
        client="10.0.1.2",
        route=ROUTE,
        outbound=out,
        probe=TIMEOUT,
        listeners=(),
        inbound=IN_DROP,
        forwards=(fp,),
    )
    assert codes(run(f)) == [
        Code.FIREWALL_OUTBOUND,
        Code.FIREWALL_FORWARD,
        Code.FIREWALL_INBOUND_DROP,
        Code.NOT_LISTENING,
    ]


def test_json_contract_fields() -> None:
    doc = document(**{k: v for k, v in _asdict(run(client(probe=TIMEOUT, trace=TRACE))).items()})
    assert set(doc) == {"schema", "target", "address", "port", "proto", "reachable", "findings", "checks"}
    assert set(doc["findings"][0]) == {"code", "message", "evidence", "fix"}
    assert set(doc["checks"][0]) == {"name", "status", "detail"}
    assert all(c["status"] in CHECK_STATUSES for c in doc["checks"])


def _asdict(d: Diagnosis) -> dict[str, object]:
    from portkit.render.jsonout import to_jsonable

    out = to_jsonable(d)
    assert isinstance(out, dict)
    return out


def test_korean_rendering_differs_and_json_stays_english() -> None:
    d = run(server(listeners=(Listener("127.0.0.1", 80, "tcp", "mysqld", 77),)))
    ko = translator("ko")
    f = d.findings[0]
    assert f.message == f.message_text.english()
    rendered = f.message_text.render(ko)
    assert rendered != f.message, "the Korean catalog is missing or not compiled (pip install -e .)"
    assert "127.0.0.1:80" in rendered  # parameters survive translation


@pytest.mark.parametrize(
    ("listener", "target", "covers"),
    [
        ("0.0.0.0", "10.0.0.2", True),
        ("0.0.0.0", "fd00::2", False),
        ("::", "10.0.0.2", True),
        ("::", "fd00::2", True),
        ("127.0.0.1", "10.0.0.2", False),
        ("::ffff:10.0.0.2", "10.0.0.2", True),
        ("10.0.0.2", "10.0.0.2", True),
    ],
)
def test_listener_covers(listener: str, target: str, covers: bool) -> None:
    assert listener_covers(listener, target) is covers


_verdicts = st.sampled_from(["accept", "drop", "reject"])
_states = st.sampled_from(
    [
        ("open", "syn-ack", None),
        ("closed", "conn-refused", None),
        ("filtered", "no-response", None),
        ("filtered", "admin-prohibited", "10.0.2.2"),
        ("filtered", "admin-prohibited", "10.0.1.1"),
        ("filtered", "host-unreach", "10.0.1.1"),
    ]
)


@given(
    out=_verdicts,
    state=_states,
    inbound=_verdicts,
    listening=st.booleans(),
    roles=st.sets(st.sampled_from(["client", "server", "router"]), min_size=1),
)
def test_any_snapshot_gives_one_main_cause_and_consistent_reachability(
    out: str, state: tuple[str, str, str | None], inbound: str, listening: bool, roles: set[str]
) -> None:
    p = ProbeFact("10.0.2.2", 80, "tcp", state[0], state[1], state[2])
    fp = ForwardPath("10.0.2.2", 2988, DNAT, FWD_ACCEPT, probe=TARGET_OPEN)
    f = client(
        roles=frozenset(roles),
        outbound=replace(ACCEPT_OUT, verdict=out),
        probe=p,
        inbound=replace(IN_ACCEPT, verdict=inbound),
        listeners=(HTTPD,) if listening else (),
        forwards=(fp,),
    )
    d = run(f)
    assert d.findings, "there is always a main finding"
    assert d.reachable == (d.findings[0].code == Code.REACHABLE)
    assert sum(1 for x in d.findings if x.code == Code.REACHABLE) <= 1
    blocking = [x for x in d.findings if x.blocking]
    assert not (d.reachable and blocking)
    assert all(c.status in CHECK_STATUSES for c in d.checks)


def test_trace_through_the_target_address_reveals_a_forward() -> None:
    hops = (TraceHop(1, "10.0.2.2", 0.2, HOP_TIME_EXCEEDED), TraceHop(2, None, None, HOP_SILENT))
    t = TraceResult("10.0.2.2", "10.0.2.2", 80, "tcp", False, "filtered", hops, "10.0.2.2")
    d = run(client(probe=TIMEOUT, trace=t))
    assert codes(d) == [Code.FILTERED_ON_PATH]
    assert any("forwards this port to another host" in e for e in d.findings[0].evidence)


def test_invisible_owner_is_a_service() -> None:
    d = run(server(listeners=(Listener("127.0.0.1", 80, "tcp"),)))
    assert d.findings[0].message.startswith("a service listens on 127.0.0.1:80 only")
    assert "in the service's configuration" in (d.findings[0].fix or "")
