"""The UDP half of the userspace forwarder: a session table, the way a NAT keeps one.

Theory of operation. A UDP "connection" is the client's ``address:port``. The first
datagram from a new client opens a :class:`Session` with its own upstream socket,
``connect()``-ed to the target, so replies come back on that socket and go out of the
listening socket to exactly that client (the target sees one distinct source port per
client, as behind a NAT). A session ends after ``idle_timeout`` seconds without traffic in
either direction; at most ``max_sessions`` exist, and datagrams that would open one more
are dropped and counted (logged once per second, not per datagram). Datagrams keep their
size: each ``recvfrom`` is one ``send``, up to 65,535 bytes.
"""

from __future__ import annotations

import errno
import functools
import socket
from collections.abc import Callable
from typing import Protocol

from portkit.engine.forwardspec import client_allowed
from portkit.model.forward import ForwardSpec

MAX_DATAGRAM = 65535
BATCH = 64
LISTENER_BUFFER = 4 << 20  # a burst of 64 full-size datagrams from many clients fits
SESSION_BUFFER = 1 << 20


def grow_buffer(sock: socket.socket, size: int) -> None:
    """Receive buffer of ``size``: past net.core.rmem_max when root (SO_RCVBUFFORCE)."""
    force = getattr(socket, "SO_RCVBUFFORCE", None)
    try:
        if force is not None:
            sock.setsockopt(socket.SOL_SOCKET, force, size)
            return
    except OSError:  # not root: the plain SO_RCVBUF below
        pass
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    except OSError:  # a smaller buffer only costs bursts
        pass


class Reactor(Protocol):
    """What a UDP forward needs from the event loop that runs it."""

    def add_reader(self, fd: int, handler: Callable[[int], None]) -> None: ...
    def remove(self, fd: int) -> None: ...
    def log(self, line: str) -> None: ...
    def now(self) -> float: ...


def fmt_addr(addr: tuple[str, int] | tuple[str, int, int, int]) -> str:
    host = addr[0]
    return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"


class Session:
    """One client's session; ``target`` is the target it was opened to (a reload that
    changes the forward's target leaves it there until it goes idle)."""

    __slots__ = ("bytes_down", "bytes_up", "client", "last", "pkts_down", "pkts_up", "sock", "started", "target")

    def __init__(self, client: tuple[str, int], sock: socket.socket, now: float, target: str = "") -> None:
        self.client = client
        self.sock = sock
        self.target = target
        self.started = now
        self.last = now
        self.bytes_up = self.bytes_down = self.pkts_up = self.pkts_down = 0


