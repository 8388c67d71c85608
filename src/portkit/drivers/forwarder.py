"""The userspace forwarder: start-up, workers, signals, reload, statistics.

Theory of operation. :class:`Forwarder` coordinates one or more :class:`Worker` event loops
(drivers/forwarder_loop.py), each an edge-triggered ``epoll`` loop that splices. With
``workers=N > 1`` each worker runs in its own thread: the bytes move inside ``splice`` with
the GIL released, so two loops use both cores. Worker 0 (the caller's thread) owns the
listeners and hands each accepted connection to the least-loaded worker. Measured on 2
cores shared with iperf3 and other load, 2 loops moved 8 parallel streams 25-30 % faster
than one when the machine was busy and about as fast when it was quiet (bench/RESULTS.md,
``## forward``). Worker 0 also handles stop/reload requests and ``--stats``. A bulk flow
(one splice read of 256 KiB or more) leaves its loop for two blocking splice threads
(drivers/forwarder_bulk.py); ``bulk_threads`` caps them for the whole process.

Start-up is all or nothing: every target is resolved and every listener bound before any
is served, so an address in use or a name that does not resolve leaves nothing
half-started. Stopping (SIGTERM, :meth:`request_stop`) closes the listeners at
once and lets open connections finish for up to ``drain`` seconds. Reloading (SIGHUP,
:meth:`request_reload`) re-reads the configuration and adds, changes or removes listeners,
whole or not at all, without touching connections already relayed or live UDP sessions.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from portkit.backends.host import resolve
from portkit.drivers.forwarder_bulk import BULK_READ, ThreadBudget
from portkit.drivers.forwarder_loop import FD_RESERVE, Key, SockAddr, TcpListener, Worker
from portkit.drivers.forwarder_tcp import HAS_SPLICE
from portkit.errors import InputError, ResolveError, SystemRefused, map_os_error
from portkit.model.forward import ForwardOptions, ForwardSpec

Resolver = Callable[[str, int, int], list[tuple[int, SockAddr]]]
Logger = Callable[[str], None]
WhoHolds = Callable[[str, int, str], str | None]
ReloadSource = Callable[[], tuple[Sequence[ForwardSpec], ForwardOptions]]
Opened = tuple[ForwardSpec, socket.socket, tuple[int, SockAddr]]
DEFAULT_BULK_THREADS = 16


def default_resolver(host: str, port: int, proto: int) -> list[tuple[int, SockAddr]]:
    """getaddrinfo -> [(family, sockaddr)]; raises ResolveError."""
    return resolve(host, port, socktype=proto)


@dataclass(slots=True)
class Counters:
    """Live counters of one forwarder process (``--stats``), summed over workers."""

    accepted: int = 0
    active: int = 0
    failed: int = 0
    refused: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    udp_sessions: int = 0
    pipes: int = 0
    bulk: int = 0

    def line(self) -> str:
        return (
            f"stats: {self.active} open, {self.accepted} accepted, {self.failed} failed, "
            f"{self.refused} refused, {_human(self.bytes_up)} up, {_human(self.bytes_down)} down, "
            f"{self.udp_sessions} udp sessions, {self.pipes} pipes in use, {self.bulk} bulk flows on threads"
        )


def _human(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _in_use(spec: ForwardSpec, who_holds: WhoHolds | None) -> InputError:
    holder = who_holds(spec.bind, spec.listen_port, spec.proto) if who_holds else None
    by = f" by {holder}" if holder else ""
    return InputError(
        f"cannot listen on {spec.listen}/{spec.proto}: address already in use{by}",
        hint=f"see 'portkit who {spec.listen_port}', or pick another listen port",
    )


def bind_listener(spec: ForwardSpec, who_holds: WhoHolds | None) -> socket.socket:
    """The listening (TCP) or receiving (UDP) socket of ``spec``; InputError when in use."""
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
            raise _in_use(spec, who_holds) from None
        not_here = (InputError, f"no interface of this host has {spec.bind}")
        raise map_os_error(exc, f"cannot listen on {spec.listen}/{spec.proto}", errnos={errno.EADDRNOTAVAIL: not_here}) from None
    return sock


class Forwarder:
    """Many forwards, one process, ``workers`` loops. Use :meth:`start` then :meth:`run`."""

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
        reload_source: ReloadSource | None = None,
        max_open_files: int | None = None,
        workers: int = 1,
        bulk_threads: int = DEFAULT_BULK_THREADS,
        bulk_read: int = BULK_READ,
    ) -> None:
        if workers < 1:
            raise InputError(f"invalid number of workers {workers}; use 1 or more")
        if bulk_threads < 0:
            raise InputError(f"invalid number of bulk threads {bulk_threads}; use 0 (off) or more")
        self.specs = tuple(specs)
        self.options = options or ForwardOptions()
        self._log = log or (lambda line: None)
        self.resolver = resolver or default_resolver
        self.who_holds = who_holds
        self.use_splice = HAS_SPLICE if use_splice is None else (use_splice and HAS_SPLICE)
        self.stats_interval = stats_interval
        self.stats_out = stats_out or self._log
        self.reload_source = reload_source
        self.max_open_files = max_open_files or _nofile_limit()
        # Two threads per bulk flow (forwarder_bulk), shared by all workers; splice only.
        self.bulk_budget = ThreadBudget(bulk_threads) if bulk_threads >= 2 and self.use_splice else None
        self.bulk_read = bulk_read  # a splice read this large hands the flow over
        budget = max(0, (self.max_open_files - FD_RESERVE) // (4 * workers))
        self.workers = [Worker(self, i, budget) for i in range(workers)]
        self._stop_requested = False
        self._reload_requested = False
        self._cut_requested = False
        self._stopping = False
        self.interrupted = False  # stopped by SIGINT (Ctrl-C): the CLI exits 130
        self._serving = False  # start() has bound the listeners (and said so)
        self._next_stats = 0.0
        self._closed = False
        self._rr = 0
        self.started = threading.Event()

    # -- shared by workers -----------------------------------------------------------------
    def log(self, line: str) -> None:
        self._log(line)

    def open_files(self) -> int:
        return sum(w.open_files for w in self.workers)

    def pick_worker(self) -> Worker:
        """The least-loaded worker; ties go round-robin (called by worker 0 only)."""
        n = len(self.workers)
        if n == 1:
            return self.workers[0]
        self._rr = (self._rr + 1) % n
        order = self.workers[self._rr :] + self.workers[: self._rr]
        return min(order, key=lambda w: w.load)

    # -- start-up --------------------------------------------------------------------------
    def _resolve(self, spec: ForwardSpec) -> tuple[int, SockAddr]:
        kind = socket.SOCK_STREAM if spec.proto == "tcp" else socket.SOCK_DGRAM
        found = self.resolver(spec.target_host, spec.target_port, kind)
        if not found:
            raise ResolveError(spec.target_host, "no address")
        return found[0]

    def _open_all(self, specs: Sequence[ForwardSpec]) -> list[Opened]:
        """Resolve every target, then bind every listener; on any failure close them all."""
        targets = [self._resolve(s) for s in specs]
        opened: list[Opened] = []
        try:
            for spec, target in zip(specs, targets, strict=True):
                opened.append((spec, bind_listener(spec, self.who_holds), target))
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
            self._close_workers()
            raise
        self._serving = True  # before the "forwarding" lines: a signal after them drains
        for item in opened:
            self._serve(item)

    def _serve(self, item: Opened) -> None:
        spec, sock, target = item
        if spec.proto == "tcp":
            self.workers[0].add_tcp(TcpListener(spec, sock, target))
        else:
            self.workers[0].add_udp(spec, sock, target)
        self._log(f"forwarding {spec.listen}/{spec.proto} -> {spec.target}")

    @property
    def addresses(self) -> dict[Key, SockAddr]:
        """Bound listener addresses (useful with listen port 0 in tests)."""
        w = self.workers[0]
        out: dict[Key, SockAddr] = {key: lst.sock.getsockname() for key, lst in w.tcp.items()}
        out.update({key: u.sock.getsockname() for key, u in w.udp.items()})
        return out

    # -- thread-safe requests --------------------------------------------------------------
    def request_stop(self) -> None:
        self._stop_requested = True
        self.workers[0].poke()

    def request_reload(self) -> None:
        self._reload_requested = True
        self.workers[0].poke()

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT drain and stop, SIGHUP reloads (main thread only)."""
        signal.signal(signal.SIGTERM, lambda *_: self.request_stop())
        signal.signal(signal.SIGINT, lambda *_: self._on_sigint())
        signal.signal(signal.SIGHUP, lambda *_: self.request_reload())

    def _on_sigint(self) -> None:
        # The first Ctrl-C drains like SIGTERM; a second one, during the drain, closes
        # what is still open at once (a user at a terminal should not wait --drain s).
        # Worker 0 may have finished its own drain already (the main thread then waits in
        # join() for the others), so each worker is told directly, not through _tick.
        if not self._serving:
            raise KeyboardInterrupt  # still resolving and binding in start(): stop at once
        if self.interrupted:
            if self._stopping and not self._cut_requested:
                self._cut_requested = True
                self._log("interrupted again: closing open connections now")
                for w in self.workers:
                    w.call_soon(lambda w=w: setattr(w, "draining_until", time.monotonic()))  # type: ignore[misc]
            return
        self.interrupted = True
        self.request_stop()

    # -- reload ----------------------------------------------------------------------------
    def _reload(self) -> None:
        """Re-read the configuration and apply it whole or not at all.

        Every target is resolved and every new listener bound before anything running is
        touched; on any failure the new sockets are closed and the running TCP and UDP
        forwards go on as they were. A changed forward keeps its listening socket (same
        key, same address): new TCP connections and new UDP sessions go to the new target,
        while connections and UDP sessions already open keep theirs until they end.
        """
        if self.reload_source is None:
            self._log("reload: no --config file to re-read; nothing changed")
            return
        w0 = self.workers[0]
        running = {**{k: lst.spec for k, lst in w0.tcp.items()}, **{k: u.spec for k, u in w0.udp.items()}}
        try:
            specs, options = self.reload_source()
            new = {s.key: s for s in specs}
            updates = [(s, self._resolve(s)) for k, s in new.items() if k in running and running[k] != s]
            opened = self._open_all([s for k, s in new.items() if k not in running])
        except Exception as exc:  # keep serving the old configuration, untouched
            self._log(f"reload failed, keeping the running configuration: {exc}")
            return
        self.options = options
        gone = [k for k in running if k not in new]
        for key in gone:
            w0.close_listener(key)
        for spec, target in updates:
            if spec.proto == "tcp":
                w0.update_tcp(spec, target)
            else:
                w0.update_udp(spec, target)
        for key in gone:
            self._log(f"stopped forwarding {running[key].listen}/{running[key].proto}")
        for spec, _t in updates:
            self._log(f"reload: {spec.listen}/{spec.proto} now -> {spec.target}")
        for item in opened:
            self._serve(item)
        self.specs = tuple(new.values())
        self._log(f"reloaded: {len(self.specs)} forwards")

    # -- the loops -------------------------------------------------------------------------
    def _tick(self, now: float) -> None:
        """Worker 0, after every wake-up: stop and reload requests, --stats."""
        if self._stop_requested and not self._stopping:
            self._stopping = True
            open_now = sum(w.open_connections() for w in self.workers)
            for w in self.workers:
                if w is self.workers[0]:
                    w.begin_drain(self.options.drain)
                else:
                    w.call_soon(lambda w=w: w.begin_drain(self.options.drain))  # type: ignore[misc]
            for spec in self.specs:
                self._log(f"stopped forwarding {spec.listen}/{spec.proto}")
            if open_now:
                self._log(
                    f"stopping: draining {open_now} open connections for up to {self.options.drain:g} s"
                )
            else:
                self._log("stopping: no open connections")
        if self._reload_requested:
            self._reload_requested = False
            if not self._stopping:
                self._reload()
        if self.stats_interval and now >= self._next_stats:
            self._next_stats = now + self.stats_interval
            self.stats_out(self.stats_line())

    def run(self) -> None:
        """Serve until stopped and drained. Call :meth:`start` first."""
        threads = [
            threading.Thread(target=w.run, name=f"portkit-forward-{w.index}", daemon=True)
            for w in self.workers[1:]
        ]
        for t in threads:
            t.start()
        self._next_stats = time.monotonic() + (self.stats_interval or 0)
        self.started.set()
        try:
            self.workers[0].run(self._tick)
        finally:
            if not self._stopping:  # worker 0 died: stop the others
                for w in self.workers[1:]:
                    w.call_soon(lambda w=w: w.begin_drain(0))  # type: ignore[misc]
            for t in threads:
                t.join()
            self._closed = True

    def stats_line(self) -> str:
        """Counters including the bytes of connections still open (live, not only finished)."""
        c = Counters()
        for w in self.workers:
            up, down = w.live_bytes()
            c.accepted += w.accepted
            c.active += w.active
            c.failed += w.failed
            c.refused += w.refused + sum(u.refused for u in w.udp.values())
            c.bytes_up += w.bytes_up + up
            c.bytes_down += w.bytes_down + down
            c.udp_sessions += sum(len(u.sessions) for u in w.udp.values())
            c.pipes += w.pool.in_use
            c.bulk += len(w.bulk)
        return c.line()

    def _close_workers(self) -> None:
        if not self._closed:
            self._closed = True
            for w in self.workers:
                w.shutdown()


def _nofile_limit() -> int:
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        return int(soft) if soft > 0 else 20000
    except (ImportError, ValueError, OSError):  # no resource module or limit: assume a common default
        return 20000


def check_platform() -> None:
    if not hasattr(select, "epoll") or (not hasattr(os, "splice") and not hasattr(select, "epoll")):
        raise SystemRefused("the userspace forwarder needs Linux (epoll) in this version of portkit")
