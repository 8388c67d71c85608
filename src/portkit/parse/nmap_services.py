"""Parse nmap's ``nmap-services`` file: service names and how often each port is open.

Each data line is ``name<TAB>port/proto<TAB>frequency[<TAB># comment]``, e.g.
``http\t80/tcp\t0.484143\t# World Wide Web HTTP`` -> ``ServiceFreq("http", 80, "tcp", 0.484143)``.
Lines starting with ``#`` and malformed lines are skipped (the file is read at run time
and not shipped with portkit: it is under nmap's own licence).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ServiceFreq", "parse_nmap_services", "top_by_frequency"]


@dataclass(frozen=True, slots=True)
class ServiceFreq:
    name: str
    port: int
    proto: str
    frequency: float


def parse_nmap_services(text: str) -> list[ServiceFreq]:
    out: list[ServiceFreq] = []
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        port_s, _, proto = parts[1].partition("/")
        if not port_s.isdigit() or proto not in ("tcp", "udp", "sctp"):
            continue
        try:
            freq = float(parts[2])
        except ValueError:
            continue
        port = int(port_s)
        if 1 <= port <= 65535:
            out.append(ServiceFreq(parts[0], port, proto, freq))
    return out


def top_by_frequency(entries: list[ServiceFreq], n: int, proto: str) -> tuple[int, ...]:
    """The ``n`` most frequently open ports of ``proto`` (ties by port number)."""
    cands = [e for e in entries if e.proto == proto]
    cands.sort(key=lambda e: (-e.frequency, e.port))
    seen: dict[int, None] = {}
    for e in cands:
        seen.setdefault(e.port, None)
        if len(seen) >= n:
            break
    return tuple(seen)
