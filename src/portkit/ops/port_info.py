"""``portkit info``: what a port number or a service name means on this host.

Re-exported by :mod:`portkit.ops.inspect` (and so by :mod:`portkit.api`).
"""

from __future__ import annotations

from portkit.backends import services
from portkit.errors import InputError, PortSpecError
from portkit.model.sockets import PortInfo, ServiceName
from portkit.registry.ports import common_port, port_class

__all__ = ["port_info"]


def port_info(query: int | str) -> PortInfo:
    """What ``query`` (a port number or a service name such as ``ssh``) means on this host."""
    from portkit.parse.scalars import is_ascii_number

    text = str(query).strip(" ")
    db = services.service_db(with_nmap=True)
    if is_ascii_number(text):
        port = int(text)
        if port > 65535:
            raise PortSpecError(f"invalid port {text!r}; valid ports are 0-65535 (or a service name such as ssh)")
    else:
        found = db.port_for_name(text) if text else None
        if found is None:
            raise InputError(
                f"unknown port or service {text!r}; give a port number 0-65535 or a service name "
                "from /etc/services or nmap-services (e.g. ssh, http, postgresql)"
            )
        port = found
    recs = [r for r in db.records_for_port(port) if r.proto in ("tcp", "udp", "sctp")]
    svcs = tuple(ServiceName(r.name, r.proto, r.description) for r in recs)
    low, high = services.ephemeral_range()
    c = common_port(port)
    from portkit.i18n import Message

    note = Message(c.note) if c is not None else None
    return PortInfo(
        port, port_class(port), svcs, low <= port <= high, note.english() if note else None, note, (low, high), text
    )
