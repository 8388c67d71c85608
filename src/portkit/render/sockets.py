"""Sockets -> table text and JSON: the host report, ``ls`` and ``who``.

The socket list is the one large document portkit writes (40,000 sockets are 11 MB of
JSON), so :func:`rows_json` writes it from the value tuples directly, with one ``%``
template per row and JSON fragments cached per distinct value; it produces exactly the
document ``jsonout.document(sockets=[SocketEntry(*row) ...], notes=...)`` would (a
contract test holds the two together), several times faster.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from portkit.model.sockets import (
    ContainerRef,
    KillOutcome,
    Note,
    ProcessRef,
    SocketEntry,
    SocketTable,
    WhoReport,
)
from portkit.model.text import N_
from portkit.render.jsonout import document, to_jsonable
from portkit.render.table import Cell, render_table, style

EXPOSURE_STYLE = {"all": "red", "address": "yellow", "loopback": "green"}

def _j(value: Any) -> str:
    return "null" if value is None else json.dumps(to_jsonable(value), ensure_ascii=False)


def rows_json(rows: Sequence[tuple[Any, ...]], notes: Sequence[Note], **extra: Any) -> str:
    """The ``{"schema": 1, "sockets": [...], "notes": [...]}`` document as compact JSON text."""
    # A row is head (proto, family, address) + its own ports + tail (state, holders, user,
    # service, class, exposure, inbound); heads and tails repeat, so each is built once.
    heads: dict[tuple[str, str, str], str] = {}
    tails: dict[tuple[Any, ...], str] = {}
    peers: dict[str | None, str] = {None: "null"}
    parts: list[str] = []
    append = parts.append
    for (proto, fam, laddr, lport, raddr, rport, state, _pid, _pn, user, refs, svc, klass, exp, inb, inb_rule, ctr) in rows:  # fmt: skip
        hkey = (proto, fam, laddr)
        head = heads.get(hkey)
        if head is None:
            head = heads[hkey] = f'{{"proto":"{proto}","family":"{fam}","local_address":"{laddr}","local_port":'
        tkey = (state, id(refs), user, svc, klass, exp, inb, inb_rule, ctr)
        tail = tails.get(tkey)
        if tail is None:
            if refs:
                first = refs[0]
                holder = f'"pid":{first.pid},"process":{_j(first.name)}'
                lst = ",".join(f'{{"pid":{r.pid},"name":{_j(r.name)},"user":{_j(r.user)}}}' for r in refs)
            else:
                holder, lst = '"pid":null,"process":null', ""
            tail = tails[tkey] = (
                f',"state":"{state}",{holder},"user":{_j(user)},"processes":[{lst}],"service":{_j(svc)},'
                f'"port_class":"{klass}","exposure":"{exp}","inbound":{_j(inb)},"inbound_rule":{_j(inb_rule)},"container":{_j(ctr)}}}'
            )
        peer = peers.get(raddr)
        if peer is None:
            peer = peers[raddr] = f'"{raddr}"'
        append(f'{head}{lport},"remote_address":{peer},"remote_port":{"null" if rport is None else rport}{tail}')
    head_doc = {"schema": 1, **{k: to_jsonable(v) for k, v in extra.items()}}
    prefix = json.dumps(head_doc, separators=(",", ":"), ensure_ascii=False)[:-1]
    notes_json = json.dumps(to_jsonable(list(notes)), separators=(",", ":"), ensure_ascii=False)
    return prefix + ',"sockets":[' + ",".join(parts) + '],"notes":' + notes_json + "}"


def table_document(table: SocketTable) -> dict[str, Any]:
    """The report/ls JSON document of a :class:`SocketTable` (the generic path)."""
    return document(sockets=table.sockets, notes=table.notes)


def _addr(address: str, family: str) -> str:
    return f"[{address}]" if family == "ipv6" else address


def _process_cell(refs: Sequence[ProcessRef]) -> str:
    if not refs:
        return "-"
    extra = len(refs) - 1
    return _safe(refs[0].name) + (f" (+{extra})" if extra else "")


def container_cell(ref: ContainerRef | None, tr: Callable[[str], str]) -> str:
    """``web (3f2a9c1b0d4e busybox) -> 172.17.0.2:80``, with the role when it is not the server."""
    if ref is None:
        return "-"
    text = f"{_safe(ref.name)} ({ref.id}{' ' + _safe(ref.image) if ref.image else ''})"
    if ref.port is not None:
        text += f" -> {ref.address + ':' if ref.address else ''}{ref.port}"
    if ref.role == "reservation":
        text += " " + tr(N_("[reservation]"))
    elif ref.role == "dnat":
        text += " " + tr(N_("[DNAT]"))
    return text


def report_text(entries: Sequence[SocketEntry], notes: Sequence[Note], *, color: bool, tr: Callable[[str], str]) -> str:
    """The host report table: one line per listening socket, then the notes."""
    show_inbound = any(e.inbound is not None for e in entries)
    headers = ["PROTO", "ADDRESS", "PORT", "SERVICE", "CLASS", "EXPOSURE", "PID", "PROCESS", "USER"]
    if show_inbound:
        headers.append("INBOUND")
    show_container = any(e.container is not None for e in entries)
    if show_container:
        headers.append("CONTAINER")
    rows: list[list[str | Cell]] = []
    for e in entries:
        row: list[str | Cell] = [
            e.proto + ("6" if e.family == "ipv6" else ""),
            e.local_address,
            Cell(str(e.local_port), "bold", "right"),
            e.service or "-",
            e.port_class,
            Cell(e.exposure, EXPOSURE_STYLE.get(e.exposure)),
            Cell(str(e.pid) if e.pid is not None else "-", None, "right"),
            _process_cell(e.processes),
            e.user or "-",
        ]
        if show_inbound:
            row.append(str(e.inbound) if e.inbound is not None else "-")
        if show_container:
            row.append(container_cell(e.container, tr))
        rows.append(row)
    if not rows:
        out = tr("No listening TCP or bound UDP sockets.")
    else:
        out = render_table(headers, rows, color=color)
    return out + notes_text(notes, color=color, tr=tr)


def notes_text(notes: Sequence[Note], *, color: bool, tr: Callable[[str], str]) -> str:
    if not notes:
        return ""
    lines = ["", "", style(tr("Notes:"), "bold", color)]
    for n in notes:
        text = n.message_text.render(tr) if n.message_text is not None else n.message
        lines.append(f"  {style('!', 'yellow', color)} {text} [{n.code}]")
    return "\n".join(lines)


def ls_text(rows: Sequence[tuple[Any, ...]], notes: Sequence[Note], *, color: bool, tr: Callable[[str], str]) -> str:
    """The ``ls`` table from value tuples (SocketEntry field order).

    Laid out column by column rather than through ``render_table``'s per-cell objects:
    ``ls --all`` may print 40,000 rows.
    """
    if not rows:
        return tr("No sockets match.")
    with_peer = any(r[4] is not None for r in rows)
    addr_text: dict[tuple[str, str], str] = {}

    def addr(address: str, family: str) -> str:
        key = (address, family)
        text = addr_text.get(key)
        if text is None:
            text = addr_text[key] = _addr(address, family)
        return text

    procs_text: dict[int, str] = {}

    def holder(refs: Sequence[ProcessRef]) -> str:
        key = id(refs)
        text = procs_text.get(key)
        if text is None:
            text = procs_text[key] = _safe(_process_cell(refs))
        return text

    cols: list[list[str]] = [
        [r[0] + "6" if r[1] == "ipv6" else r[0] for r in rows],
        [r[6] for r in rows],
        [f"{addr(r[2], r[1])}:{r[3]}" for r in rows],
    ]
    headers = ["PROTO", "STATE", "LOCAL ADDRESS:PORT"]
    if with_peer:
        headers.append("PEER ADDRESS:PORT")
        cols.append([f"{addr(r[4], r[1])}:{r[5]}" if r[4] is not None else "*" for r in rows])
    headers += ["SERVICE", "EXPOSURE", "PID", "PROCESS", "USER"]
    exp_col = len(cols) + 1
    cols += [
        [r[11] or "-" for r in rows],
        [r[13] for r in rows],
        ["-" if r[7] is None else str(r[7]) for r in rows],
        [holder(r[10]) for r in rows],
        [r[9] or "-" for r in rows],
    ]
    if any(r[16] is not None for r in rows):
        headers.append("CONTAINER")
        cols.append([container_cell(r[16], tr) for r in rows])
    pid_col = exp_col + 1
    widths = [max(len(h), max(map(len, c))) for h, c in zip(headers, cols, strict=True)]
    padded: list[list[str]] = []
    for i, c in enumerate(cols):
        w = widths[i]
        if i == pid_col:
            padded.append([t.rjust(w) for t in c])
        elif i == exp_col and color:
            padded.append([style(t.ljust(w), EXPOSURE_STYLE.get(t), True) for t in c])
        else:
            padded.append([t.ljust(w) for t in c])
    head = "  ".join(h.rjust(widths[i]) if i == pid_col else h.ljust(widths[i]) for i, h in enumerate(headers))
    lines = [style(head.rstrip(), "bold", color)]
    lines += ["  ".join(parts).rstrip() for parts in zip(*padded, strict=True)]
    return "\n".join(lines) + notes_text(notes, color=color, tr=tr)


_CONTROL = {i: f"\\x{i:02x}" for i in range(32)} | {10: "\\n", 9: "\\t", 13: "\\r", 127: "\\x7f"}


def _safe(text: str) -> str:
    """Process names and command lines are the user's bytes: newlines or escape sequences
    in them must not break the table or reach the terminal."""
    return text.translate(_CONTROL) if any(ord(ch) < 32 or ord(ch) == 127 for ch in text) else text


def who_document(report: WhoReport, outcomes: Sequence[KillOutcome] | None = None) -> dict[str, Any]:
    if outcomes is None:
        return document(port=report.port, holders=report.holders)
    return document(port=report.port, holders=report.holders, signals=outcomes)


def who_text(report: WhoReport, *, color: bool, tr: Callable[[str], str]) -> str:
    port = f"{report.port}/{report.proto}" if report.proto else str(report.port)
    if not report.holders:
        text = tr("Nobody holds port {port}.").format(port=port)
        if report.time_wait:
            text += " " + tr(
                "{count} closed connection(s) on it wait in TIME_WAIT (up to 60 s): a server "
                "binding it without SO_REUSEADDR fails with 'address already in use' until then."
            ).format(count=report.time_wait)
        return text
    headers = ["PROTO", "LOCAL ADDRESS:PORT", "STATE", "PID", "USER", "STARTED", "COMMAND"]
    show_container = any(h.container is not None for h in report.holders)
    if show_container:
        headers.insert(6, "CONTAINER")
    # A server's accepted connections share its port: one line per (socket kind, process)
    # with a count, so the listener is not lost among thousands of connections (JSON lists all).
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for h in report.holders:
        key = (h.proto, h.family, h.local_address, h.local_port, h.state, h.pid, h.user, len(h.processes))
        if key in groups and h.state not in ("LISTEN", "UNCONN"):
            groups[key][1] += 1
        else:
            groups.setdefault(key if h.state not in ("LISTEN", "UNCONN") else (*key, id(h)), [h, 1])
    rows: list[list[str | Cell]] = []
    for h, count in groups.values():
        cmd = _safe(h.cmdline or (h.process or "-"))
        if len(h.processes) > 1:
            cmd += " " + tr("(also pids {pids})").format(pids=", ".join(str(p.pid) for p in h.processes[1:]))
        rows.append(
            [
                h.proto + ("6" if h.family == "ipv6" else ""),
                f"{_addr(h.local_address, h.family)}:{h.local_port}",
                h.state if count == 1 else f"{h.state} x{count}",
                Cell(str(h.pid) if h.pid is not None else "-", "bold", "right"),
                h.user or "-",
                (h.started or "-").replace("T", " "),
                *([container_cell(h.container, tr)] if show_container else []),
                cmd,
            ]
        )
    return render_table(headers, rows, color=color)


def kill_text(outcomes: Sequence[KillOutcome], *, tr: Callable[[str], str]) -> str:
    lines = []
    for o in outcomes:
        state = tr("ended") if o.exited else tr("still running")
        lines.append(tr("sent {signal} to pid {pid}: {state}").format(signal=o.signal, pid=o.pid, state=state))
    return "\n".join(lines)
