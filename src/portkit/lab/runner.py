"""The service runner: one process per lab host serving all of that host's listeners.

Run as ``python -m portkit.lab.runner LAB HOST`` inside the host's namespace, with the
services as JSON on stdin (a list of ``{proto, address, port, kind, banner, v6only}``).
It binds every listener first, then writes ``ready`` (or ``error: ...``) as one line on
stdout — the ready pipe the lab waits on instead of sleeping — and serves them all from
one selectors loop until SIGTERM. The LAB and HOST arguments put the lab's name in the
process's command line, which ``lab down`` checks before it kills a recorded pid.

Kinds: ``echo`` sends back what it receives; ``http`` answers each request with a fixed
page and closes; ``banner`` sends one line on connect (TCP) or per datagram (UDP) then
stays silent; ``silent`` accepts (or receives) and never says anything.
"""

from __future__ import annotations

import json
import os
import resource
import selectors
import signal
import socket
import sys
from typing import Any

FD_LIMIT = 20000  # this machine's hard limit on open files per process
HTTP_BODY = b"portkit lab: hello from {host}\n"
PAUSE_READING = 1 << 20  # stop reading a connection while this much echo is unsent


def raise_fd_limit() -> int:
    """Soft open-files limit up to the hard one (at most FD_LIMIT); connections allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard if hard != resource.RLIM_INFINITY else FD_LIMIT, FD_LIMIT)
    if want > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError):  # not allowed to raise it: serve within the soft limit
            pass
    return max(16, soft - 64)


class Runner:
    def __init__(self, host: str, services: list[dict[str, Any]]) -> None:
        self.host = host
        self.sel = selectors.DefaultSelector()
        self.services = services
        self.conns = 0
        self.max_conns = raise_fd_limit()
        self.bufs: dict[socket.socket, bytearray] = {}  # http: the request read so far
        self.out: dict[socket.socket, bytearray] = {}  # unsent reply bytes
        self.closing: set[socket.socket] = set()  # close once ``out`` is flushed

    def bind_all(self) -> None:
        v4_twins = {(s["proto"], s["port"]) for s in self.services if ":" not in s["address"]}
        for svc in self.services:
            fam = socket.AF_INET6 if ":" in svc["address"] else socket.AF_INET
            typ = socket.SOCK_STREAM if svc["proto"] == "tcp" else socket.SOCK_DGRAM
            sock = socket.socket(fam, typ)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if fam == socket.AF_INET6:
                v6only = svc.get("v6only")
                if v6only is None:
                    v6only = svc["address"] == "::" and (svc["proto"], svc["port"]) in v4_twins
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1 if v6only else 0)
            try:
                sock.bind((svc["address"], svc["port"]))
            except OSError as exc:
                raise OSError(f"{svc['proto']} {svc['address']}:{svc['port']}: {exc.strerror}") from exc
            sock.setblocking(False)
            if typ == socket.SOCK_STREAM:
                sock.listen(4096)
                self.sel.register(sock, selectors.EVENT_READ, ("accept", svc))
            else:
                self.sel.register(sock, selectors.EVENT_READ, ("dgram", svc))

    def _close(self, conn: socket.socket) -> None:
        try:
            self.sel.unregister(conn)
        except (KeyError, ValueError):
            pass
        self.bufs.pop(conn, None)
        self.out.pop(conn, None)
        self.closing.discard(conn)
        conn.close()
        self.conns -= 1

    def _accept(self, sock: socket.socket, svc: dict[str, Any]) -> None:
        for _ in range(64):  # drain a burst of connections per wake-up
            try:
                conn, _ = sock.accept()
            except OSError:  # the backlog is drained
                return
            self._accepted(conn, svc)

    def _accepted(self, conn: socket.socket, svc: dict[str, Any]) -> None:
        if self.conns >= self.max_conns:
            conn.close()  # over the open-files budget: refuse rather than crash
            return
        self.conns += 1
        conn.setblocking(False)
        self.bufs[conn] = bytearray()
        self.out[conn] = bytearray()
        self.sel.register(conn, selectors.EVENT_READ, ("conn", svc))
        if svc["kind"] == "banner":
            self._send(conn, svc, svc["banner"].encode() + b"\r\n")

    def _events(self, conn: socket.socket) -> int:
        pending = len(self.out.get(conn, b""))
        ev = 0 if (pending >= PAUSE_READING or conn in self.closing) else selectors.EVENT_READ
        return ev | (selectors.EVENT_WRITE if pending else 0)

    def _send(self, conn: socket.socket, svc: dict[str, Any], data: bytes) -> None:
        """Queue ``data`` and write what the socket takes now; the rest when writable."""
        buf = self.out[conn]
        buf += data
        self._flush(conn, svc)

    def _flush(self, conn: socket.socket, svc: dict[str, Any]) -> None:
        buf = self.out[conn]
        while buf:
            try:
                n = conn.send(buf)
            except BlockingIOError:
                break
            except OSError:  # the client left: drop it
                self._close(conn)
                return
            del buf[:n]
        if not buf and conn in self.closing:
            self._close(conn)
            return
        self.sel.modify(conn, self._events(conn) or selectors.EVENT_READ, ("conn", svc))

    def _read(self, conn: socket.socket, svc: dict[str, Any]) -> None:
        try:
            data = conn.recv(65536)
        except BlockingIOError:
            return
        except OSError:  # a reset: treated as the end of the stream
            data = b""
        if not data:
            if self.out.get(conn):  # the peer is done sending: finish echoing, then close
                self.closing.add(conn)
                self._flush(conn, svc)
            else:
                self._close(conn)
            return
        kind = svc["kind"]
        if kind == "echo":
            self._send(conn, svc, data)
        elif kind == "http":
            buf = self.bufs[conn]
            buf += data
            if b"\r\n\r\n" in buf or b"\n\n" in buf or len(buf) > 65536:
                body = HTTP_BODY.replace(b"{host}", self.host.encode())
                head = (
                    "HTTP/1.0 200 OK\r\nServer: portkit-lab\r\nContent-Type: text/plain\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                ).encode()
                self.closing.add(conn)
                self._send(conn, svc, head + body)

    def _dgram(self, sock: socket.socket, svc: dict[str, Any]) -> None:
        try:
            data, peer = sock.recvfrom(65536)
        except OSError:  # nothing to read after all
            return
        reply = {"echo": data, "banner": svc["banner"].encode() + b"\r\n"}.get(svc["kind"])
        if reply is not None:
            try:
                sock.sendto(reply, peer)
            except OSError:  # a reply lost, as UDP may lose it
                pass

    def serve(self) -> None:
        while True:
            for key, events in self.sel.select():
                what, svc = key.data
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if what == "accept":
                    self._accept(sock, svc)
                elif what == "dgram":
                    self._dgram(sock, svc)
                else:
                    if events & selectors.EVENT_WRITE and sock in self.out:
                        self._flush(sock, svc)
                    if events & selectors.EVENT_READ and sock in self.out:
                        self._read(sock, svc)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: python -m portkit.lab.runner LAB HOST < services.json\n")
        return 2
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    runner = Runner(argv[1], json.loads(sys.stdin.read() or "[]"))
    try:
        runner.bind_all()
    except OSError as exc:  # the parent reads this line and reports it
        sys.stdout.write(f"error: {exc}\n")
        sys.stdout.flush()
        return 4
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    # Let go of the ready pipe and the caller's terminal: we outlive `portkit lab up`.
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    runner.serve()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
