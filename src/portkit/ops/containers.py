"""The container side of the socket table: which container a proxy socket serves, the
sockets inside containers (``--containers``), and ports published by DNAT alone.

Nothing here runs (or imports the container backend) unless a row is held by a known
proxy process or dockerd, or containers are asked for: ``who 1`` stays as fast as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from portkit.model.sockets import ContainerRef

# Value-tuple indexes (SocketEntry field order; see ops.inspect)
_PROTO, _FAMILY, _LADDR, _LPORT, _STATE, _PID, _PROCESS = 0, 1, 2, 3, 6, 7, 8
_CONTAINER = 16
PROXIES = frozenset({"docker-proxy", "rootlessport", "conmon", "pasta", "slirp4netns", "pasta.avx2"})
DAEMONS = frozenset({"dockerd", "podman"})


def _ref(c: Any, port: int | None, address: str | None, role: str) -> ContainerRef:
    return ContainerRef(c.runtime, c.short_id, c.name, c.image, port, address, role)


def wants_annotation(values: Sequence[tuple[Any, ...]]) -> bool:
    names = PROXIES | DAEMONS
    return any(v[_PROCESS] in names for v in values)


def annotate(values: list[tuple[Any, ...]], containers: list[Any] | None = None) -> list[tuple[Any, ...]]:
    """Fill the ``container`` of rows held by a proxy (or by dockerd, as a reservation)."""
    if containers is None and not wants_annotation(values):
        return values
    from portkit.backends import containers as backend

    cs = containers if containers is not None else backend.list_containers()[0]
    if not cs:
        return values
    out: list[tuple[Any, ...]] = []
    for v in values:
        proc = v[_PROCESS]
        ref: ContainerRef | None = None
        if proc == "docker-proxy" and v[_PID] is not None:
            target = backend.proxy_target(v[_PID])
            if target is not None:
                for c in cs:
                    if target[0] in c.addresses:
                        ref = _ref(c, target[1], target[0], "proxy")
                        break
            if ref is None:
                ref = _by_published(cs, v, "proxy")
        elif proc in PROXIES:
            ref = _by_published(cs, v, "proxy")
        elif proc in DAEMONS:
            ref = _by_published(cs, v, "reservation")
        out.append(v if ref is None else (*v[:_CONTAINER], ref))
    return out


def _by_published(cs: Sequence[Any], v: tuple[Any, ...], role: str) -> ContainerRef | None:
    for c in cs:
        for p in c.published:
            if p.host_port == v[_LPORT] and p.proto == v[_PROTO]:
                addr = c.addresses[0] if c.addresses else None
                return _ref(c, p.container_port, addr, role)
    return None


def published_rows(values: Sequence[tuple[Any, ...]], cs: Sequence[Any], tcp: bool, udp: bool,
                   make: Callable[[str, str, str, int, ContainerRef], tuple[Any, ...]]) -> list[tuple[Any, ...]]:  # fmt: skip
    """Rows of state ``PUBLISHED`` for ports a container publishes that no host socket
    serves (the userland proxy off, or netavark): the kernel's DNAT answers them."""
    served = {(v[_PROTO], v[_LPORT]) for v in values if v[_CONTAINER] is not None and v[_CONTAINER].role == "proxy"}
    held = {(v[_PROTO], v[_LPORT]) for v in values}
    out: list[tuple[Any, ...]] = []
    seen: set[tuple[str, str, int]] = set()
    for c in cs:
        for p in c.published:
            if (p.proto == "tcp" and not tcp) or (p.proto == "udp" and not udp):
                continue
            key = (p.proto, p.host_ip, p.host_port)
            if key in seen or (p.proto, p.host_port) in served:
                continue
            seen.add(key)
            if (p.proto, p.host_port) in held:
                continue  # a reservation socket is listed, labelled with its container
            addr = c.addresses[0] if c.addresses else None
            fam = "ipv6" if ":" in p.host_ip else "ipv4"
            out.append(make(p.proto, fam, p.host_ip, p.host_port, _ref(c, p.container_port, addr, "dnat")))
    return out


def inside_rows(cs: Sequence[Any], collect: Callable[[int], list[tuple[Any, ...]]]) -> list[tuple[Any, ...]]:
    """The sockets inside each running container's own namespace, marked with it."""
    import os

    try:
        own = os.stat("/proc/self/ns/net").st_ino
    except OSError:
        own = -1
    out: list[tuple[Any, ...]] = []
    seen: set[int] = set()
    for c in cs:
        if not c.pid:
            continue
        try:
            ino = os.stat(f"/proc/{c.pid}/ns/net").st_ino
        except OSError:
            continue
        if ino == own or ino in seen:  # --network host, or a pod's shared namespace
            continue
        seen.add(ino)
        ref = ContainerRef(c.runtime, c.short_id, c.name, c.image, None, None, "inside")
        out.extend((*v[:_CONTAINER], ref) for v in collect(c.pid))
    return out
