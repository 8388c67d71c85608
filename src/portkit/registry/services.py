"""Service names: ``/etc/services`` and nmap's ``nmap-services`` text -> lookups.

Both files are ``name port/proto ...`` lines with ``#`` comments::

    ssh             22/tcp                          # SSH Remote Login Protocol
    ssh	22/tcp	0.182286	# Secure Shell Login        (nmap-services: name, port, frequency)

The parsers are pure; :mod:`portkit.backends.services` reads the files. A
:class:`ServiceDb` answers by port and by name; ``/etc/services`` (what the system and
``ss`` call a port) comes first, then portkit's own table; nmap's names, which cover
nearly every number, are only used by ``portkit info``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from portkit.registry.ports import common_port, common_port_by_name

PROTOS = ("tcp", "udp", "sctp", "ddp")


@dataclass(frozen=True, slots=True)
class ServiceRecord:
    name: str
    port: int
    proto: str
    aliases: tuple[str, ...] = ()
    description: str = ""
    frequency: float = 0.0  # nmap-services only: how often the port was found open


def _split_comment(line: str) -> tuple[str, str]:
    body, _, comment = line.partition("#")
    return body, comment.strip()


def _port_proto(text: str) -> tuple[int, str] | None:
    port_s, sep, proto = text.partition("/")
    if not sep or not port_s.isdigit():
        return None
    port = int(port_s)
    if port > 65535:
        return None
    return port, proto.lower()


def parse_etc_services(text: str) -> list[ServiceRecord]:
    """Records of an ``/etc/services`` text; malformed lines are skipped (as libc does)."""
    out: list[ServiceRecord] = []
    for line in text.splitlines():
        body, comment = _split_comment(line)
        parts = body.split()
        if len(parts) < 2:
            continue
        pp = _port_proto(parts[1])
        if pp is None:
            continue
        out.append(ServiceRecord(parts[0], pp[0], pp[1], tuple(parts[2:]), comment))
    return out


def parse_nmap_services(text: str) -> list[ServiceRecord]:
    """Records of an ``nmap-services`` text (name, port/proto, open frequency, comment)."""
    out: list[ServiceRecord] = []
    for line in text.splitlines():
        body, comment = _split_comment(line)
        parts = body.split()
        if len(parts) < 2 or parts[0] == "unknown":
            continue
        pp = _port_proto(parts[1])
        if pp is None:
            continue
        try:
            freq = float(parts[2]) if len(parts) > 2 else 0.0
        except ValueError:
            freq = 0.0
        out.append(ServiceRecord(parts[0], pp[0], pp[1], (), comment, freq))
    return out


def ports_by_name(records: list[ServiceRecord]) -> dict[tuple[str, str], int]:
    """``{(name, proto): port}`` of ``records``, aliases included, names lower-cased; the
    first record of a name wins (as libc's getservbyname)."""
    out: dict[tuple[str, str], int] = {}
    for rec in records:
        for name in (rec.name, *rec.aliases):
            out.setdefault((name.lower(), rec.proto), rec.port)
    return out


@dataclass(slots=True)
class ServiceDb:
    """Lookups over ``/etc/services`` records (and optionally nmap's)."""

    etc: list[ServiceRecord] = field(default_factory=list)
    nmap: list[ServiceRecord] = field(default_factory=list)
    _by_port: dict[tuple[int, str], str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for rec in self.etc:
            self._by_port.setdefault((rec.port, rec.proto), rec.name)

    def name(self, port: int, proto: str) -> str | None:
        """The system's name for ``port``/``proto``, else portkit's own, else None."""
        name = self._by_port.get((port, proto))
        if name is not None:
            return name
        c = common_port(port)
        if c is not None and proto in c.protos:
            return c.name
        return None

    def etc_ports(self) -> set[int]:
        return {rec.port for rec in self.etc}

    def records_for_port(self, port: int) -> list[ServiceRecord]:
        """Every record naming ``port``: /etc/services, then portkit's table, then nmap."""
        seen: set[tuple[str, str]] = set()
        out: list[ServiceRecord] = []
        c = common_port(port)
        own_desc = c.description if c is not None else ""

        def add(rec: ServiceRecord) -> None:
            key = (rec.name, rec.proto)
            if key not in seen:
                seen.add(key)
                out.append(rec)

        for rec in self.etc:
            if rec.port == port:
                desc = rec.description or (own_desc if c is not None and rec.proto in c.protos else "")
                add(ServiceRecord(rec.name, port, rec.proto, rec.aliases, desc))
        if c is not None:
            for proto in c.protos:
                add(ServiceRecord(c.name, port, proto, (), c.description))
        for rec in self.nmap:
            if rec.port == port:
                add(rec)
        return out

    def port_for_name(self, name: str) -> int | None:
        """``ssh`` -> 22: /etc/services names and aliases, then portkit's table, then the
        most frequently open nmap port of that name."""
        key = name.lower()
        for rec in self.etc:
            if rec.name.lower() == key or key in (a.lower() for a in rec.aliases):
                return rec.port
        c = common_port_by_name(key)
        if c is not None:
            return c.port
        best: ServiceRecord | None = None
        for rec in self.nmap:
            if rec.name.lower() == key and (best is None or rec.frequency > best.frequency):
                best = rec
        return best.port if best is not None else None


def service_name(port: int, proto: str, db: ServiceDb | None = None) -> str | None:
    """Service name of ``port``/``proto`` from ``db`` (when given) or portkit's own table."""
    if db is not None:
        return db.name(port, proto)
    c = common_port(port)
    return c.name if c is not None and proto in c.protos else None