class UdpForward:
    """One UDP forward: a listening socket and its session table."""

    def __init__(
        self,
        spec: ForwardSpec,
        sock: socket.socket,
        target: tuple[int, tuple[str, int] | tuple[str, int, int, int]],
        reactor: Reactor,
        *,
        allow: tuple[object, ...],
        deny: tuple[object, ...],
        idle_timeout: float,
        max_sessions: int,
    ) -> None:
        self.spec = spec
        self.sock = sock
        self.family, self.target_addr = target
        self.reactor = reactor
        self.allow = allow
        self.deny = deny
        self.idle_timeout = idle_timeout
        self.max_sessions = max_sessions
        self.sessions: dict[tuple[str, int], Session] = {}
        self.dropped_full = 0
        self.refused = 0
        self.total = 0
        self._last_full_log = -1e9
        self.accepting = True
        self._buf = bytearray(MAX_DATAGRAM)
        grow_buffer(sock, LISTENER_BUFFER)
        reactor.add_reader(sock.fileno(), self._on_listener)

    def retarget(
        self,
        spec: ForwardSpec,
        target: tuple[int, tuple[str, int] | tuple[str, int, int, int]],
        *,
        allow: tuple[object, ...],
        deny: tuple[object, ...],
        idle_timeout: float,
        max_sessions: int,
    ) -> None:
        """A reload changed this forward: sessions opened from now on use ``spec`` and
        ``target``. Live sessions keep their upstream socket, connected to the old target,
        until they go idle."""
        self.spec = spec
        self.family, self.target_addr = target
        self.allow, self.deny = allow, deny
        self.idle_timeout = idle_timeout
        self.max_sessions = max_sessions

    # -- datagrams from clients ------------------------------------------------------------
    def _on_listener(self, _events: int) -> None:
        sock = self.sock
        buf = self._buf
        for _ in range(BATCH):
            try:
                n, addr = sock.recvfrom_into(buf)
            except BlockingIOError:
                return
            except OSError:
                continue  # e.g. ICMP error queued on the socket: not fatal for a listener
            key = (addr[0], addr[1])
            sess = self.sessions.get(key)
            if sess is None:
                sess = self._open(key)
                if sess is None:
                    continue
            sess.last = self.reactor.now()
            try:
                sess.sock.send(buf[:n])
                sess.bytes_up += n
                sess.pkts_up += 1
            except OSError:
                pass  # upstream refused (ICMP port unreachable) or full: UDP may drop

    def _open(self, key: tuple[str, int]) -> Session | None:
        now = self.reactor.now()
        if not self.accepting:
            return None
        if not client_allowed(key[0], self.allow, self.deny):  # type: ignore[arg-type]
            self.refused += 1
            self.reactor.log(f"udp {fmt_addr(key)} -> {self.spec.target}: refused by --allow/--deny")
            return None
        if len(self.sessions) >= self.max_sessions:
            self.dropped_full += 1
            if now - self._last_full_log >= 1.0:
                self._last_full_log = now
                self.reactor.log(
                    f"udp {self.spec.listen}: session table full ({self.max_sessions}); "
                    f"dropping datagrams from new clients ({self.dropped_full} so far)"
                )
            return None
        try:
            up = socket.socket(self.family, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
        except OSError as exc:  # logged: this client is dropped, the forward goes on
            self.reactor.log(f"udp {fmt_addr(key)}: cannot open upstream socket: {exc.strerror}")
            return None
        grow_buffer(up, SESSION_BUFFER)
        try:
            up.connect(self.target_addr)
        except OSError as exc:  # logged: this client is dropped, the forward goes on
            up.close()
            self.reactor.log(f"udp {fmt_addr(key)} -> {self.spec.target}: {exc.strerror}")
            return None
        sess = Session(key, up, now, self.spec.target)
        self.sessions[key] = sess
        self.total += 1
        self.reactor.add_reader(up.fileno(), functools.partial(self._on_upstream, sess))
        return sess

    # -- datagrams from the target ---------------------------------------------------------
    def _on_upstream(self, sess: Session, _events: int) -> None:
        buf = self._buf
        for _ in range(BATCH):
            try:
                n = sess.sock.recv_into(buf)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.ECONNREFUSED:
                    continue  # the target's port is closed right now; keep the session
                return
            sess.last = self.reactor.now()
            try:
                self.sock.sendto(buf[:n], sess.client)
                sess.bytes_down += n
                sess.pkts_down += 1
            except OSError:  # a datagram lost, as UDP may lose it
                pass

    # -- housekeeping ----------------------------------------------------------------------
    def sweep(self, now: float, *, force: bool = False) -> None:
        """End sessions idle for ``idle_timeout`` (or all of them when ``force``).

        While draining, a session quiet for a second is done: UDP has no close to wait for.
        """
        idle = self.idle_timeout if self.accepting else min(self.idle_timeout, 1.0)
        expired = [s for s in self.sessions.values() if force or now - s.last >= idle]
        for s in expired:
            self._end(s, now, "idle" if not force else "stopped")

    def _end(self, s: Session, now: float, why: str) -> None:
        del self.sessions[s.client]
        self.reactor.remove(s.sock.fileno())
        s.sock.close()
        self.reactor.log(
            f"udp {fmt_addr(s.client)} -> {s.target}: {s.bytes_up} B up ({s.pkts_up} datagrams), "
            f"{s.bytes_down} B down ({s.pkts_down} datagrams), {now - s.started:.3f} s ({why})"
        )

    def stop_accepting(self) -> None:
        """Draining: no new sessions; replies to open ones still go out of the listener."""
        self.accepting = False

    def close(self, now: float) -> None:
        self.accepting = False
        self.sweep(now, force=True)
        if self.sock.fileno() >= 0:
            self.reactor.remove(self.sock.fileno())
            self.sock.close()
