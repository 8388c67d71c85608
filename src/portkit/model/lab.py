"""A lab scenario (hosts, links, services, NAT) and a running lab's status, as plain data.

A :class:`Scenario` is what a validated scenario file says; :class:`LabStatus` and
:class:`LabSummary` are what ``portkit lab status`` / ``portkit lab ls`` report.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Route:
    """``to`` is ``default`` or a CIDR; ``via`` a gateway on one of the host's links."""

    to: str
    via: str
    family: int


@dataclass(frozen=True, slots=True)
class Service:
    """A listener run by the host's service runner."""

    proto: str  # tcp | udp
    address: str  # 0.0.0.0, ::, 127.0.0.1, ::1 or one of the host's addresses
    port: int
    kind: str  # echo | http | banner | silent
    banner: str = ""
    v6only: bool | None = None  # None: decided by the runner (v6only when a v4 twin exists)

    @property
    def listen(self) -> str:
        return f"[{self.address}]:{self.port}" if ":" in self.address else f"{self.address}:{self.port}"


@dataclass(frozen=True, slots=True)
class Masquerade:
    oif: str
    family: int = 4  # 4, 6, or 0 for both


@dataclass(frozen=True, slots=True)
class PortForward:
    """DNAT: packets to ``port`` (arriving on ``iif`` when given) go to ``to_address:to_port``."""

    proto: str
    port: int
    to_address: str
    to_port: int
    iif: str | None = None


@dataclass(frozen=True, slots=True)
class Host:
    name: str
    forward: bool = False
    routes: tuple[Route, ...] = ()
    services: tuple[Service, ...] = ()
    firewall: str = ""
    masquerade: tuple[Masquerade, ...] = ()
    forwards: tuple[PortForward, ...] = ()


@dataclass(frozen=True, slots=True)
class LinkEnd:
    host: str
    addresses: tuple[str, ...]  # CIDR notation, e.g. 10.0.1.2/24


@dataclass(frozen=True, slots=True)
class Link:
    name: str
    ends: tuple[LinkEnd, ...]
    bridge: bool = False


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    hosts: tuple[Host, ...]
    links: tuple[Link, ...]
    source: str = "<dict>"

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    def addresses_of(self, host: str) -> tuple[tuple[str, str], ...]:
        """(link name, CIDR) pairs of ``host``, in scenario order."""
        out: list[tuple[str, str]] = []
        for link in self.links:
            for end in link.ends:
                if end.host == host:
                    out.extend((link.name, a) for a in end.addresses)
        return tuple(out)


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    host: str
    proto: str
    listen: str
    kind: str
    alive: bool


@dataclass(frozen=True, slots=True)
class HostAddress:
    link: str
    address: str  # CIDR


@dataclass(frozen=True, slots=True)
class HostStatus:
    name: str
    netns: str
    present: bool
    addresses: tuple[HostAddress, ...]
    services: tuple[ServiceStatus, ...]
    runner_pid: int | None


@dataclass(frozen=True, slots=True)
class LabStatus:
    name: str
    state: str  # up | degraded | creating
    source: str
    created: str
    hosts: tuple[HostStatus, ...]
    links: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class LabSummary:
    name: str
    state: str
    hosts: int
    services: int
    source: str
    created: str


@dataclass(frozen=True, slots=True)
class LabResult:
    """What ``lab up`` / ``lab down`` did."""

    name: str
    action: str  # up | already-up | down | not-up
    namespaces: tuple[str, ...]
    services: int
    seconds: float
    # down: processes (not the lab's own) still inside its namespaces; lab down never kills them,
    # and they keep the (now unnamed) namespaces and their links alive until they exit.
    lingering: tuple[int, ...] = ()
