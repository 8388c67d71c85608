"""Sockets, their holders, and the facts about a port: the inspect domain's plain data.

Field names are the JSON contract of ``report``/``ls``/``who``/``free``/``info`` (issue 2);
fields declared ``internal`` (``model/fields.py``) stay out of JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from portkit.model.fields import internal
from portkit.model.text import Localizable

# Kernel TCP states (include/net/tcp_states.h), named without the TCP_ prefix.
TCP_STATES: dict[int, str] = {
    1: "ESTABLISHED",
    2: "SYN_SENT",
    3: "SYN_RECV",
    4: "FIN_WAIT1",
    5: "FIN_WAIT2",
    6: "TIME_WAIT",
    7: "CLOSE",
    8: "CLOSE_WAIT",
    9: "LAST_ACK",
    10: "LISTEN",
    11: "CLOSING",
    12: "NEW_SYN_RECV",
    13: "BOUND_INACTIVE",
}
# UDP reuses TCP_CLOSE for a bound, unconnected socket; ss calls it UNCONN.
UDP_STATES: dict[int, str] = {7: "UNCONN", 1: "ESTABLISHED"}
STATE_LISTEN = 10
STATE_CLOSE = 7
STATE_ESTABLISHED = 1
STATE_TIME_WAIT = 6
STATE_NEW_SYN_RECV = 12
ALL_STATES_MASK = (1 << 14) - 2  # bits 1..13

PORT_CLASSES = ("well-known", "registered", "dynamic")
EXPOSURES = ("loopback", "all", "address")


@dataclass(frozen=True, slots=True)
class ProcessRef:
    """One process holding a socket."""

    pid: int
    name: str
    user: str


@dataclass(frozen=True, slots=True)
class ContainerRef:
    """The container a socket serves or lives in; ``port`` is the container's port the
    socket leads to (None for a socket inside the container)."""

    runtime: str  # "docker" | "podman"
    id: str  # short id
    name: str
    image: str
    port: int | None
    address: str | None = internal(default=None)
    role: str | None = internal(default=None)  # "proxy" | "reservation" | "inside"


@dataclass(frozen=True, slots=True)
class SocketEntry:
    """One socket. ``pid``/``process`` name the lowest-pid holder, ``processes`` all of them;
    ``user`` is the socket owner's name. ``inbound``/``inbound_rule`` are filled by the
    firewall domain (None when not evaluated)."""

    proto: str  # "tcp" | "udp"
    family: str  # "ipv4" | "ipv6"
    local_address: str
    local_port: int
    remote_address: str | None
    remote_port: int | None
    state: str
    pid: int | None
    process: str | None
    user: str | None
    processes: tuple[ProcessRef, ...]
    service: str | None
    port_class: str  # "well-known" | "registered" | "dynamic"
    exposure: str  # "loopback" | "all" | "address"
    inbound: str | None = None
    inbound_rule: str | None = None
    container: ContainerRef | None = None


@dataclass(frozen=True, slots=True)
class Holder(SocketEntry):
    """A socket holding a port, with its first holder's command line and start time."""

    cmdline: str = ""
    started: str | None = None  # ISO-8601


@dataclass(frozen=True, slots=True)
class Note:
    """Something in the report worth a look; ``message`` is English, ``message_text`` localizable."""

    code: str
    port: int
    proto: str
    message: str
    message_text: Localizable | None = internal(default=None)


@dataclass(frozen=True, slots=True)
class SocketTable:
    """Result of ``list_sockets``/``report``. ``owners_incomplete`` is true when some
    processes' file descriptors could not be read (not root), so some pids are missing."""

    sockets: tuple[SocketEntry, ...]
    notes: tuple[Note, ...] = ()
    owners_incomplete: bool = internal(default=False)
    backend: str = internal(default="")


@dataclass(frozen=True, slots=True)
class SocketRows:
    """The socket table as value tuples in :class:`SocketEntry` field order, so that
    ``SocketEntry(*row)`` is the entry: what ``ls`` serialises without building 40,000
    objects (``ops.inspect.collect_sockets``)."""

    rows: list[tuple[Any, ...]]
    notes: tuple[Note, ...]
    owners_incomplete: bool
    backend: str

    def entries(self) -> tuple[SocketEntry, ...]:
        return tuple(SocketEntry(*r) for r in self.rows)


@dataclass(frozen=True, slots=True)
class KillOutcome:
    pid: int
    signal: str
    exited: bool


@dataclass(frozen=True, slots=True)
class WhoReport:
    """Who holds ``port`` (all holders, lowest pid first)."""

    port: int
    holders: tuple[Holder, ...]
    proto: str | None = internal(default=None)
    owners_incomplete: bool = internal(default=False)
    # TIME_WAIT connections on the port (no process, but they block bind)
    time_wait: int = internal(default=0)


@dataclass(frozen=True, slots=True)
class FreePorts:
    ports: tuple[int, ...]
    port_range: tuple[int, int] = internal(default=(0, 0))
    proto: str = internal(default="tcp")


@dataclass(frozen=True, slots=True)
class ServiceName:
    name: str
    proto: str
    description: str


@dataclass(frozen=True, slots=True)
class PortInfo:
    port: int
    port_class: str
    services: tuple[ServiceName, ...]
    ephemeral: bool
    note: str | None
    note_text: Localizable | None = internal(default=None)
    ephemeral_range: tuple[int, int] = internal(default=(32768, 60999))
    query: str = internal(default="")
