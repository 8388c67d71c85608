"""The translation table (``portkit nat``) as a text table or JSON."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from portkit.model.nat import NatChange, NatEntry, NatTuple
from portkit.render.jsonout import document
from portkit.render.table import Cell, render_table

_KIND_STYLE = {"SNAT": "cyan", "PAT": "magenta", "DNAT": "yellow", "SNAT+DNAT": "bold yellow"}


def _ep(addr: str, port: int | None) -> str:
    host = f"[{addr}]" if ":" in addr else addr
    return host if port is None else f"{host}:{port}"


def flow_text(e: NatEntry) -> str:
    """``client -> what it became -> where it went``, the way the issue writes a flow.

    SNAT/PAT: ``10.0.40.12:40000 -> 203.0.113.1:65464 -> 203.0.113.10:7``
    DNAT:     ``198.51.100.10:5000 -> 198.51.100.1:8080 -> 10.0.30.2:2988``
    both:     ``a:1 -> b:2 => c:3 -> d:4`` (original => translated)
    """
    o: NatTuple = e.original
    t: NatTuple = e.translated
    if e.kind == "snat":
        return f"{_ep(o.src, o.sport)} -> {_ep(t.src, t.sport)} -> {_ep(t.dst, t.dport)}"
    if e.kind == "dnat":
        return f"{_ep(o.src, o.sport)} -> {_ep(o.dst, o.dport)} -> {_ep(t.dst, t.dport)}"
    return f"{o.text()} => {t.text()}"


def line(e: NatEntry) -> str:
    state = f" {e.state}" if e.state else ""
    return f"{e.label:<9} {flow_text(e)} ({e.proto}{state}, {e.timeout_s} s left)"


def render_nat(entries: Sequence[NatEntry], *, color: bool = False) -> str:
    if not entries:
        return "no translated flows in the conntrack table"
    rows: list[list[str | Cell]] = [
        [
            Cell(e.label, _KIND_STYLE.get(e.label)),
            e.proto,
            flow_text(e),
            e.state or "-",
            Cell(f"{e.timeout_s} s", align="right"),
        ]
        for e in entries
    ]
    return render_table(
        ["KIND", "PROTO", "FLOW (original -> translated)", "STATE", "LEFT"], rows, color=color, right=(4,)
    )


def nat_document(entries: Sequence[NatEntry]) -> dict[str, Any]:
    return document(entries=list(entries))


def watch_lines(
    added: Sequence[NatEntry], gone: Sequence[NatEntry], changed: Sequence[NatEntry]
) -> list[str]:
    out = [f"+ {line(e)}" for e in added]
    out += [f"~ {line(e)}" for e in changed]
    out += [f"- {line(e)}" for e in gone]
    return out


def watch_document(change: NatChange) -> dict[str, Any]:
    """One ``nat --watch --json`` document: the flows added, gone and changed."""
    return document(added=list(change.added), gone=list(change.gone), changed=list(change.changed))


def watch_text(change: NatChange) -> list[str]:
    """``nat --watch`` lines, each stamped with the local time of the read."""
    stamp = time.strftime("%H:%M:%S", time.localtime(change.at))
    return [f"{stamp} {text}" for text in watch_lines(change.added, change.gone, change.changed)]
