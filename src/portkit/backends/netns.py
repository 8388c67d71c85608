"""Network namespaces: find them by name or pid, and run code inside one.

Linux namespaces are per *thread*: ``setns(fd, CLONE_NEWNET)`` moves only the calling
thread. :func:`run_in_netns` therefore runs the work in a fresh thread that enters the
namespace, so the caller's thread never ends up in the wrong one, and sockets created by
that work belong to the target namespace.

Inside such a thread, read ``/proc/thread-self/net/...`` rather than ``/proc/self/net/...``:
``/proc/self`` is the thread-group leader, which stays in the original namespace.
Netlink sockets opened inside the thread talk to the target namespace's kernel tables.

Python 3.11 has no ``os.setns`` (added in 3.12), so libc's ``setns`` is called via ctypes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from portkit.errors import InputError, PrivilegeError, SystemRefused

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"

_libc: ctypes.CDLL | None = None


def _setns(fd: int, nstype: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        if err in (1, 13):  # EPERM, EACCES
            raise PrivilegeError("entering a network namespace needs root (CAP_SYS_ADMIN)")
        raise SystemRefused(f"setns failed: {os.strerror(err)}")


def list_netns() -> list[str]:
    """Names of the namespaces ``ip netns`` knows (files under /run/netns)."""
    try:
        return sorted(os.listdir(NETNS_RUN_DIR))
    except FileNotFoundError:
        return []


def netns_path(name: str) -> str:
    """Path of the named namespace; InputError naming the known ones when it is missing."""
    if not name or "/" in name or name in (".", ".."):
        raise InputError(f"invalid network namespace name {name!r}")
    path = os.path.join(NETNS_RUN_DIR, name)
    if not os.path.exists(path):
        known = ", ".join(list_netns()) or "none"
        raise InputError(f"no network namespace named {name!r}; known ones are: {known}")
    return path


def pid_netns_path(pid: int) -> str:
    """Path of the network namespace of process ``pid``."""
    if pid <= 0:
        raise InputError(f"invalid pid {pid}; a pid is a positive integer")
    path = f"/proc/{pid}/ns/net"
    if not os.path.exists(f"/proc/{pid}"):
        raise InputError(f"no process with pid {pid}")
    return path


def resolve(name: str | None = None, pid: int | None = None) -> str | None:
    """The namespace path for --netns NAME / --netns-pid PID, or None for our own."""
    if name is not None:
        return netns_path(name)
    if pid is not None:
        return pid_netns_path(pid)
    return None


@contextmanager
def entered(path: str) -> Iterator[None]:
    """Move the *calling thread* into the namespace at ``path`` and back afterwards.

    Prefer :func:`run_in_netns`, which uses a throwaway thread.
    """
    try:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    except OSError as exc:
        raise SystemRefused(f"cannot open own network namespace: {exc.strerror}") from exc
    try:
        try:
            target = os.open(path, os.O_RDONLY)
        except PermissionError as exc:
            raise PrivilegeError(f"cannot open network namespace {path}: permission denied") from exc
        except OSError as exc:
            raise InputError(f"cannot open network namespace {path}: {exc.strerror}") from exc
        try:
            _setns(target, CLONE_NEWNET)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(own, CLONE_NEWNET)
    finally:
        os.close(own)


def run_in_netns(path: str | None, fn: Callable[[], T]) -> T:
    """Call ``fn()`` inside the namespace at ``path`` (or right here when ``path`` is None)."""
    if path is None:
        return fn()
    box: dict[str, object] = {}

    def worker() -> None:
        try:
            with entered(path):
                box["result"] = fn()
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    t = threading.Thread(target=worker, name="portkit-netns", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["result"]  # type: ignore[return-value]
