"""The TCP half of the userspace forwarder: one :class:`Relay` per client connection.

Theory of operation. Each socket is registered once with epoll, edge-triggered, for
``IN|OUT|RDHUP``; an event only sets the socket's ``readable``/``writable`` flag and the
relay then moves data until the kernel says EAGAIN, so there are no ``epoll_ctl`` calls in
the steady state. Each direction (a :class:`Half`) moves bytes

* on Linux, with ``os.splice`` socket -> pipe -> socket (zero copy: the pages move, Python
  never sees the bytes). Pipes come from a :class:`PipePool` and a direction holds one only
  while bytes are in flight; an idle connection holds none, so 5,000 idle connections are
  10,000 sockets and no pipes. Pipes are enlarged with ``F_SETPIPE_SZ`` (default 1 MiB) so
  one wake-up moves a lot;
* elsewhere, or when the pipe budget is spent, with ``recv_into``/``send`` through one
  bounded buffer.

A direction reads only when its pipe/buffer is empty, so a slow reader stops the reading
from its peer (TCP back-pressure reaches the sender) and memory stays bounded: at most
one pipe or one buffer per direction. EOF on one side becomes ``shutdown(SHUT_WR)`` on the
other once the bytes before it are delivered (half-close); the relay ends when both
directions are shut or on the first error.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from collections.abc import Callable
from typing import Any

HAS_SPLICE = hasattr(os, "splice")
_SPLICE_FLAGS = (os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK) if HAS_SPLICE else 0
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
COPY_BUFFER = 256 * 1024
_splice: Callable[..., int] = getattr(os, "splice", None) or (lambda *a: 0)


def pipe_size_refusal(size: int) -> str | None:
    """Why the kernel would not give a splice pipe ``size`` bytes (None: it would).

    Tried on a real pipe, since the limit is /proc/sys/fs/pipe-max-size for an unprivileged
    process, the per-user pipe budget, and 2 GiB for anyone."""
    try:
        r, w = os.pipe2(os.O_CLOEXEC)
    except OSError as exc:  # the answer is the reason, not an exception
        return f"cannot create a pipe: {exc.strerror}"
    try:
        fcntl.fcntl(w, _F_SETPIPE_SZ, size)
    except (OSError, OverflowError) as exc:  # the answer is the reason, not an exception
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        try:
            with open("/proc/sys/fs/pipe-max-size", encoding="ascii") as f:
                limit = f.read().strip()
        except OSError:  # the limit only adds detail to the reason
            limit = "?"
        return f"the kernel refuses a pipe of {size} bytes ({detail}; /proc/sys/fs/pipe-max-size is {limit})"
    finally:
        os.close(r)
        os.close(w)
    return None


class PipePool:
    """Non-blocking pipes for splice, reused; at most ``max_pipes`` exist at once.

    ``get`` returns None when the budget is spent, and the caller copies instead.
    """

    __slots__ = ("_idle", "in_use", "max_idle", "max_pipes", "size")

    def __init__(self, *, size: int = 1 << 20, max_pipes: int = 2048, max_idle: int = 64) -> None:
        self.size = size
        self.max_pipes = max_pipes
        self.max_idle = max_idle
        self._idle: list[tuple[int, int]] = []
        self.in_use = 0

    def get(self) -> tuple[int, int] | None:
        if self._idle:
            self.in_use += 1
            return self._idle.pop()
        if self.in_use >= self.max_pipes:
            return None
        try:
            r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:  # EMFILE/ENFILE: copy through a buffer instead
            return None
        if self.size:
            try:
                fcntl.fcntl(w, _F_SETPIPE_SZ, self.size)
            except OSError:  # above /proc/sys/fs/pipe-max-size or the per-user budget
                pass
        self.in_use += 1
        return (r, w)

    def put(self, pipe: tuple[int, int]) -> None:
        self.in_use -= 1
        if len(self._idle) < self.max_idle:
            self._idle.append(pipe)
        else:
            os.close(pipe[0])
            os.close(pipe[1])

    def discard(self, pipe: tuple[int, int]) -> None:
        """A pipe that may still hold bytes (relay aborted): never reuse it."""
        self.in_use -= 1
        os.close(pipe[0])
        os.close(pipe[1])

    @property
    def idle(self) -> int:
        return len(self._idle)

    def close(self) -> None:
        for r, w in self._idle:
            os.close(r)
            os.close(w)
        self._idle.clear()


class End:
    """One socket of a relay and what epoll last said about it."""

    __slots__ = ("fd", "readable", "sock", "writable")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.readable = False
        self.writable = False


class RelayError(Exception):
    """The relay must end now (reset, broken pipe)."""


class Half:
    """One direction of a relay: bytes read from ``src`` and written to ``dst``."""

    __slots__ = (
        "buf",
        "burst",
        "dst",
        "eof",
        "nbytes",
        "off",
        "pending",
        "pipe",
        "pool",
        "shut",
        "src",
        "use_splice",
    )

    def __init__(self, src: End, dst: End, pool: PipePool, use_splice: bool) -> None:
        self.src = src
        self.dst = dst
        self.pool = pool
        self.use_splice = use_splice
        self.pipe: tuple[int, int] | None = None
        self.buf: memoryview | None = None
        self.off = 0
        self.pending = 0
        self.eof = False
        self.shut = False
        self.nbytes = 0
        self.burst = 0  # largest splice read since the last hand-off attempt (forwarder_bulk)

    def pump(self) -> None:
        """Move bytes until the kernel says wait; raise RelayError when the relay must end."""
        src = self.src
        dst = self.dst
        while True:
            if self.pending:
                if not dst.writable:
                    return
                try:
                    if self.pipe is not None:
                        n = _splice(self.pipe[0], dst.fd, self.pending, None, None, _SPLICE_FLAGS)
                    else:
                        assert self.buf is not None
                        n = dst.sock.send(self.buf[self.off : self.off + self.pending])
                        self.off += n
                except BlockingIOError:
                    dst.writable = False
                    return
                except OSError as exc:
                    raise RelayError(exc.strerror or str(exc)) from None
                self.pending -= n
                self.nbytes += n
                if self.pending:
                    # A short write means the send buffer is full; the kernel has set
                    # SOCK_NOSPACE, so an EPOLLOUT edge follows: skip the EAGAIN round trip.
                    dst.writable = False
                    return
            if self.eof:
                self.release()
                if not self.shut:
                    self.shut = True
                    try:
                        dst.sock.shutdown(socket.SHUT_WR)
                    except OSError:  # the peer is gone already: nothing left to tell it
                        pass
                return
            if not src.readable:
                self.release()
                return
            if self.pipe is None and self.buf is None:
                self._acquire()
            try:
                if self.pipe is not None:
                    n = _splice(src.fd, self.pipe[1], self.pool.size or 65536, None, None, _SPLICE_FLAGS)
                else:
                    assert self.buf is not None
                    n = src.sock.recv_into(self.buf)
                    self.off = 0
            except BlockingIOError:
                src.readable = False
                self.release()
                return
            except OSError as exc:
                if exc.errno in (errno.ECONNRESET, errno.EPIPE, errno.ETIMEDOUT, errno.EHOSTUNREACH):
                    raise RelayError(exc.strerror or str(exc)) from None
                raise RelayError(exc.strerror or str(exc)) from None
            if n == 0:
                self.eof = True
                src.readable = False
            else:
                self.pending = n
                if n > self.burst:
                    self.burst = n

    def _acquire(self) -> None:
        if self.use_splice:
            self.pipe = self.pool.get()
            if self.pipe is not None:
                return
        self.buf = memoryview(bytearray(COPY_BUFFER))

    def release(self) -> None:
        if self.pipe is not None:
            self.pool.put(self.pipe)
            self.pipe = None
        self.buf = None

    def abort(self) -> None:
        if self.pipe is not None:
            self.pool.discard(self.pipe)
            self.pipe = None
        self.buf = None


class Relay:
    """A client connection and its upstream connection, relayed both ways."""

    __slots__ = (
        "client",
        "connecting",
        "deadline",
        "down",
        "forward",
        "peer",
        "started",
        "up",
        "upstream",
    )

    def __init__(
        self,
        forward: Any,
        client: socket.socket,
        peer: str,
        upstream: socket.socket,
        pool: PipePool,
        use_splice: bool,
        started: float,
        deadline: float,
    ) -> None:
        self.forward = forward
        self.client = End(client)
        self.upstream = End(upstream)
        self.peer = peer
        self.up = Half(self.client, self.upstream, pool, use_splice)
        self.down = Half(self.upstream, self.client, pool, use_splice)
        self.connecting = True
        self.started = started
        self.deadline = deadline

    def finish_connect(self) -> int:
        """errno of the finished non-blocking connect (0 = connected)."""
        err = self.upstream.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err == 0:
            self.connecting = False
        return err

    def pump(self) -> bool:
        """Move data both ways; True when the relay is finished (both ways shut)."""
        self.up.pump()
        self.down.pump()
        return self.up.shut and self.down.shut

    def close(self, *, reset: bool = False) -> None:
        self.up.abort()
        self.down.abort()
        for end in (self.client, self.upstream):
            if reset:
                try:
                    end.sock.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                    )
                except OSError:  # the socket closes anyway, just without the reset
                    pass
            end.sock.close()
