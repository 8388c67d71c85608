"""Which processes portkit must never signal, read from ``/proc``.

``who --kill`` signals whatever holds a port, as root. Some holders must never be
signalled whatever the user asked: pid 1 of any PID namespace (its death takes the whole
namespace, or the host, with it), portkit itself and its ancestors (a descriptor
inherited from a shell or a supervisor makes them holders too), and kernel threads.
:func:`protected_reason` names the reason for one pid, or returns None; the caller checks
every pid before it sends the first signal, so a refusal leaves everything untouched.

Facts used, per ``proc(5)``:

- ``NSpid:`` in ``/proc/PID/status`` lists the pid in each PID namespace from ours down
  to the process's own; a 1 anywhere makes it the init of that namespace.
- field 9 (``flags``) of ``/proc/PID/stat`` carries ``PF_KTHREAD`` (0x00200000) for kernel
  threads; their parent is kthreadd (pid 2), whose own parent is 0.
- ``PPid:`` in ``/proc/PID/status`` gives the parent, walked from ``os.getpid()`` up.
"""

from __future__ import annotations

import os

PROC = "/proc"

#: ``PF_KTHREAD`` from include/linux/sched.h.
PF_KTHREAD = 0x00200000


def protected_reason(pid: int, *, proc: str = PROC, self_pid: int | None = None) -> str | None:
    """Why ``pid`` must not be signalled, or None when it may be.

    A process that cannot be inspected although it exists is protected too (fail
    closed); one that no longer exists is not (there is nothing left to signal).
    """
    me = os.getpid() if self_pid is None else self_pid
    if pid <= 0:
        return "it is not a single process (pid <= 0 signals a group)"
    if pid == me:
        return "it is portkit itself"
    status = _status(pid, proc)
    if status is None:
        if os.path.exists(f"{proc}/{pid}"):
            return "its /proc entry cannot be read, so it cannot be checked"
        return None
    nspids = status.get("NSpid", str(pid)).split()
    if pid == 1 or "1" in nspids:
        return "it is pid 1 (init) of a PID namespace"
    flags, ppid = _stat_flags_ppid(pid, proc)
    if flags is None:
        if os.path.exists(f"{proc}/{pid}"):
            return "its /proc entry cannot be read, so it cannot be checked"
        return None
    if flags & PF_KTHREAD or pid == 2 or ppid == 2:
        return "it is a kernel thread"
    if pid in ancestors(me, proc=proc):
        return "it is an ancestor of portkit (signalling it would end portkit's own session)"
    return None


def ancestors(pid: int, *, proc: str = PROC) -> set[int]:
    """The pids from ``pid``'s parent up to the top of our PID namespace."""
    seen: set[int] = set()
    current = pid
    while True:
        status = _status(current, proc)
        if status is None:
            return seen
        try:
            parent = int(status.get("PPid", "0"))
        except ValueError:
            return seen
        if parent <= 0 or parent in seen:
            return seen
        seen.add(parent)
        current = parent


def _status(pid: int, proc: str) -> dict[str, str] | None:
    try:
        with open(f"{proc}/{pid}/status", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:  # gone or unreadable: the caller tells which (fail closed when it exists)
        return None
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key] = value.strip()
    return fields


def _stat_flags_ppid(pid: int, proc: str) -> tuple[int | None, int | None]:
    """``flags`` and ``ppid`` from ``/proc/PID/stat``; the name in parentheses may hold
    spaces and parentheses itself, so the fields are counted after the last ``)``."""
    try:
        with open(f"{proc}/{pid}/stat", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:  # gone or unreadable: the caller tells which (fail closed when it exists)
        return None, None
    rest = text[text.rfind(")") + 1 :].split()
    # rest[0] is field 3 (state): ppid is field 4, flags field 9.
    try:
        return int(rest[6]), int(rest[1])
    except (IndexError, ValueError):
        return None, None
