"""Files behind the port registry: /etc/services, nmap-services, the ephemeral range.

The parsing is in :mod:`portkit.registry.services`; this module only finds and reads
the files (at run time, never from the network) and caches the result per process.
"""

from __future__ import annotations

import os

from portkit.registry.ports import LINUX_DEFAULT_EPHEMERAL, parse_port_range
from portkit.registry.services import ServiceDb, parse_etc_services, parse_nmap_services

ETC_SERVICES = "/etc/services"
NMAP_SERVICES_PATHS = (
    "/usr/share/nmap/nmap-services",
    "/usr/local/share/nmap/nmap-services",
    "/opt/homebrew/share/nmap/nmap-services",
)
LOCAL_PORT_RANGE = "/proc/sys/net/ipv4/ip_local_port_range"

_cache: dict[bool, ServiceDb] = {}


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:  # a missing services file means no names from it
        return ""


def nmap_services_path() -> str | None:
    """The nmap-services file: $PORTKIT_NMAP_SERVICES when set, else the one next to an
    installed nmap, else the usual locations; None without one. `info` and `scan` share it."""
    env = os.environ.get("PORTKIT_NMAP_SERVICES")
    if env:
        return env if os.path.isfile(env) else None
    from portkit.backends.host import find_tool

    nmap = find_tool("nmap")
    candidates = list(NMAP_SERVICES_PATHS)
    if nmap:
        prefix = os.path.dirname(os.path.dirname(os.path.realpath(nmap)))
        candidates.insert(0, os.path.join(prefix, "share", "nmap", "nmap-services"))
    for path in candidates:
        if os.path.isfile(path):
            return path
    return None


def service_db(*, with_nmap: bool = False) -> ServiceDb:
    """The service database of this host (cached): /etc/services, plus nmap's when asked."""
    db = _cache.get(with_nmap)
    if db is None:
        etc = parse_etc_services(_read(ETC_SERVICES))
        nmap = []
        if with_nmap:
            path = nmap_services_path()
            if path:
                nmap = parse_nmap_services(_read(path))
        db = _cache[with_nmap] = ServiceDb(etc, nmap)
    return db


def ephemeral_range(path: str = LOCAL_PORT_RANGE) -> tuple[int, int]:
    """The OS's ephemeral (local) port range; Linux's default when it cannot be read.

    ``/proc/sys/net`` is per network namespace: read it inside a ``run_in_netns`` worker to
    get another namespace's range.
    """
    try:
        return parse_port_range(_read(path))
    except ValueError:
        return LINUX_DEFAULT_EPHEMERAL
