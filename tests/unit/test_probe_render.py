"""Renderers of the probe domain: JSON contract, tables, nmap XML (libnmap and ndiff read it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from portkit.engine.scanplan import group_ports
from portkit.model.probe import (
    CheckReport,
    HostResult,
    PortResult,
    PortState,
    ProbeResult,
    Reason,
    ScanReport,
)
from portkit.render.nmapxml import scan_xml
from portkit.render.probe import check_json, check_table, scan_json, scan_table


def make_report(extra_open: tuple[int, ...] = ()) -> ScanReport:
    rows = [PortResult(p, "tcp", PortState.CLOSED, Reason.CONN_REFUSED, None) for p in range(1000, 1100)]
    rows += [PortResult(p, "tcp", PortState.FILTERED, Reason.NO_RESPONSE, None) for p in range(2000, 2030)]
    rows += [
        PortResult(p, "tcp", PortState.FILTERED, Reason.ADMIN_PROHIBITED, None, "10.9.0.1")
        for p in (3000, 3001)
    ]
    rows += [
        PortResult(p, "tcp", PortState.OPEN, Reason.SYN_ACK, "ssh" if p == 22 else None)
        for p in (22, *extra_open)
    ]
    shown, hidden = group_ports(rows)
    host = HostResult("web.lab", "10.9.0.2", shown, hidden, scanned=len(rows))
    return ScanReport(
        (host,),
        1.5,
        False,
        started=1_700_000_000.0,
        protocol="tcp",
        ports_spec="tcp:22,1000-1099,2000-2029,3000-3001",
    )


def test_scan_json_contract() -> None:
    doc = scan_json(make_report())
    assert set(doc) == {"schema", "hosts", "elapsed_s", "interrupted"}
    host = doc["hosts"][0]
    assert set(host) == {"target", "address", "ports", "not_shown"}
    assert set(host["ports"][0]) == {"port", "proto", "state", "reason", "service"}
    assert host["not_shown"] == [
        {"state": "closed", "reason": "conn-refused", "count": 100},
        {"state": "filtered", "reason": "no-response", "count": 30},
    ]
    assert [p["port"] for p in host["ports"]] == [22, 3000, 3001]


def test_check_json_contract_and_table() -> None:
    rep = CheckReport(
        (
            ProbeResult(
                "web.lab", "10.9.0.2", 22, "tcp", PortState.OPEN, Reason.SYN_ACK, None, 0.12, "SSH-2.0-x"
            ),
            ProbeResult(
                "10.9.0.2",
                "10.9.0.2",
                81,
                "tcp",
                PortState.FILTERED,
                Reason.ADMIN_PROHIBITED,
                "10.9.0.1",
                0.2,
                None,
            ),
        )
    )
    doc = check_json(rep)
    assert doc["schema"] == 1
    assert set(doc["results"][0]) == {
        "target",
        "address",
        "port",
        "proto",
        "state",
        "reason",
        "reason_from",
        "rtt_ms",
        "banner",
    }
    text = check_table(rep)
    assert (
        "web.lab (10.9.0.2):22/tcp" in text
        and "admin-prohibited from 10.9.0.1" in text
        and "SSH-2.0-x" in text
    )
    assert not rep.all_open


def test_scan_table_summarises() -> None:
    text = scan_table(make_report())
    assert "Not shown: 100 closed (conn-refused), 30 filtered (no-response)" in text
    assert "22/tcp" in text and "admin-prohibited from 10.9.0.1" in text
    interrupted = ScanReport((), 0.1, True)
    assert "INTERRUPTED" in scan_table(interrupted)


def test_xml_reads_back_with_libnmap(tmp_path: Path) -> None:
    from libnmap.parser import NmapParser

    report = NmapParser.parse_fromstring(scan_xml(make_report()))
    host = report.hosts[0]
    assert host.address == "10.9.0.2" and host.hostnames == ["web.lab"]
    got = {(s.port, s.state, s.reason) for s in host.services}
    assert (22, "open", "syn-ack") in got and (3000, "filtered", "admin-prohibited") in got
    assert host.get_service(22, "tcp").service == "ssh"
    assert report.hosts_total == 1


@pytest.mark.skipif(shutil.which("ndiff") is None, reason="needs nmap's ndiff (apt-get install ndiff)")
def test_xml_reads_back_with_ndiff(tmp_path: Path) -> None:
    a, b = tmp_path / "a.xml", tmp_path / "b.xml"
    a.write_text(scan_xml(make_report()))
    b.write_text(scan_xml(make_report(extra_open=(8080,))))
    same = subprocess.run(["ndiff", str(a), str(a)], capture_output=True, text=True, timeout=30)
    assert same.returncode == 0, same.stderr
    diff = subprocess.run(["ndiff", str(a), str(b)], capture_output=True, text=True, timeout=30)
    assert diff.returncode == 1, diff.stderr  # 1 = differences found, 2 = error
    assert "+8080/tcp open" in diff.stdout


def test_zoned_address_answering_itself_is_not_another_sender() -> None:
    # fe80::1%eth0 answers from fe80::1: the table must not say "port-unreach from fe80::1"
    rep = CheckReport(
        (
            ProbeResult(
                "fe80::1%lo",
                "fe80::1%lo",
                53,
                "udp",
                PortState.CLOSED,
                Reason.PORT_UNREACH,
                "fe80::1",
                0.1,
                None,
            ),
        )
    )
    assert "from" not in check_table(rep)


def test_udp_icmp_rate_limit_is_warned_about() -> None:
    # found in the lab with net.ipv4.icmp_ratelimit=1000 (the Linux default) on the target:
    # 293 of 300 closed UDP ports read open|filtered, silently
    from portkit.engine.scanresults import icmp_rate_limit_warnings
    from portkit.model.probe import Verdict

    closed = Verdict(PortState.CLOSED, Reason.PORT_UNREACH)
    silent = Verdict(PortState.OPEN_FILTERED, Reason.NO_RESPONSE)
    results = {(0, 1): closed, (0, 2): silent, (0, 3): silent, (1, 1): silent}
    got = icmp_rate_limit_warnings(["10.0.0.2", "10.0.0.3"], results, {0: 1})
    assert len(got) == 1 and got[0].startswith("10.0.0.2 seems to rate-limit its ICMP errors")
    assert "2 open|filtered" in got[0]
    assert icmp_rate_limit_warnings(["10.0.0.2"], results, {}) == []  # answered at once: no sign
    assert icmp_rate_limit_warnings(["10.0.0.2"], {(0, 1): closed}, {0: 1}) == []  # nothing silent
    # a burst of 6 closed answers, then silence: the Linux default limit's pattern
    burst = {(0, p): closed for p in range(6)} | {(0, p): silent for p in range(6, 300)}
    assert len(icmp_rate_limit_warnings(["10.0.0.2"], burst, {})) == 1
    # a firewall dropping 10 ports of a host whose other ports answer: no warning (the lab)
    fw = {(0, p): closed for p in range(100)} | {(0, p): silent for p in range(100, 110)}
    assert icmp_rate_limit_warnings(["10.0.0.2"], fw, {}) == []
