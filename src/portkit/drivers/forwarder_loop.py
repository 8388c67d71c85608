"""One event loop of the userspace forwarder (a worker): accept, connect, relay, time out.

Theory of operation. A worker owns an ``epoll`` object, the relays it accepted and its own
pipe pool. Worker 0 owns the listeners: it accepts, checks allow/deny and the
open-files budget, and hands each connection to the least-loaded worker (itself included)
through that worker's command queue; the connect and the relay then happen there. (One
``SO_REUSEPORT`` listener per worker was tried first: the kernel's hash split 9 connections
3/6 or worse in 25 of 40 trials, so busy streams piled up on one loop.) UDP forwards
live in worker 0 only, so one session table sees all of a client's datagrams.

Relay sockets are registered once, edge-triggered (see forwarder_tcp); listeners and UDP
sockets are level-triggered. A relay whose splice read returns ``coord.bulk_read`` bytes or
more is handed, budget permitting, to two blocking threads (forwarder_bulk): unregistered
here, and ended here (log line, counters, pipes) once both threads are done. Other
threads talk to a worker only through :meth:`call_soon` (a queue plus a wake-up byte), so
no lock is ever held around the hot path.
"""

from __future__ import annotations

import collections
import errno
import functools
import os
import select
import socket
import time
from collections.abc import Callable
from typing import Protocol

from portkit.drivers.forwarder_bulk import BulkRelay, ThreadBudget
from portkit.drivers.forwarder_tcp import PipePool, Relay, RelayError
from portkit.drivers.udpforward import UdpForward, fmt_addr
from portkit.engine.forwardspec import Network, client_allowed, parse_cidrs
from portkit.model.forward import ForwardOptions, ForwardSpec

SockAddr = tuple[str, int] | tuple[str, int, int, int]
Key = tuple[str, int, str]

_ET = select.EPOLLET
_RDHUP = select.EPOLLRDHUP
_IN_MASK = select.EPOLLIN | _RDHUP | select.EPOLLHUP | select.EPOLLERR
_OUT_MASK = select.EPOLLOUT | select.EPOLLHUP | select.EPOLLERR
_RELAY_MASK = select.EPOLLIN | select.EPOLLOUT | _RDHUP | _ET
_ACCEPT_BATCH = 128
FD_RESERVE = 64  # files kept free for logs, config reloads, wake-up pipes


class Coordinator(Protocol):
    """What a worker needs from the process that owns all workers (drivers.forwarder.Forwarder).

    A Protocol, so this module does not import the coordinator that imports it.
    """

    @property
    def options(self) -> ForwardOptions: ...
    @property
    def use_splice(self) -> bool: ...
    @property
    def max_open_files(self) -> int: ...
    @property
    def bulk_budget(self) -> ThreadBudget | None: ...
    @property
    def bulk_read(self) -> int: ...
    def log(self, line: str) -> None: ...
    def open_files(self) -> int: ...
    def pick_worker(self) -> Worker: ...


class TcpListener:
    __slots__ = ("allow", "deny", "family", "sock", "spec", "target")

    def __init__(self, spec: ForwardSpec, sock: socket.socket, target: tuple[int, SockAddr]) -> None:
        self.spec = spec
        self.sock = sock
        self.family, self.target = target
        self.allow: tuple[Network, ...] = parse_cidrs(spec.allow)
        self.deny: tuple[Network, ...] = parse_cidrs(spec.deny)


