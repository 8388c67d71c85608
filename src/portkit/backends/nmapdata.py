"""Read nmap's data files and /etc/services at run time (the parsers are pure, in parse/).

``nmap-services`` is under nmap's own licence, so portkit reads it where nmap installed it
and never ships a copy; without nmap, portkit uses its own top-ports list.
"""

from __future__ import annotations

import functools
import os

from portkit.parse.nmap_services import ServiceFreq, parse_nmap_services
from portkit.registry.services import ServiceDb, parse_etc_services

NMAP_SERVICES_PATHS = (
    "/usr/share/nmap/nmap-services",
    "/usr/local/share/nmap/nmap-services",
    "/opt/homebrew/share/nmap/nmap-services",
)


def nmap_services_path() -> str | None:
    env = os.environ.get("PORTKIT_NMAP_SERVICES")
    if env:
        return env if os.path.exists(env) else None
    for path in NMAP_SERVICES_PATHS:
        if os.path.exists(path):
            return path
    return None


@functools.lru_cache(maxsize=1)
def nmap_services() -> tuple[ServiceFreq, ...]:
    """nmap's port frequencies, or () when nmap is not installed."""
    path = nmap_services_path()
    if path is None:
        return ()
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return tuple(parse_nmap_services(f.read()))
    except OSError:
        return ()


@functools.lru_cache(maxsize=1)
def service_db() -> ServiceDb:
    """/etc/services plus portkit's own table (the names ``ss`` and ``portkit ls`` show)."""
    try:
        with open("/etc/services", encoding="utf-8", errors="replace") as f:
            return ServiceDb(etc=parse_etc_services(f.read()))
    except OSError:
        return ServiceDb()


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
