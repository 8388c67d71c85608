"""``portkit info`` and ``portkit free`` -> text (JSON goes through jsonout.document)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from portkit.model.sockets import FreePorts, PortInfo
from portkit.render.jsonout import document
from portkit.render.table import render_table, style

CLASS_RANGES = {"well-known": "0-1023", "registered": "1024-49151", "dynamic": "49152-65535"}


def info_document(info: PortInfo) -> dict[str, Any]:
    return document(
        port=info.port, port_class=info.port_class, services=info.services, ephemeral=info.ephemeral, note=info.note
    )


def info_text(info: PortInfo, *, color: bool, tr: Callable[[str], str]) -> str:
    low, high = info.ephemeral_range
    lines = [
        style(tr("Port {port}").format(port=info.port), "bold", color),
        tr("  class:     {klass} ({range})").format(klass=info.port_class, range=CLASS_RANGES[info.port_class]),
    ]
    if info.ephemeral:
        lines.append(
            tr("  ephemeral: yes, inside this OS's ephemeral range {low}-{high} (outgoing connections use it)").format(
                low=low, high=high
            )
        )
    else:
        lines.append(tr("  ephemeral: no (this OS's ephemeral range is {low}-{high})").format(low=low, high=high))
    if info.note_text is not None:
        lines.append(tr("  note:      {note}").format(note=info.note_text.render(tr)))
    if info.services:
        lines.append("")
        rows = [[s.name, s.proto, s.description or "-"] for s in info.services]
        lines.append(render_table([tr("SERVICE"), tr("PROTO"), tr("DESCRIPTION")], rows, color=color))
    else:
        lines.append(tr("  services:  none registered"))
    return "\n".join(lines)


def free_document(free: FreePorts) -> dict[str, Any]:
    return document(ports=free.ports)


def free_text(free: FreePorts) -> str:
    return "\n".join(str(p) for p in free.ports)
