"""Bulk flows handed from an epoll loop to a pair of blocking splice threads.

Theory of operation. A relay starts in its worker's epoll loop (forwarder_loop). When one
non-blocking splice read returns at least :data:`BULK_READ` bytes, the sender is faster than
the loop drains: the flow is bulk. If the forwarder's thread budget allows, the worker takes
both sockets out of epoll, makes them blocking and gives the relay to a :class:`BulkRelay`:
one thread per direction, each looping ``splice(socket -> its pipe)`` then
``splice(pipe -> socket)``, both blocking (``splice`` releases the GIL). There is no
``epoll_wait`` and no EAGAIN round trip per batch: the kernel wakes the thread straight from
the socket's wait queue. Everything else (connection set-up, small and idle connections)
stays in the loop, so connection rate and 5,000 idle connections do not change.

The same guarantees as in the loop: each direction holds one pipe and reads only after the
pipe is empty, so a slow reader blocks its writer thread and TCP back-pressure stops the
sender (bounded memory); EOF becomes ``shutdown(SHUT_WR)`` on the other socket after the
bytes before it (half-close); an error in one direction shuts both sockets so the other
thread wakes and ends too. Byte counts are written by the threads and read by ``--stats``.
When both threads have finished, the worker is told through its command queue and ends the
relay as it would its own (log line, counters, pipes back to the pool). A draining worker
that runs out of time calls :meth:`BulkRelay.abort` and joins the threads.

Why not a reader thread and a writer thread per direction, pipelined through the pipe:
a blocking splice from a TCP socket into a pipe holds the pipe's mutex while it waits for
data, so the writer cannot drain the bytes already in the pipe and a request/response
exchange hangs (measured: iperf3's control connection did).
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable

from portkit.drivers.forwarder_tcp import Half, Relay

BULK_READ = 256 * 1024  # one splice read this large: the sender outruns the loop
_MOVE = getattr(os, "SPLICE_F_MOVE", 1)


class ThreadBudget:
    """How many bulk threads may exist at once, shared by all workers (thread-safe)."""

    __slots__ = ("_lock", "in_use", "limit", "peak")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0
        self.peak = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        with self._lock:
            if self.in_use + n > self.limit:
                return False
            self.in_use += n
            self.peak = max(self.peak, self.in_use)
            return True

    def give(self, n: int) -> None:
        with self._lock:
            self.in_use -= n


class BulkRelay:
    """A relay moved by two blocking threads; ``done(self)`` runs in the worker's thread."""

    __slots__ = ("_threads", "done", "error", "left", "post", "relay", "size")

    def __init__(
        self,
        relay: Relay,
        size: int,
        post: Callable[[Callable[[], None]], None],
        done: Callable[[BulkRelay], None],
    ) -> None:
        self.relay = relay
        self.size = size
        self.post = post  # the worker's call_soon
        self.done = done
        self.error: str | None = None
        self.left = 2
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for s in (self.relay.client.sock, self.relay.upstream.sock):
            s.setblocking(True)
        for half, name in ((self.relay.up, "up"), (self.relay.down, "down")):
            t = threading.Thread(target=self._run, args=(half,), name=f"portkit-bulk-{name}", daemon=True)
            self._threads.append(t)
            t.start()

    def _run(self, half: Half) -> None:
        try:
            self._pump(half)
        except OSError as exc:  # the relay ends; its first error is what it reports
            if self.error is None:
                self.error = exc.strerror or str(exc)
            self.abort()
        finally:
            self.post(self._finished)

    def _pump(self, half: Half) -> None:
        if not half.eof:
            assert half.pipe is not None
            r, w = half.pipe
            src, dst = half.src.fd, half.dst.fd
            splice = os.splice
            while True:
                n = splice(src, w, self.size, None, None, _MOVE)
                if n == 0:
                    half.eof = True
                    break
                while n:
                    m = splice(r, dst, n, None, None, _MOVE)
                    n -= m
                    half.nbytes += m
        if not half.shut:
            half.shut = True
            try:
                half.dst.sock.shutdown(socket.SHUT_WR)
            except OSError:  # the peer is gone already: nothing left to tell it
                pass

    def _finished(self) -> None:
        self.left -= 1
        if self.left == 0:
            self.done(self)

    def abort(self) -> None:
        """Wake both threads: their blocking splices return (EOF or an error)."""
        for s in (self.relay.client.sock, self.relay.upstream.sock):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:  # closed already: the thread is awake or done
                pass

    def join(self, timeout: float) -> None:
        for t in self._threads:
            t.join(timeout)
