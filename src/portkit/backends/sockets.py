"""Socket table backends: netlink sock_diag, /proc/net, pyroute2, psutil — one chosen once.

Theory of operation: every backend answers the same question — the TCP/UDP sockets of
the current network namespace in the given families and kernel states — with the same
row tuples (:data:`portkit.parse.sockdiag.Row`), and can name the pids holding each
row's inode (:meth:`SocketBackend.owners`). Everything above (filters, names, exposure,
JSON) is shared, so a backend is only the OS access.

* ``netlink``: our own ``NETLINK_SOCK_DIAG`` dump decoded with :mod:`struct` (what ``ss``
  does). Fastest here; the default on Linux.
* ``procfs``: ``/proc/thread-self/net/{tcp,tcp6,udp,udp6}``; used when netlink is refused
  (e.g. a sandbox without sock_diag).
* ``pyroute2``: ``DiagSocket.get_sock_stats``; correct but decodes in pure Python, ~40x
  slower on 40,000 sockets (bench/RESULTS.md), so only selectable by name.
* ``psutil``: the portable fallback (macOS, Windows, BSD); it gives pids itself but no
  socket owner uid and cannot look into another network namespace.

``PORTKIT_SOCKET_BACKEND=netlink|procfs|pyroute2|psutil`` forces one (tests, benchmarks).
"""

from __future__ import annotations

import errno as _errno
import os
import socket
import sys
from collections.abc import Collection, Sequence
from typing import Any, ClassVar, Protocol

from portkit.backends import procs
from portkit.errors import InputError, SystemRefused, map_os_error
from portkit.parse import procnet, sockdiag
from portkit.parse.sockdiag import Row

FAMILIES: dict[str, int] = {"ipv4": sockdiag.AF_INET, "ipv6": sockdiag.AF_INET6}
PROTOCOLS: dict[str, int] = {"tcp": sockdiag.IPPROTO_TCP, "udp": sockdiag.IPPROTO_UDP}
BACKEND_NAMES = ("netlink", "procfs", "pyroute2", "psutil")


class SocketBackend(Protocol):
    """What every socket backend provides (kept by tests/unit/test_inspect_backends.py)."""

    name: ClassVar[str]
    #: True when :meth:`dump` sees the namespace of the calling *thread* (needed for --netns).
    per_thread_netns: ClassVar[bool]

    def dump(self, masks: dict[str, int], families: Sequence[str]) -> list[Row]:
        """Rows for each protocol in ``masks`` (``{"tcp": state_mask, ...}``) and family."""
        ...

    def owners(self, rows: Sequence[Row], inodes: Collection[int] | None) -> tuple[dict[int, list[int]], bool]:
        """inode -> ascending pids for ``rows`` (only ``inodes`` when given); and whether
        some processes could not be inspected (not root)."""
        ...


class _ProcfsOwners:
    """Pids from one walk of /proc/*/fd (the Linux backends share it)."""

    def owners(self, rows: Sequence[Row], inodes: Collection[int] | None) -> tuple[dict[int, list[int]], bool]:
        return procs.socket_owners(inodes)


class NetlinkBackend(_ProcfsOwners):
    name: ClassVar[str] = "netlink"
    per_thread_netns: ClassVar[bool] = True

    def dump(self, masks: dict[str, int], families: Sequence[str]) -> list[Row]:
        out: list[Row] = []
        dec = sockdiag.Decoder()
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, sockdiag.NETLINK_SOCK_DIAG)
        except OSError as exc:
            raise map_os_error(exc, "cannot open a sock_diag netlink socket") from exc
        with sock:
            recv = sock.recv
            seq = 0
            for proto, mask in masks.items():
                if not mask:
                    continue
                for fam in families:
                    seq += 1
                    sock.send(sockdiag.build_request(FAMILIES[fam], PROTOCOLS[proto], mask, seq))
                    try:
                        while not dec.parse_chunk(recv(65536), proto, out):
                            pass
                    except sockdiag.SockDiagError as exc:
                        if exc.errno == _errno.ENOENT:  # no udp_diag module: read /proc for this one
                            out.extend(ProcfsBackend().dump({proto: mask}, (fam,)))
                            continue
                        raise SystemRefused(f"sock_diag dump of {proto}/{fam} failed: {os.strerror(exc.errno)}") from exc
        return out


class ProcfsBackend(_ProcfsOwners):
    name: ClassVar[str] = "procfs"
    per_thread_netns: ClassVar[bool] = True

    def __init__(self, net_dir: str | None = None) -> None:
        # thread-self, not self: in a --netns worker thread only thread-self is the namespace.
        self.net_dir = net_dir or ("/proc/thread-self/net" if os.path.exists("/proc/thread-self") else "/proc/net")

    def dump(self, masks: dict[str, int], families: Sequence[str]) -> list[Row]:
        out: list[Row] = []
        for proto, mask in masks.items():
            if not mask:
                continue
            for fam in families:
                fname = proto + ("6" if fam == "ipv6" else "")
                try:
                    with open(f"{self.net_dir}/{fname}") as f:
                        text = f.read()
                except FileNotFoundError:  # e.g. IPv6 disabled
                    continue
                out.extend(procnet.parse_procnet(text, proto, fam, mask))
        return out


