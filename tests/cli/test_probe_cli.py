"""portkit check / scan from the command line and as a library, against loopback only."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

import portkit
import portkit.aio
import portkit.api
from portkit.cli.main import main
from portkit.errors import PortSpecError, ResolveError
from portkit.model.probe import PortState, Reason


@pytest.fixture
def listener() -> Iterator[int]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    yield int(s.getsockname()[1])
    s.close()


@pytest.fixture
def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # refused by the argument parser (one line, exit 2)
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["scan", "127.0.0.1", "-p", "0-70000"], "ports are 1-65535"),
        (["scan", "127.0.0.1", "-p", "5-"], "a range needs both ends"),
        (["scan", "10.0.0.0/33"], "prefix length must be 0-32"),
        (["scan", "127.0.0.1", "--top", "0"], "argument --top: invalid number of ports '0': must be 1-65535"),
        (["scan", "127.0.0.1", "--rate=-1"], "argument --rate: invalid rate '-1'"),
        (["check", "127.0.0.1"], "has no port"),
        (["check", "127.0.0.1:99999"], "ports are 1-65535"),
        (["check", "fd00::1:80"], "brackets"),
        (["check", "127.0.0.1:22/icmp"], "valid ones are tcp, udp"),
        (["check", "[::1:80"], "needs its ']'"),
        # checked before the scan: a typo in the path must not cost a scan (was: scan, then
        # a warning, exit 0)
        (["scan", "127.0.0.1", "-p", "22", "-oX", "/nonexistent-pk-dir/x.xml"], "x.xml: no such directory /nonexistent-pk-dir"),
        (["check", "10.0.0.300:80"], "not a valid IPv4 address"),
        (["scan", "127.0.0.1", "-p", "22", "-oX", "-", "--json"], "both write to stdout"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert fragment in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert out == ""


def test_help_teaches(capsys: pytest.CaptureFixture[str]) -> None:
    for cmd in ("check", "scan"):
        with pytest.raises(SystemExit) as exc:
            main([cmd, "--help"])
        assert exc.value.code == 0
        text = capsys.readouterr().out
        assert "examples:" in text and "exit status" in text
        assert "filtered" in text and "reason" in text


def test_check_open_and_closed_exit_codes(
    capsys: pytest.CaptureFixture[str], listener: int, closed_port: int
) -> None:
    code, out, _ = run(capsys, "check", f"127.0.0.1:{listener}", "--json")
    assert code == 0
    res = json.loads(out)["results"][0]
    assert (res["state"], res["reason"], res["proto"]) == ("open", "syn-ack", "tcp")
    assert res["rtt_ms"] is not None and res["reason_from"] is None
    code, out, _ = run(capsys, "check", "127.0.0.1", "-p", f"{listener},{closed_port}")
    assert code == 1
    assert "conn-refused" in out and "syn-ack" in out


def test_scan_loopback_json_and_all(capsys: pytest.CaptureFixture[str], listener: int) -> None:
    lo, hi = max(1, listener - 40), min(65535, listener + 40)
    code, out, _ = run(capsys, "scan", "127.0.0.1", "-p", f"{lo}-{hi}", "--json", "--processes", "1")
    assert code == 0
    doc = json.loads(out)
    assert doc["schema"] == 1 and doc["interrupted"] is False
    host = doc["hosts"][0]
    assert host["target"] == "127.0.0.1"
    assert {"port": listener, "proto": "tcp", "state": "open", "reason": "syn-ack"}.items() <= host["ports"][
        0
    ].items()
    others = [p for p in host["ports"] if p["port"] != listener]
    assert sum(g["count"] for g in host["not_shown"]) + len(others) == hi - lo
    code, out, _ = run(capsys, "scan", "127.0.0.1", "-p", f"{lo}-{hi}", "--json", "--all")
    host = json.loads(out)["hosts"][0]
    assert host["not_shown"] == [] and len(host["ports"]) == hi - lo + 1


def test_library_check_and_scan(listener: int, closed_port: int) -> None:
    rep = portkit.check([f"127.0.0.1:{listener}", f"127.0.0.1:{closed_port}"])
    assert [r.state for r in rep.results] == [PortState.OPEN, PortState.CLOSED]
    assert rep.results[1].reason is Reason.CONN_REFUSED
    scan = portkit.scan(["127.0.0.1"], ports=[listener, closed_port], processes=1)
    assert [p.port for p in scan.hosts[0].open_ports()] == [listener]


def test_library_resolution_is_injectable(listener: int) -> None:
    names = {"svc.test": [(4, "127.0.0.1")]}

    def resolver(name: str, family: int | None) -> list[tuple[int, str]]:
        if name not in names:
            raise ResolveError(name, "unknown in test")
        return names[name]

    rep = portkit.check([f"svc.test:{listener}"], resolver=resolver)
    assert rep.results[0].target == "svc.test" and rep.results[0].address == "127.0.0.1"
    with pytest.raises(ResolveError):
        portkit.check([f"nope.test:{listener}"], resolver=resolver)
    scan = portkit.scan(["svc.test", "nope.test"], ports=str(listener), resolver=resolver, processes=1)
    assert [h.target for h in scan.hosts] == ["svc.test"]  # the unresolvable one is skipped, not fatal
    assert [e.target for e in scan.errors] == ["nope.test"]


def test_aio(listener: int) -> None:
    async def go() -> tuple[PortState, PortState]:
        c = await portkit.aio.check([f"127.0.0.1:{listener}"])
        s = await portkit.aio.scan(["127.0.0.1"], ports=str(listener))
        return c.results[0].state, s.hosts[0].ports[0].state

    assert asyncio.run(go()) == (PortState.OPEN, PortState.OPEN)


def test_aio_cancel_stops_the_scan() -> None:
    async def go() -> None:
        # a silent probe target on loopback: nothing answers on 127.0.0.2's dropped... use a
        # fixed, long timeout instead so the scan would take seconds unless cancelled
        task = asyncio.create_task(portkit.aio.scan(["127.0.0.1"], ports="-", rate=2000))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(asyncio.wait_for(go(), 10))


def test_many_hosts_are_scanned_in_groups(
    monkeypatch: pytest.MonkeyPatch, listener: int, closed_port: int
) -> None:
    # a /24 with -Pn -p- is 16.7 million probes: scanned a host group at a time, so the work
    # list and verdicts of only one group are ever held
    import portkit.ops.probe as op

    monkeypatch.setattr(op, "HOST_GROUP_PROBES", 2)  # one host (two ports) per group
    seen: list[tuple[str, ...]] = []
    import portkit.drivers.scanner as drv

    real = drv.connect_scan

    def spy(addresses: Any, *a: Any, **kw: Any) -> Any:
        seen.append(tuple(addresses))
        return real(addresses, *a, **kw)

    monkeypatch.setattr(drv, "connect_scan", spy)
    rep = op.scan(["127.0.0.1", "127.0.0.2", "127.0.0.1"], ports=[listener, closed_port], processes=1)
    assert seen == [("127.0.0.1",), ("127.0.0.2",)]
    assert [h.address for h in rep.hosts] == ["127.0.0.1", "127.0.0.2", "127.0.0.1"]
    assert all(len(h.ports) == 2 for h in rep.hosts) and not rep.interrupted


def test_ctrl_c_before_the_first_probe_still_returns_a_report(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], listener: int
) -> None:
    # found with a /24 -Pn -p- scan: Ctrl-C while the work list was being shuffled escaped
    # as "portkit: interrupted" with no JSON at all
    import portkit.drivers.scanner as drv

    def interrupted(*_a: Any, **_kw: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(drv, "work_items", interrupted)
    code, out, err = run(capsys, "scan", "127.0.0.1", "-p", str(listener), "--json")
    assert code == 130, err
    doc = json.loads(out)
    assert doc["schema"] == 1 and doc["interrupted"] is True


def test_safety_only_the_named_addresses_are_probed(monkeypatch: pytest.MonkeyPatch, listener: int) -> None:
    # issue 4, Safety: the scanner targets only what the user names - a block's discovery
    # sweeps that block's host addresses, and only hosts found there (or named) are scanned
    import portkit.drivers.prober as prober
    import portkit.drivers.scanner as drv
    import portkit.ops.probe as op

    swept: list[list[str]] = []
    scanned: list[tuple[str, ...]] = []

    def fake_discover(addresses: Any, **_kw: Any) -> set[int]:
        swept.append(list(addresses))
        return {1}  # the second address of the block answers

    real = drv.connect_scan

    def spy(addresses: Any, *a: Any, **kw: Any) -> Any:
        scanned.append(tuple(addresses))
        return real(addresses, *a, **kw)

    monkeypatch.setattr(prober, "discover", fake_discover)
    monkeypatch.setattr(drv, "connect_scan", spy)
    rep = op.scan(["127.0.0.0/30", "127.0.0.1"], ports=[listener], processes=1)
    assert swept == [["127.0.0.1", "127.0.0.2"]]  # no network or broadcast address, nothing else
    assert scanned == [("127.0.0.2", "127.0.0.1")]
    assert [h.address for h in rep.hosts] == ["127.0.0.2", "127.0.0.1"]


def test_link_local_needs_a_zone_and_connects_with_it(listener: int) -> None:
    # found in the lab: "[fe80::..%lan]:22" gave "filtered, error from EINVAL" for every port
    # (the zone was dropped on connect), and a link-local address without one did the same
    from portkit.drivers.scanner_common import sockaddr
    from portkit.errors import TargetError

    assert sockaddr("fe80::1%lo", 22) == ("fe80::1", 22, 0, socket.if_nametoindex("lo"))
    assert sockaddr("fe80::1%7", 22) == ("fe80::1", 22, 0, 7)
    assert sockaddr("10.0.0.1", 22) == ("10.0.0.1", 22)
    with pytest.raises(TargetError, match="link-local address: name its interface"):
        portkit.check(["[fe80::1]:22"])
    with pytest.raises(TargetError, match="unknown interface 'pk-nope0'"):
        portkit.check(["[fe80::1%pk-nope0]:22"])
    rep = portkit.scan(["fe80::1", "127.0.0.1"], ports=[listener], processes=1)
    with pytest.raises(PortSpecError, match="no ports given"):  # was a ZeroDivisionError
        portkit.scan(["127.0.0.1"], ports=[])
    assert [h.address for h in rep.hosts] == ["127.0.0.1"] and len(rep.errors) == 1
