"""``portkit who --kill``: signal the processes that hold a port, wait, and SIGKILL if asked.

Re-exported by :mod:`portkit.ops.inspect` (and so by :mod:`portkit.api`).
"""

from __future__ import annotations

import os
import signal as _signal
import time
from collections.abc import Callable

from portkit.backends import procs
from portkit.backends.signals import protected_reason
from portkit.errors import InputError, PrivilegeError, SystemRefused, map_os_error
from portkit.model.sockets import KillOutcome, WhoReport

__all__ = ["kill_holders", "parse_signal"]


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
    sent: dict[int, str] = {}
    _refuse_protected(pids)
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
        pass  # it exited meanwhile: what a kill wanted
    except PermissionError as exc:
        raise map_os_error(exc, f"not allowed to send {sig.name} to pid {pid}", hint="run as root or as its owner") from None


def _wait(pids: list[int], timeout: float, sleep: Callable[[float], None]) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = [p for p in pids if not procs.is_gone(p)]
    while alive and time.monotonic() < deadline:
        sleep(0.05)
        alive = [p for p in alive if not procs.is_gone(p)]
    return alive
