"""An echo target for the forwarder's tests and benchmark: TCP and UDP, one epoll loop.

``python -m portkit.drivers.forwarder_echo [--host H] [--tcp PORT] [--udp PORT]`` binds,
prints ``ready TCPPORT UDPPORT`` (0 when absent; pass port 0 to let the kernel pick) and
echoes until SIGTERM. TCP bytes go socket -> pipe -> the same socket with ``os.splice``,
so the echo costs no Python copies and the benchmark measures the forwarder, not this.
A peer's EOF is echoed as EOF (shutdown of our write side once everything is sent back).
It runs in its own process so that a 1,000-connection test keeps each process far from
the 20,000 open-files limit.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import socket
import sys

from portkit.drivers.forwarder_tcp import End, Half, PipePool, RelayError
from portkit.drivers.udpforward import grow_buffer

_ET = select.EPOLLIN | select.EPOLLOUT | select.EPOLLRDHUP | select.EPOLLET


def serve(host: str, tcp_port: int | None, udp_port: int | None) -> None:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    ep = select.epoll()
    pool = PipePool(size=1 << 18, max_pipes=4000)
    conns: dict[int, tuple[End, Half]] = {}
    tcp = udp = None
    if tcp_port is not None:
        tcp = socket.socket(fam, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((host, tcp_port))
        tcp.listen(4096)
        ep.register(tcp.fileno(), select.EPOLLIN)
    if udp_port is not None:
        udp = socket.socket(fam, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
        grow_buffer(udp, 8 << 20)
        udp.bind((host, udp_port))
        ep.register(udp.fileno(), select.EPOLLIN)
    sys.stdout.write(f"ready {tcp.getsockname()[1] if tcp else 0} {udp.getsockname()[1] if udp else 0}\n")
    sys.stdout.flush()
    buf = bytearray(65536)
    while True:
        for fd, ev in ep.poll(-1, 512):
            if tcp is not None and fd == tcp.fileno():
                while True:
                    try:
                        c, _ = tcp.accept()
                    except BlockingIOError:
                        break
                    except OSError:  # the client left before accept: nothing to serve
                        break
                    c.setblocking(False)
                    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    end = End(c)
                    end.writable = True
                    conns[end.fd] = (end, Half(end, end, pool, True))
                    ep.register(end.fd, _ET)
            elif udp is not None and fd == udp.fileno():
                while True:
                    try:
                        n, peer = udp.recvfrom_into(buf)
                    except BlockingIOError:
                        break
                    try:
                        udp.sendto(buf[:n], peer)
                    except OSError:  # an echo is best effort, as UDP is
                        pass
            else:
                item = conns.get(fd)
                if item is None:
                    continue
                end, half = item
                if ev & (select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR):
                    end.readable = True
                if ev & (select.EPOLLOUT | select.EPOLLHUP | select.EPOLLERR):
                    end.writable = True
                try:
                    half.pump()
                    done = half.shut
                except RelayError:
                    half.abort()
                    done = True
                if done:
                    del conns[fd]
                    end.sock.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m portkit.drivers.forwarder_echo")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--tcp", type=int)
    p.add_argument("--udp", type=int)
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    try:
        import resource

        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):  # a test helper: the default limit will do
        pass
    serve(args.host, args.tcp, args.udp)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
