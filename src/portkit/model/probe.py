"""Results of probing and scanning ports: plain, frozen data.

Field names are the JSON contract of ``portkit check --json`` and ``portkit scan --json``;
fields declared ``internal`` (``model/fields.py``) carry extra detail (used by the nmap XML
writer) and are left out of JSON. States and reasons use nmap's vocabulary (``portreasons.cc``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from portkit.model.fields import internal


class PortState(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    FILTERED = "filtered"
    OPEN_FILTERED = "open|filtered"


class Reason(StrEnum):
    """Why a state was concluded, named as nmap's ``--reason`` names it."""

    SYN_ACK = "syn-ack"
    CONN_REFUSED = "conn-refused"
    RESET = "reset"
    NO_RESPONSE = "no-response"
    UDP_RESPONSE = "udp-response"
    NET_UNREACH = "net-unreach"
    HOST_UNREACH = "host-unreach"
    PROTO_UNREACH = "proto-unreach"
    PORT_UNREACH = "port-unreach"
    NET_PROHIBITED = "net-prohibited"
    HOST_PROHIBITED = "host-prohibited"
    ADMIN_PROHIBITED = "admin-prohibited"
    ICMP_OTHER = "icmp-other"  # any other ICMP error (e.g. a time-exceeded); never "open"
    ERROR = "error"  # the local kernel refused to send (e.g. no route): see reason_from


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one probe (or its retransmissions) concluded about one port."""

    state: PortState
    reason: Reason
    reason_from: str | None = None
    rtt_ms: float | None = None


@dataclass(frozen=True, slots=True)
class Endpoint:
    """``host:port/proto`` as the user wrote it (host is a name or an address)."""

    host: str
    port: int
    proto: str = "tcp"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}/{self.proto}"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One endpoint checked (``portkit check``)."""

    target: str
    address: str
    port: int
    proto: str
    state: PortState
    reason: Reason
    reason_from: str | None
    rtt_ms: float | None
    banner: str | None = None


@dataclass(frozen=True, slots=True)
class CheckReport:
    results: tuple[ProbeResult, ...]

    @property
    def all_open(self) -> bool:
        return bool(self.results) and all(r.state is PortState.OPEN for r in self.results)


@dataclass(frozen=True, slots=True)
class PortResult:
    """One scanned port of one host."""

    port: int
    proto: str
    state: PortState
    reason: Reason
    service: str | None
    reason_from: str | None = internal(default=None)
    rtt_ms: float | None = internal(default=None)


@dataclass(frozen=True, slots=True)
class NotShown:
    """A group of ports sharing state and reason, summarised rather than listed."""

    state: PortState
    reason: Reason
    count: int
    proto: str = internal(default="tcp")
    # the ports, compacted ("1-21,23-79"), as nmap's XML extrareasons has them
    ports: str = internal(default="")


@dataclass(frozen=True, slots=True)
class HostResult:
    target: str
    address: str
    ports: tuple[PortResult, ...]
    not_shown: tuple[NotShown, ...]
    status: str = internal(default="up")  # "up" | "down" (discovery found nothing) | "skipped"
    status_reason: str = internal(default="user-set")
    scanned: int = internal(default=0)

    def open_ports(self) -> tuple[PortResult, ...]:
        return tuple(p for p in self.ports if p.state is PortState.OPEN)


@dataclass(frozen=True, slots=True)
class TargetProblem:
    """A target that could not be scanned (e.g. a name that does not resolve)."""

    target: str
    error: str


@dataclass(frozen=True, slots=True)
class ScanReport:
    hosts: tuple[HostResult, ...]
    elapsed_s: float
    interrupted: bool
    errors: tuple[TargetProblem, ...] = internal(default=())
    started: float = internal(default=0.0)
    scan_type: str = internal(default="connect")
    protocol: str = internal(default="tcp")
    args: str = internal(default="")
    ports_spec: str = internal(default="")  # "tcp:1-1000;udp:53" as nmap's scaninfo services
    down: tuple[str, ...] = internal(default=())
    warnings: tuple[str, ...] = internal(default=())  # one line each, for stderr (not in the JSON contract)
