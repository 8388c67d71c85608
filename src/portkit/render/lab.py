"""Render lab results: up/down summaries, the list of labs, one lab's status."""

from __future__ import annotations

from collections.abc import Sequence

from portkit.model.lab import LabResult, LabStatus, LabSummary
from portkit.render.table import Cell, render_table


def render_result(r: LabResult, *, color: bool = False) -> str:
    if r.action == "already-up":
        return f"lab {r.name} is already up ({len(r.namespaces)} namespaces, {r.services} services): nothing to do"
    if r.action == "up":
        return (
            f"lab {r.name} is up: {len(r.namespaces)} namespaces, {r.services} services ({r.seconds:.2f} s)\n"
            f"  try: portkit lab status {r.name}\n"
            f"       portkit lab exec {r.name} HOST -- portkit ls\n"
            f"       portkit lab down {r.name}"
        )
    text = f"lab {r.name} is down: removed {len(r.namespaces)} namespaces and {r.services} services ({r.seconds:.2f} s)"
    if r.lingering:
        pids = ", ".join(str(p) for p in r.lingering)
        text += (
            f"\n  note: processes {pids} still run inside its namespaces (started there by someone else,"
            " so not killed); the namespaces' links live on until they exit"
        )
    return text


def _state_cell(state: str) -> Cell:
    return Cell(state, {"up": "green", "degraded": "red", "creating": "yellow"}.get(state))


def render_ls(labs: Sequence[LabSummary], *, color: bool = False) -> str:
    if not labs:
        return "no lab is up (start one: portkit lab up examples/labs/nat-pat.yaml)"
    rows: list[list[str | Cell]] = [
        [Cell(s.name, "bold"), _state_cell(s.state), str(s.hosts), str(s.services), s.created, s.source]
        for s in labs
    ]
    return render_table(["LAB", "STATE", "HOSTS", "SERVICES", "CREATED", "SCENARIO"], rows, color=color, right=(2, 3))


def render_status(st: LabStatus, *, color: bool = False) -> str:
    """One block of rows per host: its addresses and services side by side."""
    head = f"lab {st.name}: {st.state}  (from {st.source}, {st.created})"
    rows: list[list[str | Cell]] = []
    for h in st.hosts:
        addrs = [f"{a.address} ({a.link})" for a in h.addresses] or ["-"]
        svcs: list[str | Cell] = [
            Cell(f"{s.proto} {s.listen} {s.kind}", None if s.alive else "red") for s in h.services
        ] or ["-"]
        for i in range(max(len(addrs), len(svcs))):
            rows.append(
                [
                    Cell(h.name, "bold") if i == 0 else "",
                    (Cell(h.netns, None if h.present else "red") if i == 0 else ""),
                    addrs[i] if i < len(addrs) else "",
                    svcs[i] if i < len(svcs) else "",
                ]
            )
    dead = [f"{s.host} {s.proto} {s.listen}" for h in st.hosts for s in h.services if not s.alive]
    missing = [h.netns for h in st.hosts if not h.present]
    table = render_table(["HOST", "NAMESPACE", "ADDRESSES", "SERVICES"], rows, color=color)
    notes = []
    if missing:
        notes.append(f"missing namespaces: {', '.join(missing)}")
    if dead:
        notes.append(f"services not running: {', '.join(dead)}")
    if notes:
        notes.append(f"rebuild with: portkit lab down {st.name} && portkit lab up {st.source}")
    return "\n".join([head, table, *notes])
