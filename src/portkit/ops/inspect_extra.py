"""Inspect domain, continued: free ports, what a port means, and ending a port's holders.

Re-exported by :mod:`portkit.ops.inspect` (and so by :mod:`portkit.api`).
"""

from __future__ import annotations

import os
import random
import signal as _signal
import time
from collections.abc import Callable

from portkit.backends import procs, services
from portkit.backends.signals import protected_reason
from portkit.backends.sockets_free import port_is_free
from portkit.errors import InputError, PortSpecError, PrivilegeError, SystemRefused
from portkit.model.sockets import FreePorts, KillOutcome, PortInfo, ServiceName, WhoReport
from portkit.registry.ports import common_port, port_class

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


def port_info(query: int | str) -> PortInfo:
    """What ``query`` (a port number or a service name such as ``ssh``) means on this host."""
    text = str(query).strip()
    db = services.service_db(with_nmap=True)
    if text.isdigit():
        port = int(text)
        if port > 65535:
            raise PortSpecError(f"invalid port {text!r}; valid ports are 0-65535 (or a service name such as ssh)")
    else:
        found = db.port_for_name(text) if text else None
        if found is None:
            raise InputError(
                f"unknown port or service {text!r}; give a port number 0-65535 or a service name "
                "from /etc/services or nmap-services (e.g. ssh, http, postgresql)"
            )
        port = found
    recs = [r for r in db.records_for_port(port) if r.proto in ("tcp", "udp", "sctp")]
    svcs = tuple(ServiceName(r.name, r.proto, r.description) for r in recs)
    low, high = services.ephemeral_range()
    c = common_port(port)
    from portkit.i18n import Message

    note = Message(c.note) if c is not None else None
    return PortInfo(
        port, port_class(port), svcs, low <= port <= high, note.english() if note else None, note, (low, high), text
    )


def parse_signal(name: str | int) -> _signal.Signals:
    """``"TERM"``, ``"SIGTERM"``, ``"15"`` -> ``Signals.SIGTERM``."""
    text = str(name).strip().upper()
    valid = sorted(s.name[3:] for s in _signal.Signals if s.name.startswith("SIG") and not s.name.startswith("SIG_"))
    try:
        if text.isdigit():
            return _signal.Signals(int(text))
        return _signal.Signals[text if text.startswith("SIG") else "SIG" + text]
    except (KeyError, ValueError):
        raise InputError(f"invalid signal {name!r}; valid signals are: {', '.join(valid)} (or their numbers)") from None


def kill_holders(
    report: WhoReport,
    *,
    signal: str | int = "TERM",
    timeout: float = 5.0,
    force: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[KillOutcome, ...]:
    """Send ``signal`` to every process holding the port, wait up to ``timeout`` seconds
    for them to end and, with ``force``, SIGKILL the ones still running."""
    sig = parse_signal(signal)
    if timeout < 0:
        raise InputError(f"invalid timeout {timeout!r}; a timeout is a number of seconds >= 0")
    pids = sorted({p.pid for h in report.holders for p in h.processes})
    if not pids:
        if report.holders:
            raise PrivilegeError(
                f"port {report.port} is held by processes portkit cannot see; run as root to signal them"
            )
        return ()
    _refuse_protected(pids)
    sent: dict[int, str] = {}
    for pid in pids:
        _send(pid, sig)
        sent[pid] = sig.name
    alive = _wait(pids, timeout, sleep)
    if force and alive:
        for pid in alive:
            _send(pid, _signal.SIGKILL)
            sent[pid] = "SIGKILL"
        alive = _wait(alive, 5.0, sleep)
    return tuple(KillOutcome(pid, sent[pid], pid not in alive) for pid in pids)


def _refuse_protected(pids: list[int]) -> None:
    """Refuse the whole kill, before any signal is sent, when one pid must never be signalled."""
    for pid in pids:
        reason = protected_reason(pid)
        if reason is not None:
            raise SystemRefused(f"refusing to signal pid {pid}: {reason}; nothing was signalled")


def _send(pid: int, sig: _signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        raise PrivilegeError(f"not allowed to send {sig.name} to pid {pid}; run as root or as its owner") from None


def _wait(pids: list[int], timeout: float, sleep: Callable[[float], None]) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = [p for p in pids if not procs.is_gone(p)]
    while alive and time.monotonic() < deadline:
        sleep(0.05)
        alive = [p for p in alive if not procs.is_gone(p)]
    return alive
