"""Check and scan results -> tables and JSON (the JSON is the dataclasses, as-is)."""

from __future__ import annotations

from typing import Any

from portkit.model.probe import CheckReport, HostResult, NotShown, PortState, ScanReport
from portkit.render.jsonout import document
from portkit.render.table import Cell, render_table

STATE_STYLE = {
    PortState.OPEN: "green",
    PortState.CLOSED: "red",
    PortState.FILTERED: "yellow",
    PortState.OPEN_FILTERED: "yellow",
}


def check_json(report: CheckReport) -> dict[str, Any]:
    return document(results=report.results)


def scan_json(report: ScanReport) -> dict[str, Any]:
    return document(hosts=report.hosts, elapsed_s=report.elapsed_s, interrupted=report.interrupted)


def _reason(reason: str, sender: str | None, address: str) -> str:
    if sender and sender != address.partition("%")[0]:  # fe80::1%eth0 answers as fe80::1
        return f"{reason} from {sender}"
    return reason


def check_table(report: CheckReport, *, color: bool = False) -> str:
    rows: list[list[str | Cell]] = []
    for r in report.results:
        host = r.target if r.target == r.address else f"{r.target} ({r.address})"
        where = f"[{host}]" if ":" in host and "(" not in host else host
        rows.append(
            [
                f"{where}:{r.port}/{r.proto}",
                Cell(r.state.value, STATE_STYLE[r.state]),
                _reason(r.reason.value, r.reason_from, r.address),
                "-" if r.rtt_ms is None else f"{r.rtt_ms:.2f} ms",
                r.banner or "",
            ]
        )
    headers = ["ENDPOINT", "STATE", "REASON", "RTT", "BANNER"]
    if not any(r.banner for r in report.results):
        headers = headers[:4]
        rows = [row[:4] for row in rows]
    return render_table(headers, rows, color=color, right=(3,))


def summary_line(groups: tuple[NotShown, ...]) -> str:
    """``"65515 closed (conn-refused), 2000 filtered (no-response)"``."""
    parts = []
    for g in groups:
        proto = f" {g.proto}" if g.proto != "tcp" else ""
        parts.append(f"{g.count} {g.state.value}{proto} ({g.reason.value})")
    return ", ".join(parts)


def host_table(host: HostResult, *, color: bool = False) -> str:
    title = host.address if host.target == host.address else f"{host.target} ({host.address})"
    lines = [f"portkit scan of {title}: {host.scanned} port{'' if host.scanned == 1 else 's'}"]
    if host.ports:
        rows: list[list[str | Cell]] = [
            [
                f"{p.port}/{p.proto}",
                Cell(p.state.value, STATE_STYLE[p.state]),
                _reason(p.reason.value, p.reason_from, host.address),
                p.service or "",
            ]
            for p in host.ports
        ]
        lines.append(render_table(["PORT", "STATE", "REASON", "SERVICE"], rows, color=color))
    elif not host.not_shown:
        lines.append("no ports scanned")
    else:
        lines.append("no open ports")
    if host.not_shown:
        lines.append(f"Not shown: {summary_line(host.not_shown)}")
    return "\n".join(lines)


def scan_table(report: ScanReport, *, color: bool = False) -> str:
    blocks = [host_table(h, color=color) for h in report.hosts]
    if report.down:
        blocks.append(
            f"{len(report.down)} address(es) did not answer discovery (use -Pn to scan them anyway)"
        )
    tail = f"{len(report.hosts)} host(s) scanned in {report.elapsed_s:.2f} s"
    if report.interrupted:
        tail += " - INTERRUPTED, results are partial"
    blocks.append(tail)
    return "\n\n".join(blocks)
