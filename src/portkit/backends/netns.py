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
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from portkit.errors import NOT_A_PATH, InputError, PrivilegeError, SystemRefused, map_exceptions

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
    except FileNotFoundError:  # no /run/netns yet: ip netns knows no namespace
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
    """The namespace path for --netns NAME / --netns container:NAME / --netns-pid PID, or
    None for our own."""
    if name is not None:
        if name.startswith("container:"):
            from portkit.backends import containers  # only when a container is named

            return containers.netns_path(name[len("container:") :])
        return netns_path(name)
    if pid is not None:
        return pid_netns_path(pid)
    return None


@contextmanager
def entered(path: str) -> Iterator[None]:
    """Move the *calling thread* into the namespace at ``path`` and back afterwards.

    Prefer :func:`run_in_netns`, which uses a throwaway thread.
    """
    with map_exceptions("cannot open own network namespace"):
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        # a path that names no namespace is bad input (exit 2); EACCES is exit 3
        with map_exceptions(f"cannot open network namespace {path}", errnos=dict.fromkeys(NOT_A_PATH, InputError)):
            target = os.open(path, os.O_RDONLY)
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


# --------------------------------------------------------------------------- identity

SO_NETNS_COOKIE = 71  # linux/socket.h; Linux >= 5.14


@dataclass(frozen=True, slots=True)
class NetnsId:
    """Who a network namespace *is*, whatever name it was entered by.

    ``dev``/``ino`` are the nsfs inode of ``/proc/thread-self/ns/net``; the kernel reuses an
    inode number once its namespace is gone, so the ``cookie`` (SO_NETNS_COOKIE, never
    reused while the machine runs) names it when the kernel has one.
    """

    dev: int
    ino: int
    cookie: int | None

    @property
    def key(self) -> str:
        """A file-name-safe key for per-namespace state."""
        return f"net-{self.cookie}" if self.cookie is not None else f"net-{self.dev:x}-{self.ino}"


def _identity_here() -> NetnsId:
    with map_exceptions("cannot read own network namespace"):
        st = os.stat("/proc/thread-self/ns/net")
    cookie: int | None = None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            cookie = int.from_bytes(s.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8), sys.byteorder)
    except OSError:
        cookie = None  # an older kernel: fall back to the inode
    return NetnsId(st.st_dev, st.st_ino, cookie)


def identity(name: str | None = None) -> NetnsId:
    """The identity of namespace ``name`` (from /run/netns), or of the one we run in."""
    return run_in_netns(netns_path(name) if name is not None else None, _identity_here)


PROC_NET_INIT_INO = 0xEFFFFFF9  # include/linux/proc_ns.h: the initial namespace's fixed inode


def is_initial(ident: NetnsId) -> bool:
    """True for the machine's own (initial) network namespace. Its inode number is fixed by
    the kernel; /proc/1/ns/net is checked too, for when PID 1 lives elsewhere and readable."""
    if ident.ino == PROC_NET_INIT_INO:
        return True
    try:
        st = os.stat("/proc/1/ns/net")
    except OSError:  # /proc/1 hidden (another PID namespace): the inode check above decided
        return False
    return (st.st_dev, st.st_ino) == (ident.dev, ident.ino)


def state_key(name: str | None = None) -> str:
    """The key per-namespace state is filed under: ``host`` for the namespace of PID 1 (it
    cannot go away), ``net-<cookie>`` for any other, whether it was named with ``--netns``
    or entered with ``ip netns exec``, ``nsenter`` or ``lab exec``."""
    ident = identity(name)
    return "host" if is_initial(ident) else ident.key