class Pyroute2Backend(_ProcfsOwners):
    name: ClassVar[str] = "pyroute2"
    per_thread_netns: ClassVar[bool] = True

    def dump(self, masks: dict[str, int], families: Sequence[str]) -> list[Row]:
        from pyroute2 import DiagSocket

        out: list[Row] = []
        with DiagSocket() as ds:
            ds.bind()
            for proto, mask in masks.items():
                if not mask:
                    continue
                for fam in families:
                    for msg in ds.get_sock_stats(family=FAMILIES[fam], states=mask, protocol=PROTOCOLS[proto]):
                        dport = msg["idiag_dport"]
                        dst = msg["idiag_dst"]
                        peerless = dport == 0 and dst in ("0.0.0.0", "::")
                        out.append(
                            (
                                proto,
                                fam,
                                msg["idiag_state"],
                                msg["idiag_src"],
                                msg["idiag_sport"],
                                None if peerless else dst,
                                None if peerless else dport,
                                msg["idiag_uid"],
                                msg["idiag_inode"],
                            )
                        )
        return out


_PSUTIL_STATES: dict[str, int] = {
    "ESTABLISHED": 1,
    "SYN_SENT": 2,
    "SYN_RECV": 3,
    "FIN_WAIT1": 4,
    "FIN_WAIT2": 5,
    "TIME_WAIT": 6,
    "CLOSE": 7,
    "CLOSE_WAIT": 8,
    "LAST_ACK": 9,
    "LISTEN": 10,
    "CLOSING": 11,
}


class PsutilBackend:
    """psutil.net_connections: no inode or uid, so rows get synthetic negative inodes and
    uid -1 (the holder's user is shown instead), and the pids come with the rows."""

    name: ClassVar[str] = "psutil"
    per_thread_netns: ClassVar[bool] = False

    def __init__(self) -> None:
        self._pids: dict[int, list[int]] = {}
        self._incomplete = False

    def dump(self, masks: dict[str, int], families: Sequence[str]) -> list[Row]:
        import psutil

        fams = {FAMILIES[f] for f in families}
        try:
            conns: list[Any] = list(psutil.net_connections(kind="inet"))
        except psutil.AccessDenied as exc:  # macOS without root
            raise SystemRefused("psutil cannot list sockets without root on this system") from exc
        self._incomplete = os.name == "posix" and os.geteuid() != 0
        merged: dict[tuple[object, ...], int] = {}
        out: list[Row] = []
        for c in conns:
            if int(c.family) not in fams:
                continue
            proto = "tcp" if c.type == socket.SOCK_STREAM else "udp"
            mask = masks.get(proto, 0)
            # psutil names TCP states like the kernel; UDP has "NONE": connected or not.
            state = _PSUTIL_STATES.get(c.status, 7) if proto == "tcp" else (1 if c.raddr else 7)
            if not (mask >> state) & 1:
                continue
            fam = "ipv4" if c.family == socket.AF_INET else "ipv6"
            raddr = c.raddr[0] if c.raddr else None
            rport = c.raddr[1] if c.raddr else None
            key = (proto, fam, state, c.laddr[0], c.laddr[1], raddr, rport)
            ino = merged.get(key)
            if ino is None:  # one row per socket even when several processes hold it
                ino = merged[key] = -(len(merged) + 1)
                out.append((proto, fam, state, c.laddr[0], c.laddr[1], raddr, rport, -1, ino))
            if c.pid is not None:
                lst = self._pids.setdefault(ino, [])
                if c.pid not in lst:
                    lst.append(c.pid)
        return out

    def owners(self, rows: Sequence[Row], inodes: Collection[int] | None) -> tuple[dict[int, list[int]], bool]:
        return {k: sorted(v) for k, v in self._pids.items()}, self._incomplete


def make_backend(name: str) -> SocketBackend:
    if name == "netlink":
        return NetlinkBackend()
    if name == "procfs":
        return ProcfsBackend()
    if name == "pyroute2":
        return Pyroute2Backend()
    if name == "psutil":
        return PsutilBackend()
    raise InputError(f"invalid socket backend {name!r}; valid backends are: {', '.join(BACKEND_NAMES)}")


_chosen: list[str] = []


def default_backend_name() -> str:
    """The backend for this OS, chosen once: netlink on Linux when the kernel allows it,
    else /proc/net, else psutil. ``PORTKIT_SOCKET_BACKEND`` overrides."""
    forced = os.environ.get("PORTKIT_SOCKET_BACKEND")
    if forced:
        return forced
    if _chosen:
        return _chosen[0]
    name = "psutil"
    if sys.platform.startswith("linux"):
        try:
            socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, sockdiag.NETLINK_SOCK_DIAG).close()
            name = "netlink"
        except OSError:  # no sock_diag netlink here: the next backend that works
            name = "procfs" if os.path.exists("/proc/net/tcp") else "psutil"
    _chosen.append(name)
    return name


def get_backend(name: str | None = None) -> SocketBackend:
    """A fresh backend object (psutil's keeps per-call state) of the chosen kind."""
    return make_backend(name or default_backend_name())
