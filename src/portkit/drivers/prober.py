"""Single-endpoint I/O around the scanners: name resolution, banners, host discovery.

* :func:`system_resolver` is the default :data:`portkit.engine.endpoint.Resolver`
  (``getaddrinfo``; inside ``ip netns exec`` that reads the namespace's own hosts file).
* :func:`grab_banner` connects to an open TCP port, reads what the service says first and,
  if it says nothing, sends a TLS ClientHello and an HTTP GET (on two connections, at
  once) to recognise a TLS or an HTTP server.
* :func:`discover` finds which addresses of a CIDR block are up: ICMP echo plus TCP SYN
  to 80/443 with raw sockets when privileged, TCP connects to 80/443 otherwise. Any
  answer from the address itself (echo reply, SYN-ACK, RST, even a port-unreachable)
  means a live host.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time
from collections.abc import Sequence

from portkit.backends.host import resolve
from portkit.drivers.scanner import ConnectScanner
from portkit.drivers.scanner_common import work_items
from portkit.engine.timing import TimingProfile
from portkit.errors import ResolveError
from portkit.model.probe import PortState
from portkit.parse.banner import client_hello, describe_reply, describe_tls, first_line, http_probe

DISCOVERY_PORTS = (80, 443)
DISCOVERY_PROFILE = TimingProfile(
    initial_rtt=0.5, min_rtt=0.1, max_rtt=1.0, max_retries=1, initial_window=256
)


def system_resolver(name: str, family: int | None) -> list[tuple[int, str]]:
    """``getaddrinfo`` as a Resolver: [(4|6, address), ...].

    Always asks for both families and leaves ``family`` to the caller's filter: glibc
    answers a name that has only the other family with EAI_AGAIN ("Temporary failure in
    name resolution"), which would misreport ``-6 v4only-host`` as a DNS failure.
    """
    del family
    if name.replace(".", "").isdigit() and name.count(".") == 3:
        raise ResolveError(name, "not a valid IPv4 address (four numbers 0-255)")
    if "-" in name and name.replace(".", "").replace("-", "").isdigit():
        raise ResolveError(
            name,
            "nmap-style address ranges are not supported: give a CIDR block (10.0.0.0/29) or each address",
        )
    out: list[tuple[int, str]] = []
    for af, sa in resolve(name):
        v = 6 if af == socket.AF_INET6 else 4
        addr = str(sa[0]).split("%")[0]
        if v == 6 and len(sa) == 4 and sa[3]:  # a link-local answer keeps its interface
            addr = f"{addr}%{sa[3]}"
        if (v, addr) not in out:
            out.append((v, addr))
    return out


def grab_banner(
    address: str, port: int, *, timeout: float = 2.0, server_name: str | None = None
) -> str | None:
    """The first line an open TCP service sends, or ``"TLS 1.3"`` etc. for a TLS server.

    A service that says nothing within ``timeout`` is asked twice at once, on two
    connections: a TLS ClientHello (a TLS server answers it) and an HTTP GET (an HTTP
    server waits for a whole request before it answers). A TLS answer wins, then the HTTP
    one, then whatever the ClientHello drew; an echo service is named as such.
    """
    try:
        with socket.create_connection((address, port), timeout=timeout) as s:
            s.settimeout(timeout)
            data = _recv_some(s, timeout)
            if data:
                tls = describe_tls(data)
                return tls if tls is not None else first_line(data)
            hello = client_hello(server_name, os.urandom(32), os.urandom(32))
            s.sendall(hello)
            try:
                h = socket.create_connection((address, port), timeout=timeout)
            except OSError:  # no second connection: describe what the first one got
                return describe_reply(hello, _recv_some(s, timeout))
            with h:
                get = http_probe(server_name)
                h.sendall(get)
                tls_data, http_data = _read_both(s, h, timeout)
    except OSError:  # the probe saw nothing: no banner (the port state is the scan's answer)
        return None
    tls_text = describe_reply(hello, tls_data)
    if tls_data and describe_tls(tls_data) is not None:
        return tls_text
    return describe_reply(get, http_data) or tls_text


def _read_both(a: socket.socket, b: socket.socket, timeout: float) -> tuple[bytes, bytes]:
    """First bytes from each socket (b"" if none). Once one answers, the other gets a grace
    of twice that answer's delay (plus 50 ms), not the whole timeout."""
    got: dict[socket.socket, bytes] = {}
    start = time.monotonic()
    deadline = start + timeout
    pending = [a, b]
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select(pending, [], [], left)
        for sock in ready:
            got[sock] = _recv_some(sock, 0.0)
            pending.remove(sock)
            if pending:
                delay = time.monotonic() - start
                deadline = min(deadline, time.monotonic() + 2 * delay + 0.05)
    return got.get(a, b""), got.get(b, b"")


def _recv_some(s: socket.socket, timeout: float) -> bytes:
    try:
        if timeout == 0.0:
            s.setblocking(False)
        return s.recv(4096)
    except (TimeoutError, BlockingIOError):
        return b""
    except OSError:  # a reset or an error: no banner
        return b""


def _icmp_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    words: tuple[int, ...] = struct.unpack(f"!{len(data) // 2}H", data)
    total = sum(words)
    total = (total & 0xFFFF) + (total >> 16)
    total += total >> 16
    return ~total & 0xFFFF


def _echo_alive(addresses: Sequence[str], timeout: float) -> set[int]:
    """Indexes of addresses that answer an ICMP/ICMPv6 echo (needs raw sockets)."""
    alive: set[int] = set()
    ident = os.getpid() & 0xFFFF
    for v6 in (False, True):
        idx = [i for i, a in enumerate(addresses) if (":" in a) == v6]
        if not idx:
            continue
        fam = socket.AF_INET6 if v6 else socket.AF_INET
        proto = socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP
        with socket.socket(fam, socket.SOCK_RAW, proto) as s:
            s.setblocking(False)
            where = {addresses[i]: i for i in idx}
            for seq, i in enumerate(idx):
                typ = 128 if v6 else 8
                hdr = struct.pack("!BBHHH", typ, 0, 0, ident, seq & 0xFFFF) + b"portkit"
                if not v6:  # the kernel computes ICMPv6 checksums itself
                    hdr = hdr[:2] + struct.pack("!H", _icmp_checksum(hdr)) + hdr[4:]
                try:
                    s.sendto(hdr, (addresses[i], 0))
                except OSError:  # this address cannot be sent to: it stays not alive
                    continue
            end = time.monotonic() + timeout
            while len(alive) < len(idx):
                left = end - time.monotonic()
                if left <= 0:
                    break
                select.select([s], [], [], left)
                while True:
                    try:
                        data, addr = s.recvfrom(2048)
                    except (BlockingIOError, InterruptedError):
                        break
                    off = 0 if v6 else (data[0] & 15) * 4
                    reply = 129 if v6 else 0
                    if (
                        len(data) >= off + 8
                        and data[off] == reply
                        and data[off + 4 : off + 6] == struct.pack("!H", ident)
                    ):
                        found = where.get(str(addr[0]).split("%")[0])
                        if found is not None:
                            alive.add(found)
    return alive


def discover(addresses: Sequence[str], *, privileged: bool, timeout: float = 1.0) -> set[int]:
    """Indexes of the addresses that look alive (any answer from the address itself)."""
    alive: set[int] = set()
    if privileged:
        try:
            alive |= _echo_alive(addresses, timeout)
        except PermissionError:  # no raw sockets: discover with connects alone
            privileged = False
    rest = [i for i in range(len(addresses)) if i not in alive]
    if not rest:
        return alive
    sub = [addresses[i] for i in rest]
    if privileged:
        from portkit.drivers.synscan import SynScanner

        for v6 in (False, True):
            part = [k for k, a in enumerate(sub) if (":" in a) == v6]
            if not part:
                continue
            res = SynScanner(
                [sub[k] for k in part], work_items(len(part), DISCOVERY_PORTS), DISCOVERY_PROFILE
            ).run()
            for (hi, _port), v in res.results.items():
                if _says_alive(v.state, v.reason_from, sub[part[hi]]):
                    alive.add(rest[part[hi]])
    else:
        res = ConnectScanner(sub, work_items(len(sub), DISCOVERY_PORTS), DISCOVERY_PROFILE).run()
        for (hi, _port), v in res.results.items():
            if _says_alive(v.state, v.reason_from, sub[hi]):
                alive.add(rest[hi])
    return alive


def _says_alive(state: PortState, reason_from: str | None, address: str) -> bool:
    if state in (PortState.OPEN, PortState.CLOSED):
        return True
    # an ICMP error sent by the host itself (not by a router on the way) proves it is up
    return reason_from is not None and reason_from == address
