"""The userspace forwarder: listeners, the event loop, signals, statistics.

Theory of operation. One thread runs one ``epoll`` loop for every forward of the process
(TCP and UDP). Measured on 2 cores shared with iperf3, a single edge-triggered loop that
splices is faster than threads or asyncio (bench/RESULTS.md, ``## forward``): each wake-up
costs a Python round trip, and here there is no second idle core to win back.

Start-up is all-or-nothing: every target is resolved and every listener bound before any
is served, so an address in use or a name that does not resolve leaves nothing
half-started. Stopping (SIGTERM, :meth:`Forwarder.request_stop`) closes the listeners at
once and lets open connections finish for up to ``drain`` seconds. Reloading (SIGHUP,
:meth:`Forwarder.request_reload`) re-reads the configuration and adds, changes or removes
listeners without touching connections already relayed.

Timers (connect timeouts, UDP idle sweeps, the drain deadline, ``--stats``) are checked
after each wake-up; ``epoll.poll`` sleeps no longer than the nearest one.
"""

from __future__ import annotations

import errno
import functools
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from portkit.drivers.forwarder_tcp import HAS_SPLICE, PipePool, Relay, RelayError
from portkit.drivers.udpforward import UdpForward, fmt_addr
from portkit.engine.forwardspec import Network, client_allowed, parse_cidrs
from portkit.errors import InputError, ResolveError, SystemRefused, map_os_error
from portkit.model.forward import ForwardOptions, ForwardSpec

SockAddr = tuple[str, int] | tuple[str, int, int, int]
Resolver = Callable[[str, int, int], list[tuple[int, SockAddr]]]
Logger = Callable[[str], None]
WhoHolds = Callable[[str, int, str], str | None]

_ET = select.EPOLLET if hasattr(select, "EPOLLET") else 0
_RDHUP = getattr(select, "EPOLLRDHUP", 0x2000)
_IN_MASK = select.EPOLLIN | _RDHUP | select.EPOLLHUP | select.EPOLLERR
_OUT_MASK = select.EPOLLOUT | select.EPOLLHUP | select.EPOLLERR
_ACCEPT_BATCH = 128
FD_RESERVE = 64  # files kept free for logs, config reloads, the wake-up pipe


def default_resolver(host: str, port: int, proto: int) -> list[tuple[int, SockAddr]]:
    """getaddrinfo -> [(family, sockaddr)]; raises ResolveError."""
    try:
        infos = socket.getaddrinfo(host, port, type=proto)
    except socket.gaierror as exc:
        raise ResolveError(host, exc.strerror) from None
    return [(fam, addr) for fam, _t, _p, _c, addr in infos]  # type: ignore[misc]


@dataclass(slots=True)
class Counters:
    """Live counters of one forwarder process (``--stats``)."""

    accepted: int = 0
    active: int = 0
    failed: int = 0
    refused: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    udp_sessions: int = 0
    started: float = field(default_factory=time.monotonic)

    def line(self, pipes: int, udp_active: int) -> str:
        return (
            f"stats: {self.active} open, {self.accepted} accepted, {self.failed} failed, "
            f"{self.refused} refused, {_human(self.bytes_up)} up, {_human(self.bytes_down)} down, "
            f"{udp_active} udp sessions, {pipes} pipes in use"
        )


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


class _TcpListener:
    __slots__ = ("allow", "deny", "family", "sock", "spec", "target")

    def __init__(self, spec: ForwardSpec, sock: socket.socket, target: tuple[int, SockAddr]) -> None:
        self.spec = spec
        self.sock = sock
        self.family, self.target = target
        self.allow: tuple[Network, ...] = parse_cidrs(spec.allow)
        self.deny: tuple[Network, ...] = parse_cidrs(spec.deny)


