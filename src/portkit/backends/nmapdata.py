"""Read nmap's data files and /etc/services at run time (the parsers are pure, in parse/).

``nmap-services`` is under nmap's own licence, so portkit reads it where nmap installed it
and never ships a copy; without nmap, portkit uses its own top-ports list.
"""

from __future__ import annotations

import functools

from portkit.backends.services import nmap_services_path  # one finder for info and scan
from portkit.backends.services import service_db as _etc_service_db
from portkit.parse.nmap_services import ServiceFreq, parse_nmap_services
from portkit.registry.services import ServiceDb


@functools.lru_cache(maxsize=1)
def nmap_services() -> tuple[ServiceFreq, ...]:
    """nmap's port frequencies, or () when nmap is not installed."""
    path = nmap_services_path()
    if path is None:
        return ()
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return tuple(parse_nmap_services(f.read()))
    except OSError:  # nmap's table is optional: without it, no nmap port names
        return ()


def service_db() -> ServiceDb:
    """/etc/services plus portkit's own table (the names ``ss`` and ``portkit ls`` show)."""
    return _etc_service_db()  # one reader and cache for the whole process: backends.services


@functools.lru_cache(maxsize=1)
def _nmap_names() -> dict[tuple[int, str], str]:
    names: dict[tuple[int, str], str] = {}
    for e in nmap_services():
        if e.name != "unknown":
            names.setdefault((e.port, e.proto), e.name)
    return names


def service_name(port: int, proto: str) -> str | None:
    """The registry's name for a port, else nmap's (as nmap's own output would show)."""
    name = service_db().name(port, proto)
    if name is None:
        name = _nmap_names().get((port, proto))
    return name
