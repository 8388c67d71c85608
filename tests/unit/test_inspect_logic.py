"""Inspect logic without the kernel: input checks, notes, JSON contract, free-port search."""

from __future__ import annotations

import json
import signal
from typing import Any

import pytest

from portkit.errors import InputError, PortSpecError
from portkit.model.sockets import Holder, KillOutcome, ProcessRef, SocketEntry, WhoReport
from portkit.ops import free_ports as free
from portkit.ops import inspect as ops
from portkit.ops import kill
from portkit.ops import port_info as portinfo
from portkit.render.jsonout import document, to_jsonable
from portkit.render.sockets import ls_text, report_text, rows_json, who_document, who_text

NGINX = (ProcessRef(100, "nginx", "root"), ProcessRef(101, "nginx", "www-data"))
ODD = (ProcessRef(7, 'we"ird\\näme', "ü"),)


def row(**kw: Any) -> tuple[Any, ...]:
    base: dict[str, Any] = dict(
        proto="tcp", family="ipv4", local_address="0.0.0.0", local_port=3306, remote_address=None,
        remote_port=None, state="LISTEN", pid=None, process=None, user="mysql", processes=(),
        service="mysql", port_class="registered", exposure="all", inbound=None, inbound_rule=None,
        container=None,
    )  # fmt: skip
    base.update(kw)
    if base["processes"]:
        base["pid"], base["process"] = base["processes"][0].pid, base["processes"][0].name
    return tuple(base.values())


ROWS = [
    row(),
    row(local_port=80, service="http", port_class="well-known", processes=NGINX, user="root"),
    row(family="ipv6", local_address="::1", local_port=40000, exposure="loopback", service=None, processes=ODD),
    row(proto="udp", state="UNCONN", local_port=53, service="domain", user=None),
    row(state="ESTABLISHED", local_address="10.0.0.5", local_port=22, remote_address="10.0.0.9",
        remote_port=51000, exposure="address", service="ssh", inbound="accept", inbound_rule="tcp dport 22 accept"),
]  # fmt: skip


def test_rows_json_is_the_generic_document() -> None:
    """The fast serialiser and jsonout.document agree on every field (the JSON contract)."""
    notes = ops._notes(ROWS, (32768, 60999))
    fast = json.loads(rows_json(ROWS, notes))
    slow = json.loads(json.dumps(document(sockets=[SocketEntry(*r) for r in ROWS], notes=notes)))
    assert fast == slow
    assert fast["schema"] == 1
    first = fast["sockets"][1]
    assert first["pid"] == 100 and [p["pid"] for p in first["processes"]] == [100, 101]


def test_notes_sensitive_and_ephemeral() -> None:
    notes = ops._notes(ROWS, (32768, 60999))
    got = {(n.code, n.port, n.proto) for n in notes}
    assert got == {("exposed-sensitive", 3306, "tcp"), ("ephemeral-listener", 40000, "tcp")}
    msg = next(n for n in notes if n.code == "exposed-sensitive")
    assert "3306/tcp" in msg.message and msg.message_text is not None and msg.message_text.english() == msg.message
    assert "message_text" not in to_jsonable(msg)
    # Loopback-only database: no note.
    assert ops._notes([row(local_address="127.0.0.1", exposure="loopback")], (32768, 60999)) == ()


def test_state_parsing_and_errors() -> None:
    assert ops._parse_states(["listen", "time-wait", "TCP_SYN_SENT"]) == ((1 << 10) | (1 << 6) | (1 << 2), 0)
    assert ops._parse_states(["UNCONN", "ESTABLISHED"]) == (1 << 1, (1 << 7) | (1 << 1))
    assert ops._parse_states(["SYN_RECV"]) == ((1 << 3) | (1 << 12), 0)
    with pytest.raises(InputError) as exc:
        ops._parse_states(["NOPE"])
    assert str(exc.value).startswith("invalid state 'NOPE'; valid states are: ESTABLISHED, SYN_SENT")
    assert "NEW_SYN_RECV" in str(exc.value) and "UNCONN" in str(exc.value)


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"port": 70000}, "invalid port 70000; valid ports are 1-65535"),
        ({"pid": 0}, "invalid pid 0"),
        ({"family": "ipx"}, "invalid family 'ipx'; valid families are: ipv4, ipv6"),
        ({"states": ["BOGUS"]}, "invalid state 'BOGUS'"),
        ({"backend": "nope"}, "invalid socket backend 'nope'; valid backends are: netlink, procfs, pyroute2, psutil"),
    ],
)
def test_list_sockets_rejects_bad_input(kwargs: dict[str, Any], text: str) -> None:
    with pytest.raises(InputError) as exc:
        ops.list_sockets(**kwargs)
    assert text in str(exc.value)