def _bind(spec: ForwardSpec, who_holds: WhoHolds | None) -> socket.socket:
    kind = socket.SOCK_STREAM if spec.proto == "tcp" else socket.SOCK_DGRAM
    family = socket.AF_INET6 if ":" in spec.bind else socket.AF_INET
    sock = socket.socket(family, kind | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((spec.bind, spec.listen_port))
        if kind == socket.SOCK_STREAM:
            sock.listen(4096)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            holder = who_holds(spec.bind, spec.listen_port, spec.proto) if who_holds else None
            by = f" by {holder}" if holder else ""
            raise InputError(
                f"cannot listen on {spec.listen}/{spec.proto}: address already in use{by}",
                hint=f"see 'portkit who {spec.listen_port}', or pick another listen port",
            ) from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise InputError(
                f"cannot listen on {spec.listen}: no interface of this host has {spec.bind}"
            ) from None
        raise map_os_error(exc, f"cannot listen on {spec.listen}/{spec.proto}") from None
    return sock


class Forwarder:
    """Many forwards, one process, one loop. Use :meth:`start` then :meth:`run`."""

    def __init__(
        self,
        specs: Sequence[ForwardSpec],
        options: ForwardOptions | None = None,
        *,
        log: Logger | None = None,
        resolver: Resolver | None = None,
        who_holds: WhoHolds | None = None,
        use_splice: bool | None = None,
        stats_interval: float | None = None,
        stats_out: Logger | None = None,
        reload_source: Callable[[], tuple[Sequence[ForwardSpec], ForwardOptions]] | None = None,
        max_open_files: int | None = None,
    ) -> None:
        self.specs = tuple(specs)
        self.options = options or ForwardOptions()
        self._log = log or (lambda line: None)
        self.resolver = resolver or default_resolver
        self.who_holds = who_holds
        self.use_splice = HAS_SPLICE if use_splice is None else (use_splice and HAS_SPLICE)
        self.stats_interval = stats_interval
        self.stats_out = stats_out or self._log
        self.reload_source = reload_source
        self.counters = Counters()
        limit = max_open_files or _nofile_limit()
        self.max_open_files = limit
        self.pool = PipePool(size=self.options.pipe_size, max_pipes=max(0, (limit - FD_RESERVE) // 4))
        self._ep = select.epoll()
        self._handlers: dict[int, Callable[[int], None]] = {}
        self._relays: dict[int, Relay] = {}
        self._connecting: set[Relay] = set()
        self._tcp: dict[tuple[str, int, str], _TcpListener] = {}
        self._udp: dict[tuple[str, int, str], UdpForward] = {}
        self._paused: list[_TcpListener] = []
        self._paused_until = 0.0
        self._open_files = 0
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._handlers[self._wake_r.fileno()] = self._on_wake
        self._ep.register(self._wake_r.fileno(), select.EPOLLIN)
        self._stop_requested = False
        self._reload_requested = False
        self._draining_until: float | None = None
        self._done = threading.Event()
        self.started = threading.Event()

    # -- the Reactor protocol used by UDP forwards ----------------------------------------
    def add_reader(self, fd: int, handler: Callable[[int], None]) -> None:
        self._handlers[fd] = handler
        self._ep.register(fd, select.EPOLLIN)

    def remove(self, fd: int) -> None:
        if self._handlers.pop(fd, None) is not None:
            try:
                self._ep.unregister(fd)
            except OSError:
                pass

    def log(self, line: str) -> None:
        self._log(line)

    def now(self) -> float:
        return time.monotonic()

    # -- start-up --------------------------------------------------------------------------
    def _resolve(self, spec: ForwardSpec) -> tuple[int, SockAddr]:
        kind = socket.SOCK_STREAM if spec.proto == "tcp" else socket.SOCK_DGRAM
        found = self.resolver(spec.target_host, spec.target_port, kind)
        if not found:
            raise ResolveError(spec.target_host, "no address")
        return found[0]

    def _open_all(
        self, specs: Sequence[ForwardSpec]
    ) -> list[tuple[ForwardSpec, socket.socket, tuple[int, SockAddr]]]:
        """Resolve every target, then bind every listener; on any failure close them all."""
        targets = [self._resolve(s) for s in specs]
        opened: list[tuple[ForwardSpec, socket.socket, tuple[int, SockAddr]]] = []
        try:
            for spec, target in zip(specs, targets, strict=True):
                opened.append((spec, _bind(spec, self.who_holds), target))
        except BaseException:
            for _s, sock, _t in opened:
                sock.close()
            raise
        return opened

    def start(self) -> None:
        """Resolve targets and bind every listener (all or nothing); raise PortkitError."""
        if not self.specs:
            raise InputError("no forwards given; pass a SPEC such as 8080:127.0.0.1:80 or --config FILE")
        try:
            opened = self._open_all(self.specs)
        except BaseException:
            self._shutdown()
            raise
        for spec, sock, target in opened:
            self._serve(spec, sock, target)

    def _serve(self, spec: ForwardSpec, sock: socket.socket, target: tuple[int, SockAddr]) -> None:
        if spec.proto == "tcp":
            lst = _TcpListener(spec, sock, target)
            self._tcp[spec.key] = lst
            self._handlers[sock.fileno()] = functools.partial(self._accept, lst)
            self._ep.register(sock.fileno(), select.EPOLLIN)
        else:
            self._udp[spec.key] = UdpForward(
                spec,
                sock,
                target,
                self,
                allow=tuple(parse_cidrs(spec.allow)),
                deny=tuple(parse_cidrs(spec.deny)),
                idle_timeout=self.options.udp_idle_timeout,
                max_sessions=self.options.udp_max_sessions,
            )
        self._log(f"forwarding {spec.listen}/{spec.proto} -> {spec.target}")

    @property
    def addresses(self) -> dict[tuple[str, int, str], SockAddr]:
        """Bound listener addresses (useful with listen port 0 in tests)."""
        out: dict[tuple[str, int, str], SockAddr] = {}
        for key, lst in self._tcp.items():
            out[key] = lst.sock.getsockname()
        for key, u in self._udp.items():
            out[key] = u.sock.getsockname()
        return out

    # -- thread-safe requests --------------------------------------------------------------
    def request_stop(self) -> None:
        self._stop_requested = True
        self._poke()

    def request_reload(self) -> None:
        self._reload_requested = True
        self._poke()

    def _poke(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT drain and stop, SIGHUP reloads (main thread only)."""
        signal.signal(signal.SIGTERM, lambda *_: self.request_stop())
        signal.signal(signal.SIGINT, lambda *_: self.request_stop())
        signal.signal(signal.SIGHUP, lambda *_: self.request_reload())

    def _on_wake(self, _ev: int) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass

    # -- accepting and connecting ----------------------------------------------------------
    def _accept(self, lst: _TcpListener, _events: int = 0) -> None:
        now = time.monotonic()
        for _ in range(_ACCEPT_BATCH):
            try:
                sock, addr = lst.sock.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._pause(lst, now, exc)
                return
            client = fmt_addr(addr)
            if (lst.allow or lst.deny) and not client_allowed(addr[0], lst.allow, lst.deny):
                sock.close()
                self.counters.refused += 1
                self._log(f"tcp {client} -> {lst.spec.listen}: refused by --allow/--deny, closed")
                continue
            if self._open_files + 2 + FD_RESERVE > self.max_open_files:
                sock.close()
                self.counters.failed += 1
                self._log(
                    f"tcp {client}: refused, {self._open_files} files open of the limit of {self.max_open_files}"
                )
                continue
            self._connect(lst, sock, client, now)

    def _pause(self, lst: _TcpListener, now: float, exc: OSError) -> None:
        self._log(f"tcp {lst.spec.listen}: cannot accept ({exc.strerror}); pausing this listener for 0.5 s")
        self._ep.unregister(lst.sock.fileno())
        self._paused.append(lst)
        self._paused_until = now + 0.5

    def _connect(self, lst: _TcpListener, sock: socket.socket, client: str, now: float) -> None:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            up = socket.socket(lst.family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        except OSError as exc:
            sock.close()
            self.counters.failed += 1
            self._log(
                f"tcp {client} -> {lst.spec.target}: cannot open a socket ({exc.strerror}), client closed"
            )
            return
        up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = up.connect_ex(lst.target)
        if err not in (0, errno.EINPROGRESS):
            up.close()
            sock.close()
            self.counters.failed += 1
            self._log(f"tcp {client} -> {lst.spec.target}: target down ({os.strerror(err)}), client closed")
            return
        r = Relay(
            lst.spec, sock, client, up, self.pool, self.use_splice, now, now + self.options.connect_timeout
        )
        self.counters.accepted += 1
        self.counters.active += 1
        self._open_files += 2
        self._relays[r.client.fd] = r
        self._relays[r.upstream.fd] = r
        mask = select.EPOLLIN | select.EPOLLOUT | _RDHUP | _ET
        self._ep.register(r.client.fd, mask)
        self._ep.register(r.upstream.fd, mask)
        self._connecting.add(r)

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
            self._connecting.discard(r)
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

    def _fail(self, r: Relay, why: str) -> None:
        self.counters.failed += 1
        self._end(r, None, failed=why)

    def _end(self, r: Relay, how: str | None, *, failed: str | None = None, reset: bool = False) -> None:
        self._relays.pop(r.client.fd, None)
        self._relays.pop(r.upstream.fd, None)
        self._connecting.discard(r)
        self._open_files -= 2
        self.counters.active -= 1
        self.counters.bytes_up += r.up.nbytes
        self.counters.bytes_down += r.down.nbytes
        r.close(reset=reset)
        spec = r.forward
        if failed is not None:
            self._log(f"tcp {r.peer} -> {spec.target}: target down ({failed}), client closed")
            return
        dur = time.monotonic() - r.started
        self._log(
            f"tcp {r.peer} -> {spec.target}: {r.up.nbytes} B up, {r.down.nbytes} B down, {dur:.3f} s ({how})"
        )

    # -- reload ----------------------------------------------------------------------------
    def _reload(self) -> None:
        if self.reload_source is None:
            self._log("reload: no --config file to re-read; nothing changed")
            return
        try:
            specs, options = self.reload_source()
            new = {s.key: s for s in specs}
            added = [s for k, s in new.items() if k not in self._tcp and k not in self._udp]
            opened = self._open_all(added)
        except Exception as exc:  # keep serving the old configuration
            self._log(f"reload failed, keeping the running configuration: {exc}")
            return
        self.options = options
        for key in [k for k in (*self._tcp, *self._udp) if k not in new]:
            self._close_listener(key)
        for key, spec in new.items():
            if key in self._tcp and self._tcp[key].spec != spec:
                old = self._tcp[key]
                old.spec = spec
                old.family, old.target = self._resolve(spec)
                old.allow, old.deny = parse_cidrs(spec.allow), parse_cidrs(spec.deny)
                self._log(f"reload: {spec.listen}/tcp now -> {spec.target}")
            elif key in self._udp and self._udp[key].spec != spec:
                self._close_listener(key)
                opened += self._open_all([spec])
        for spec, sock, target in opened:
            self._serve(spec, sock, target)
        self.specs = tuple(new.values())
        self._log(f"reloaded: {len(self.specs)} forwards")

    def _close_listener(self, key: tuple[str, int, str]) -> None:
        lst = self._tcp.pop(key, None)
        if lst is not None:
            self.remove(lst.sock.fileno())
            if lst in self._paused:
                self._paused.remove(lst)
            lst.sock.close()
            self._log(f"stopped forwarding {lst.spec.listen}/tcp")
        u = self._udp.pop(key, None)
        if u is not None:
            u.close(time.monotonic())
            self._log(f"stopped forwarding {u.spec.listen}/udp")

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> None:
        """Serve until stopped and drained. Call :meth:`start` first."""
        ep = self._ep
        relays = self._relays
        handlers = self._handlers
        on_relay = self._on_relay
        next_stats = time.monotonic() + (self.stats_interval or 0)
        next_sweep = time.monotonic() + 1.0
        self.started.set()
        try:
            while True:
                timeout = -1.0
                if self._connecting or self._udp or self._paused or self.stats_interval:
                    timeout = 0.25
                if self._draining_until is not None:
                    timeout = 0.1
                for fd, ev in ep.poll(timeout, 1024):
                    r = relays.get(fd)
                    if r is not None:
                        on_relay(r, fd, ev)
                    else:
                        h = handlers.get(fd)
                        if h is not None:
                            h(ev)
                if self._stop_requested and self._draining_until is None:
                    self._begin_drain()
                if self._reload_requested:
                    self._reload_requested = False
                    if self._draining_until is None:
                        self._reload()
                now = time.monotonic()
                if self._connecting:
                    for r in [r for r in self._connecting if now >= r.deadline]:
                        self._fail(r, f"no answer within {self.options.connect_timeout:g} s")
                if self._paused and now >= self._paused_until:
                    for lst in self._paused:
                        ep.register(lst.sock.fileno(), select.EPOLLIN)
                    self._paused.clear()
                if now >= next_sweep:
                    next_sweep = now + 1.0
                    for u in self._udp.values():
                        u.sweep(now)
                if self.stats_interval and now >= next_stats:
                    next_stats = now + self.stats_interval
                    self.stats_out(self.stats_line())
                if self._draining_until is not None and self._drained(now):
                    break
        finally:
            self._shutdown()

    def stats_line(self) -> str:
        """Counters including the bytes of connections still open (live, not only finished)."""
        udp_active = sum(len(u.sessions) for u in self._udp.values())
        live = {id(r): r for r in self._relays.values()}.values()
        c = self.counters
        snap = Counters(
            accepted=c.accepted,
            active=c.active,
            failed=c.failed,
            refused=c.refused + sum(u.refused for u in self._udp.values()),
            bytes_up=c.bytes_up + sum(r.up.nbytes for r in live),
            bytes_down=c.bytes_down + sum(r.down.nbytes for r in live),
            started=c.started,
        )
        return snap.line(self.pool.in_use, udp_active)

    def _begin_drain(self) -> None:
        now = time.monotonic()
        self._draining_until = now + self.options.drain
        for key in list(self._tcp):
            self._close_listener(key)
        for u in self._udp.values():
            u.stop_accepting()
        open_now = self.counters.active + sum(len(u.sessions) for u in self._udp.values())
        if open_now:
            self._log(f"stopping: draining {open_now} open connections for up to {self.options.drain:g} s")
        else:
            self._log("stopping: no open connections")

    def _drained(self, now: float) -> bool:
        assert self._draining_until is not None
        if not self._relays and not any(u.sessions for u in self._udp.values()):
            return True
        if now >= self._draining_until:
            left = len({id(r) for r in self._relays.values()})
            self._log(f"drain time over: closing {left} connections still open")
            return True
        return False

    def _shutdown(self) -> None:
        for r in list({id(r): r for r in self._relays.values()}.values()):
            self._end(r, "stopped", reset=True)
        for key in list(self._tcp) + list(self._udp):
            self._close_listener(key)
        self.pool.close()
        self._ep.close()
        self._wake_r.close()
        self._wake_w.close()
        self._done.set()

    def wait_closed(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)


def _nofile_limit() -> int:
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        return int(soft) if soft > 0 else 20000
    except (ImportError, ValueError, OSError):
        return 20000


def check_platform() -> None:
    if not hasattr(select, "epoll"):
        raise SystemRefused("the userspace forwarder needs Linux (epoll) in this version of portkit")
