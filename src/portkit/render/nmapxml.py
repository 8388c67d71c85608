"""Scan results -> nmap-compatible XML (``-oX``), readable by python-libnmap and ndiff.

Follows nmap's DTD (``/usr/share/nmap/nmap.dtd``): ``nmaprun`` > ``scaninfo``, one
``host`` per scanned address with ``status``, ``address``, ``hostnames`` and ``ports``
(summarised ports as ``extraports`` with ``extrareasons``, listed ones as ``port`` with
``state``/``reason``/``reason_ip`` and ``service``), then ``runstats``.
"""

from __future__ import annotations

import ipaddress
import time
import xml.etree.ElementTree as ET
from collections import defaultdict

from portkit import __version__
from portkit.model.probe import HostResult, ScanReport

XML_OUTPUT_VERSION = "1.05"


def _addrtype(address: str) -> str:
    return "ipv6" if ipaddress.ip_address(address).version == 6 else "ipv4"


def _host(parent: ET.Element, host: HostResult, start: int, end: int) -> None:
    h = ET.SubElement(parent, "host", starttime=str(start), endtime=str(end))
    ET.SubElement(h, "status", state="up", reason=host.status_reason, reason_ttl="0")
    ET.SubElement(h, "address", addr=host.address, addrtype=_addrtype(host.address))
    hn = ET.SubElement(h, "hostnames")
    if host.target != host.address and "/" not in host.target:
        ET.SubElement(hn, "hostname", name=host.target, type="user")
    ports = ET.SubElement(h, "ports")
    by_state: dict[str, list[tuple[str, str, int, str]]] = defaultdict(list)
    for g in host.not_shown:
        by_state[g.state.value].append((g.reason.value, g.proto, g.count, g.ports))
    for state, reasons in by_state.items():
        ep = ET.SubElement(ports, "extraports", state=state, count=str(sum(r[2] for r in reasons)))
        for reason, proto, count, spec in reasons:
            attrs = {"reason": reason, "count": str(count), "proto": proto}
            if spec:
                attrs["ports"] = spec
            ET.SubElement(ep, "extrareasons", attrs)
    for p in host.ports:
        pe = ET.SubElement(ports, "port", protocol=p.proto, portid=str(p.port))
        st = {"state": p.state.value, "reason": p.reason.value, "reason_ttl": "0"}
        if p.reason_from:
            st["reason_ip"] = p.reason_from
        ET.SubElement(pe, "state", st)
        if p.service:
            ET.SubElement(pe, "service", name=p.service, method="table", conf="3")


def scan_xml(report: ScanReport, *, args: str = "portkit scan") -> str:
    start = int(report.started or time.time())
    end = int(start + report.elapsed_s)
    root = ET.Element(
        "nmaprun",
        scanner="portkit",
        args=args,
        start=str(start),
        startstr=time.ctime(start),
        version=__version__,
        xmloutputversion=XML_OUTPUT_VERSION,
    )
    specs = dict(part.split(":", 1) for part in report.ports_spec.split(";") if ":" in part)
    for proto in report.protocol.split("+"):
        services = specs.get(proto, "")
        count = sum(
            int(b) - int(a) + 1
            for a, _, b in (r.partition("-") if "-" in r else (r, "", r) for r in services.split(",") if r)
        )
        ET.SubElement(
            root,
            "scaninfo",
            type=report.scan_type if proto == "tcp" else "udp",
            protocol=proto,
            numservices=str(count),
            services=services,
        )
    ET.SubElement(root, "verbose", level="0")
    ET.SubElement(root, "debugging", level="0")
    for h in report.hosts:
        _host(root, h, start, end)
    rs = ET.SubElement(root, "runstats")
    up = len(report.hosts)
    down = len(report.down)
    summary = f"portkit done at {time.ctime(end)}; {up + down} IP address(es) ({up} host(s) up) scanned in {report.elapsed_s:.2f} seconds"
    ET.SubElement(
        rs,
        "finished",
        time=str(end),
        timestr=time.ctime(end),
        summary=summary,
        elapsed=f"{report.elapsed_s:.2f}",
        exit="error" if report.interrupted else "success",
    )
    ET.SubElement(rs, "hosts", up=str(up), down=str(down), total=str(up + down))
    ET.indent(root)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE nmaprun>\n'
        + ET.tostring(root, encoding="unicode")
        + "\n"
    )
