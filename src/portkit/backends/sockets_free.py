"""Is a port free right now? Bind it on 0.0.0.0 and on :: (v6only) and let go.

A port counts as free only when both binds succeed at that moment, without
``SO_REUSEADDR``: a port kept by a ``TIME_WAIT`` connection or by a socket bound to one
address family only is not offered. Without IPv6 on the host only the IPv4 bind counts.
"""

from __future__ import annotations

import errno
import socket

_ipv6: list[bool] = []


def ipv6_available() -> bool:
    if not _ipv6:
        try:
            socket.socket(socket.AF_INET6, socket.SOCK_STREAM).close()
            _ipv6.append(True)
        except OSError:  # a kernel without IPv6
            _ipv6.append(False)
    return _ipv6[0]


def _bind_ok(family: int, kind: int, port: int) -> bool:
    try:
        s = socket.socket(family, kind)
    except OSError:  # no such socket family here: the port is not free in it
        return False
    with s:
        try:
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                s.bind(("::", port))
            else:
                s.bind(("0.0.0.0", port))
        except OSError as exc:  # taken or not ours to take: not free; anything else is unexpected
            if exc.errno in (errno.EADDRINUSE, errno.EACCES, errno.EPERM, errno.EADDRNOTAVAIL):
                return False
            raise
    return True


def port_is_free(port: int, proto: str = "tcp") -> bool:
    """True when ``port`` binds on 0.0.0.0 and on :: (when the host has IPv6) right now."""
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    if not _bind_ok(socket.AF_INET, kind, port):
        return False
    return not ipv6_available() or _bind_ok(socket.AF_INET6, kind, port)
