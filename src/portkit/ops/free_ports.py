"""``portkit free``: ports that bind on every address right now.

Re-exported by :mod:`portkit.ops.inspect` (and so by :mod:`portkit.api`).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from portkit.backends import services
from portkit.backends.sockets_free import port_is_free
from portkit.errors import InputError, PortSpecError
from portkit.model.sockets import FreePorts
from portkit.registry.ports import common_port

__all__ = ["MAX_FREE_COUNT", "default_free_range", "free_ports", "parse_range"]

MAX_FREE_COUNT = 1000


def parse_range(text: str) -> tuple[int, int]:
    """``"8000-8100"`` -> ``(8000, 8100)``; one line naming the value otherwise."""
    low_s, sep, high_s = text.strip().partition("-")
    valid = "a range is LOW-HIGH with 1 <= LOW <= HIGH <= 65535, e.g. 8000-8100"
    if not sep or not low_s.strip().isdigit() or not high_s.strip().isdigit():
        raise PortSpecError(f"invalid range {text!r}; {valid}")
    low, high = int(low_s), int(high_s)
    if not 1 <= low <= high <= 65535:
        raise PortSpecError(f"invalid range {text!r}; {valid}")
    return low, high


def default_free_range() -> tuple[int, int]:
    """1024 up to just below the OS ephemeral range."""
    low, _ = services.ephemeral_range()
    return (1024, low - 1) if low > 1024 else (1024, 65535)


def free_ports(
    count: int = 1,
    port_range: tuple[int, int] | str | None = None,
    proto: str = "tcp",
    *,
    is_free: Callable[[int, str], bool] = port_is_free,
) -> FreePorts:
    """Up to ``count`` ports that bind on 0.0.0.0 and :: right now.

    By default from 1024 to just below the ephemeral range, skipping ports named in
    /etc/services or portkit's own table (so a service installed later will not collide).
    An explicit ``port_range`` is searched whole, named ports included. The search starts
    at a random place in the range and wraps, so concurrent callers rarely race.
    """
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_FREE_COUNT:
        raise InputError(f"invalid count {count!r}; valid counts are 1-{MAX_FREE_COUNT}")
    if proto not in ("tcp", "udp"):
        raise InputError(f"invalid protocol {proto!r}; valid protocols are: tcp, udp")
    skip: set[int] = set()
    if port_range is None:
        low, high = default_free_range()
        skip = services.service_db().etc_ports()
        skip.update(p for p in range(low, high + 1) if common_port(p) is not None)
    elif isinstance(port_range, str):
        low, high = parse_range(port_range)
    else:
        low, high = port_range
        if not 1 <= low <= high <= 65535:
            raise PortSpecError(f"invalid range {low}-{high}; a range is LOW-HIGH with 1 <= LOW <= HIGH <= 65535")
    span = high - low + 1
    start = random.randrange(span)
    found: list[int] = []
    for i in range(span):
        port = low + (start + i) % span
        if port in skip:
            continue
        if is_free(port, proto):
            found.append(port)
            if len(found) == count:
                break
    return FreePorts(tuple(sorted(found)), (low, high), proto)