def test_port_proto_and_range_and_signal() -> None:
    assert ops.parse_port_proto("53/UDP") == (53, "udp")
    assert ops.parse_port_proto("8080") == (8080, None)
    assert ops.parse_port_proto("8080/TCP") == (8080, "tcp") and ops.parse_port_proto(" 22 ") == (22, None)
    for bad in ("abc", "0", "70000", "65536", "80/sctp", "", "80/", "/tcp", "80//tcp"):
        with pytest.raises(PortSpecError):
            ops.parse_port_proto(bad)
    assert free.parse_range("8000-8100") == (8000, 8100)
    with pytest.raises(PortSpecError, match="invalid range '9-3'"):
        free.parse_range("9-3")
    assert kill.parse_signal("term") == signal.SIGTERM == kill.parse_signal("SIGTERM") == kill.parse_signal(15)
    with pytest.raises(InputError, match=r"invalid signal 'FOO'; valid signals are: .*TERM"):
        kill.parse_signal("FOO")


def test_free_ports_search() -> None:
    tried: list[int] = []

    def fake(port: int, proto: str) -> bool:
        tried.append(port)
        return port % 2 == 0

    got = free.free_ports(3, "8000-8009", is_free=fake)
    assert got.ports == tuple(sorted(got.ports)) and len(got.ports) == 3
    assert all(p % 2 == 0 and 8000 <= p <= 8009 for p in got.ports)
    few = free.free_ports(10, (8000, 8009), is_free=fake)
    assert len(few.ports) == 5  # only five even ports: the caller reports the shortfall
    tried.clear()
    def record(port: int, proto: str) -> bool:
        tried.append(port)
        return True

    default = free.free_ports(20, is_free=record)
    low, high = default.port_range
    assert low == 1024 and high < 32768
    assert 3306 not in tried and 5432 not in tried  # named ports are skipped by default
    with pytest.raises(InputError, match="invalid count 0"):
        free.free_ports(0)
    with pytest.raises(InputError, match="invalid protocol 'sctp'"):
        free.free_ports(1, proto="sctp")


def test_port_info() -> None:
    info = portinfo.port_info("ssh")
    assert info.port == 22 and info.port_class == "well-known" and not info.ephemeral
    assert any(s.name == "ssh" and s.proto == "tcp" for s in info.services)
    assert portinfo.port_info(3389).note is not None and "attacked" in (portinfo.port_info(3389).note or "")
    assert portinfo.port_info("0").port_class == "well-known"
    assert portinfo.port_info(40000).ephemeral == (portinfo.port_info(40000).ephemeral_range[0] <= 40000)
    with pytest.raises(PortSpecError, match="invalid port '70000'; valid ports are 0-65535"):
        portinfo.port_info("70000")
    with pytest.raises(InputError, match="unknown port or service 'zzz-nothing'"):
        portinfo.port_info("zzz-nothing")


def test_tables_render_plain_and_colour() -> None:
    entries = [SocketEntry(*r) for r in ROWS]
    notes = ops._notes(ROWS, (32768, 60999))
    plain = report_text(entries, notes, color=False, tr=lambda s: s)
    assert "\x1b" not in plain
    lines = plain.splitlines()
    assert lines[0].split() == ["PROTO", "ADDRESS", "PORT", "SERVICE", "CLASS", "EXPOSURE", "PID", "PROCESS", "USER", "INBOUND"]
    assert any("nginx (+1)" in line for line in lines)
    assert "Notes:" in plain and "[exposed-sensitive]" in plain
    assert "\x1b[" in report_text(entries, notes, color=True, tr=lambda s: s)
    ls = ls_text(ROWS, (), color=False, tr=lambda s: s)
    assert "PEER ADDRESS:PORT" in ls and "10.0.0.9:51000" in ls and "[::1]:40000" in ls


def test_who_render_and_document() -> None:
    fields = dict(zip(ops._ENTRY_FIELDS, row(processes=NGINX), strict=True))
    h = Holder(**fields, cmdline="nginx: master process", started="2026-01-01T00:00:00+00:00")
    rep = WhoReport(80, (h,), "tcp")
    text = who_text(rep, color=False, tr=lambda s: s)
    assert "nginx: master process (also pids 101)" in text and "2026-01-01 00:00:00" in text
    doc = who_document(rep, (KillOutcome(100, "SIGTERM", True),))
    assert doc["port"] == 80 and doc["holders"][0]["cmdline"] == "nginx: master process"
    assert doc["signals"] == [{"pid": 100, "signal": "SIGTERM", "exited": True}]
    assert who_text(WhoReport(81, (), "udp"), color=False, tr=lambda s: s) == "Nobody holds port 81/udp."
    conns = [
        Holder(**dict(zip(ops._ENTRY_FIELDS, row(processes=NGINX, state="ESTABLISHED", remote_address="10.0.0.9", remote_port=p), strict=True)), cmdline="nginx: worker\nprocess")
        for p in (1000, 1001, 1002)
    ]  # fmt: skip
    busy = who_text(WhoReport(80, (h, *conns)), color=False, tr=lambda s: s).splitlines()
    assert len(busy) == 3 and "ESTABLISHED x3" in busy[2] and "LISTEN" in busy[1]
    assert "nginx: worker\\nprocess" in busy[2]  # a newline in a command line stays on its row
    tw = who_text(WhoReport(82, (), None, False, 2), color=False, tr=lambda s: s)
    assert tw.startswith("Nobody holds port 82. 2 closed connection(s)") and "TIME_WAIT" in tw