class Worker:
    """One epoll loop. Counters are per worker; the coordinator sums them."""

    def __init__(self, coord: Coordinator, index: int, pipe_budget: int) -> None:
        self.coord = coord
        self.index = index
        self.pool = PipePool(size=coord.options.pipe_size, max_pipes=pipe_budget)
        self.ep = select.epoll()
        self.handlers: dict[int, Callable[[int], None]] = {}
        self.relays: dict[int, Relay] = {}
        self.connecting: set[Relay] = set()
        self.tcp: dict[Key, TcpListener] = {}
        self.udp: dict[Key, UdpForward] = {}
        self.paused: list[TcpListener] = []
        self.paused_until = 0.0
        self.open_files = 0
        self.accepted = self.active = self.failed = self.refused = 0
        self.bytes_up = self.bytes_down = 0
        self.handed = self.adopted = 0  # connections handed over by worker 0 / taken over
        self.bulk: set[BulkRelay] = set()  # relays moved by threads (forwarder_bulk)
        self.bulk_started = 0
        self.draining_until: float | None = None
        self._shut = False
        self._commands: collections.deque[Callable[[], None]] = collections.deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.handlers[self._wake_r.fileno()] = self._on_wake
        self.ep.register(self._wake_r.fileno(), select.EPOLLIN)

    # -- cross-thread ----------------------------------------------------------------------
    def call_soon(self, fn: Callable[[], None]) -> None:
        self._commands.append(fn)
        self.poke()

    def poke(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:  # the wake-up pipe is full: the loop wakes anyway
            pass

    def _on_wake(self, _ev: int) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass

    # -- the Reactor protocol used by UDP forwards ----------------------------------------
    def add_reader(self, fd: int, handler: Callable[[int], None]) -> None:
        self.handlers[fd] = handler
        self.ep.register(fd, select.EPOLLIN)

    def remove(self, fd: int) -> None:
        if self.handlers.pop(fd, None) is not None:
            try:
                self.ep.unregister(fd)
            except OSError:  # closed already: epoll forgot it itself
                pass

    def log(self, line: str) -> None:
        self.coord.log(line)

    def now(self) -> float:
        return time.monotonic()

    # -- listeners -------------------------------------------------------------------------
    def add_tcp(self, lst: TcpListener) -> None:
        self.tcp[lst.spec.key] = lst
        self.handlers[lst.sock.fileno()] = functools.partial(self._accept, lst)
        self.ep.register(lst.sock.fileno(), select.EPOLLIN)

    def add_udp(self, spec: ForwardSpec, sock: socket.socket, target: tuple[int, SockAddr]) -> None:
        opts = self.coord.options
        self.udp[spec.key] = UdpForward(
            spec,
            sock,
            target,
            self,
            allow=tuple(parse_cidrs(spec.allow)),
            deny=tuple(parse_cidrs(spec.deny)),
            idle_timeout=opts.udp_idle_timeout,
            max_sessions=opts.udp_max_sessions,
        )

    def update_tcp(self, spec: ForwardSpec, target: tuple[int, SockAddr]) -> None:
        lst = self.tcp.get(spec.key)
        if lst is not None:
            lst.spec = spec
            lst.family, lst.target = target
            lst.allow, lst.deny = parse_cidrs(spec.allow), parse_cidrs(spec.deny)

    def update_udp(self, spec: ForwardSpec, target: tuple[int, SockAddr]) -> None:
        """New sessions of the UDP forward ``spec.key`` go to ``target``; live ones keep theirs."""
        u = self.udp.get(spec.key)
        if u is not None:
            opts = self.coord.options
            u.retarget(
                spec,
                target,
                allow=tuple(parse_cidrs(spec.allow)),
                deny=tuple(parse_cidrs(spec.deny)),
                idle_timeout=opts.udp_idle_timeout,
                max_sessions=opts.udp_max_sessions,
            )

    def close_listener(self, key: Key) -> None:
        lst = self.tcp.pop(key, None)
        if lst is not None:
            self.remove(lst.sock.fileno())
            if lst in self.paused:
                self.paused.remove(lst)
            lst.sock.close()
        u = self.udp.pop(key, None)
        if u is not None:
            u.close(time.monotonic())

    # -- accepting and connecting ----------------------------------------------------------
    def _accept(self, lst: TcpListener, _events: int = 0) -> None:
        now = time.monotonic()
        coord = self.coord
        for _ in range(_ACCEPT_BATCH):
            try:
                sock, addr = lst.sock.accept()
            except BlockingIOError:
                return
            except OSError as exc:  # out of descriptors pauses the listener; a client that left is dropped
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._pause(lst, now, exc)
                return
            client = fmt_addr(addr)
            if (lst.allow or lst.deny) and not client_allowed(addr[0], lst.allow, lst.deny):
                sock.close()
                self.refused += 1
                self.log(f"tcp {client} -> {lst.spec.listen}: refused by --allow/--deny, closed")
                continue
            if coord.open_files() + 2 + FD_RESERVE > coord.max_open_files:
                sock.close()
                self.failed += 1
                self.log(
                    f"tcp {client}: refused, {coord.open_files()} files open of the limit of {coord.max_open_files}"
                )
                continue
            target = coord.pick_worker()
            if target is self:
                self._connect(lst, sock, client, now)
            else:
                target.handed += 1  # written by this (the accepting) thread only
                target.call_soon(functools.partial(target.adopt, lst, sock, client))

    def adopt(self, lst: TcpListener, sock: socket.socket, client: str) -> None:
        """Take over a connection the accepting worker handed to this one."""
        self.adopted += 1
        self._connect(lst, sock, client, time.monotonic())

    @property
    def load(self) -> int:
        """Connections this worker has or is about to get."""
        return self.active + self.handed - self.adopted

    def _pause(self, lst: TcpListener, now: float, exc: OSError) -> None:
        self.log(f"tcp {lst.spec.listen}: cannot accept ({exc.strerror}); pausing this listener for 0.5 s")
        self.ep.unregister(lst.sock.fileno())
        self.paused.append(lst)
        self.paused_until = now + 0.5

    def _connect(self, lst: TcpListener, sock: socket.socket, client: str, now: float) -> None:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            up = socket.socket(lst.family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        except OSError as exc:  # counted and logged: one client fails, the forward goes on
            sock.close()
            self.failed += 1
            self.log(
                f"tcp {client} -> {lst.spec.target}: cannot open a socket ({exc.strerror}), client closed"
            )
            return
        up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = up.connect_ex(lst.target)
        if err not in (0, errno.EINPROGRESS):
            up.close()
            sock.close()
            self.failed += 1
            self.log(f"tcp {client} -> {lst.spec.target}: target down ({os.strerror(err)}), client closed")
            return
        deadline = now + self.coord.options.connect_timeout
        r = Relay(lst.spec, sock, client, up, self.pool, self.coord.use_splice, now, deadline)
        self.accepted += 1
        self.active += 1
        self.open_files += 2
        self.relays[r.client.fd] = r
        self.relays[r.upstream.fd] = r
        self.ep.register(r.client.fd, _RELAY_MASK)
        self.ep.register(r.upstream.fd, _RELAY_MASK)
        self.connecting.add(r)

    def _on_relay(self, r: Relay, fd: int, ev: int) -> None:
        end = r.client if fd == r.client.fd else r.upstream
        if ev & _IN_MASK:
            end.readable = True
        if ev & _OUT_MASK:
            end.writable = True
        if r.connecting:
            if end is not r.upstream or not ev & _OUT_MASK:
                return
            err = r.finish_connect()
            self.connecting.discard(r)
            if err:
                self._fail(r, os.strerror(err))
                return
        try:
            done = r.pump()
        except RelayError as exc:
            self._end(r, f"ended: {exc}", reset=True)
            return
        if done:
            self._end(r, "closed")
        elif (r.up.burst or r.down.burst) and max(r.up.burst, r.down.burst) >= self.coord.bulk_read:
            self._to_threads(r)

    def _to_threads(self, r: Relay) -> None:
        """Hand a bulk relay to two blocking splice threads, if the budget allows."""
        r.up.burst = r.down.burst = 0
        if r.up.pending or r.down.pending or r.up.buf is not None or r.down.buf is not None:
            return  # bytes wait in a pipe or buffer: try again after the next large read
        budget = self.coord.bulk_budget
        if budget is None or not budget.take(2):
            return
        halves = [h for h in (r.up, r.down) if not h.eof]
        for h in halves:
            h.pipe = self.pool.get()
        if any(h.pipe is None for h in halves):
            for h in halves:
                h.release()
            budget.give(2)
            return
        self.relays.pop(r.client.fd, None)
        self.relays.pop(r.upstream.fd, None)
        self.ep.unregister(r.client.fd)
        self.ep.unregister(r.upstream.fd)
        b = BulkRelay(r, self.pool.size or 65536, self.call_soon, self._bulk_done)
        self.bulk.add(b)
        self.bulk_started += 1
        b.start()

    def _bulk_done(self, b: BulkRelay) -> None:
        """Both threads of ``b`` have ended (runs in this worker's thread)."""
        if b not in self.bulk:
            return  # already ended by shutdown()
        self.bulk.discard(b)
        assert self.coord.bulk_budget is not None
        self.coord.bulk_budget.give(2)
        r = b.relay
        if b.error is None:
            for h in (r.up, r.down):
                h.release()  # empty pipes go back to the pool
            self._end(r, "closed")
        else:
            self._end(r, f"ended: {b.error}", reset=True)

    def _fail(self, r: Relay, why: str) -> None:
        self.failed += 1
        self._end(r, None, failed=why)

    def _end(self, r: Relay, how: str | None, *, failed: str | None = None, reset: bool = False) -> None:
        self.relays.pop(r.client.fd, None)
        self.relays.pop(r.upstream.fd, None)
        self.connecting.discard(r)
        self.open_files -= 2
        self.active -= 1
        self.bytes_up += r.up.nbytes
        self.bytes_down += r.down.nbytes
        r.close(reset=reset)
        spec = r.forward
        if failed is not None:
            self.log(f"tcp {r.peer} -> {spec.target}: target down ({failed}), client closed")
            return
        dur = time.monotonic() - r.started
        self.log(
            f"tcp {r.peer} -> {spec.target}: {r.up.nbytes} B up, {r.down.nbytes} B down, {dur:.3f} s ({how})"
        )

    def live_bytes(self) -> tuple[int, int]:
        live = [*{id(r): r for r in list(self.relays.values())}.values(), *(b.relay for b in list(self.bulk))]
        return sum(r.up.nbytes for r in live), sum(r.down.nbytes for r in live)

    # -- stopping --------------------------------------------------------------------------
    def begin_drain(self, seconds: float) -> None:
        self.draining_until = time.monotonic() + seconds
        for key in list(self.tcp):
            self.close_listener(key)
        for u in self.udp.values():
            u.stop_accepting()

    def open_connections(self) -> int:
        return self.active + sum(len(u.sessions) for u in self.udp.values())

    def _drained(self, now: float) -> bool:
        assert self.draining_until is not None
        if not self.relays and not self.bulk and not any(u.sessions for u in self.udp.values()):
            return True
        if now >= self.draining_until:
            left = len({id(r) for r in self.relays.values()}) + len(self.bulk)
            if left:
                self.log(f"drain time over: closing {left} connections still open")
            return True
        return False

    # -- the loop --------------------------------------------------------------------------
    def run(self, tick: Callable[[float], None] | None = None) -> None:
        """Serve until drained. ``tick(now)`` runs after every wake-up (worker 0: signals, stats)."""
        ep = self.ep
        relays = self.relays
        handlers = self.handlers
        on_relay = self._on_relay
        commands = self._commands
        next_sweep = time.monotonic() + 1.0
        try:
            while True:
                timeout = -1.0
                if self.connecting or self.udp or self.paused or tick is not None:
                    timeout = 0.25
                if self.draining_until is not None:
                    timeout = 0.1
                for fd, ev in ep.poll(timeout, 1024):
                    r = relays.get(fd)
                    if r is not None:
                        on_relay(r, fd, ev)
                    else:
                        h = handlers.get(fd)
                        if h is not None:
                            h(ev)
                while commands:
                    commands.popleft()()
                now = time.monotonic()
                if tick is not None:
                    tick(now)
                if self.connecting:
                    limit = self.coord.options.connect_timeout
                    for r in [r for r in self.connecting if now >= r.deadline]:
                        self._fail(r, f"no answer within {limit:g} s")
                if self.paused and now >= self.paused_until:
                    for lst in self.paused:
                        ep.register(lst.sock.fileno(), select.EPOLLIN)
                    self.paused.clear()
                if now >= next_sweep:
                    next_sweep = now + (1.0 if self.draining_until is None else 0.2)
                    for u in self.udp.values():
                        u.sweep(now)
                if self.draining_until is not None and self._drained(now):
                    break
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        if self._shut:
            return
        self._shut = True
        for r in list({id(r): r for r in self.relays.values()}.values()):
            self._end(r, "stopped", reset=True)
        bulk, self.bulk = list(self.bulk), set()
        for b in bulk:
            b.abort()
        for b in bulk:
            b.join(2.0)
            if self.coord.bulk_budget is not None:
                self.coord.bulk_budget.give(2)
            self._end(b.relay, "stopped", reset=True)
        for key in list(self.tcp) + list(self.udp):
            self.close_listener(key)
        self.pool.close()
        self.ep.close()
        self._wake_r.close()
        self._wake_w.close()
