"""A traceroute aimed at a port: TCP connects (or UDP datagrams) with rising TTL.

Each probe is an ordinary socket with ``IP_TTL``/``IPV6_UNICAST_HOPS`` set low and
``IP_RECVERR``/``IPV6_RECVERR`` on, so the ICMP time-exceeded a router sends back for it
lands on that socket's error queue with the router's address (``SO_EE_OFFENDER``) — no
privilege needed (what ``traceroute -M tcpconn`` and ``mtr --tcp`` do with raw sockets).
Linux queues ICMP errors for a TCP socket in SYN_SENT, so a TCP connect works like a
raw SYN here, and the destination's answer is the connect's outcome: connected (open),
refused (closed), an ICMP unreachable (filtered, with its code and sender).

When root (CAP_NET_RAW), a raw ICMP socket listens beside the probes (``method="auto"``):
it sees ICMP errors the kernel would not queue on the socket — for TCP the kernel drops an
ICMP error whose quoted sequence number is out of window, e.g. behind a firewall that
randomises sequence numbers — and matches them to a probe by the quoted ports.
``method="raw"`` uses only the raw listener for ICMP; ``"recverr"`` only the error queue.

TTLs are probed a window at a time, in parallel (one socket each), then silent TTLs are
tried again. Tracing stops at the destination's answer, at an ICMP unreachable, or when
``gap`` TTLs in a row after the last answer stayed silent ("the probes die after hop N").
One socket per TTL and a window of at most 32 keep this far under the 20,000-file limit.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import select
import socket
import struct
import time
from dataclasses import dataclass

from portkit.errors import InputError, map_os_error
from portkit.model.trace import (
    HOP_DESTINATION,
    HOP_SILENT,
    HOP_TIME_EXCEEDED,
    HOP_UNREACHABLE,
    TraceHop,
    TraceResult,
)
from portkit.parse.sockerr import icmp_reason, parse_sock_extended_err

__all__ = ["METHODS", "IcmpQuote", "parse_icmp_error", "trace_port"]

METHODS = ("auto", "recverr", "raw")

IP_RECVERR = 11
IPV6_RECVERR = 25
_TIME_EXCEEDED = {4: 11, 6: 3}  # ICMP type 11 / ICMPv6 type 3
_UNREACH = {4: 3, 6: 1}
_UDP_PAYLOAD = b"\r\n"  # short and harmless; an echo service answers it


@dataclass(slots=True)
class _Probe:
    ttl: int
    sock: socket.socket
    sent: float
    sport: int = 0
    answer: TraceHop | None = None


@dataclass(frozen=True, slots=True)
class IcmpQuote:
    """An ICMP error and the probe it quotes (the first 8 bytes of its L4 header)."""

    type: int
    code: int
    sender: str
    dst: str
    proto: int  # 6 TCP, 17 UDP
    sport: int
    dport: int


def parse_icmp_error(packet: bytes, version: int, sender: str) -> IcmpQuote | None:
    """An ICMP time-exceeded/unreachable as a raw socket delivers it -> what it quotes.

    IPv4 raw sockets deliver the IP header first; ICMPv6 raw sockets start at the ICMPv6
    header. Example (IPv4, time-exceeded from 10.0.1.1 about a TCP SYN 10.0.1.2:40000 ->
    10.0.3.2:81): ``45.. (20 bytes) | 0b 00 cksum 00000000 | 45 .. 06 .. 0a000102 0a000302
    | 9c40 0051 ...`` -> ``IcmpQuote(11, 0, "10.0.1.1", "10.0.3.2", 6, 40000, 81)``.
    Anything else (echo replies, truncated quotes) -> None.
    """
    if version == 4:
        if len(packet) < 20 or packet[0] >> 4 != 4:
            return None
        icmp = packet[(packet[0] & 0x0F) * 4 :]
    else:
        icmp = packet
    if len(icmp) < 8 or icmp[0] not in ((3, 11) if version == 4 else (1, 3)):
        return None
    inner = icmp[8:]
    if version == 4:
        if len(inner) < 20 or inner[0] >> 4 != 4:
            return None
        proto, dst = inner[9], str(ipaddress.IPv4Address(inner[16:20]))
        l4 = inner[(inner[0] & 0x0F) * 4 :]
    else:
        if len(inner) < 40 or inner[0] >> 4 != 6:
            return None
        proto, dst = inner[6], str(ipaddress.IPv6Address(inner[24:40]))
        l4 = inner[40:]
    if len(l4) < 4:
        return None
    sport, dport = struct.unpack("!HH", l4[:4])
    return IcmpQuote(icmp[0], icmp[1], sender, dst, proto, sport, dport)


def _open_raw(fam: int, method: str) -> socket.socket | None:
    """The raw ICMP listener for ``method`` (None when not wanted or not permitted in "auto")."""
    if method == "recverr" or (method == "auto" and os.geteuid() != 0):
        return None
    proto = socket.IPPROTO_ICMPV6 if fam == socket.AF_INET6 else socket.IPPROTO_ICMP
    try:
        r = socket.socket(fam, socket.SOCK_RAW, proto)
    except PermissionError as exc:
        if method == "raw":
            raise map_os_error(exc, "trace --method raw needs root (CAP_NET_RAW)") from exc
        return None  # "auto" without the privilege: the IP_RECVERR method needs none
    r.setblocking(False)
    return r


def _hop_from_quote(q: IcmpQuote, p: _Probe, proto: str, version: int, now: float) -> TraceHop:
    rtt = round((now - p.sent) * 1000.0, 3)
    if q.type == _TIME_EXCEEDED[version]:
        return TraceHop(p.ttl, q.sender, rtt, HOP_TIME_EXCEEDED, "time-exceeded")
    reason = icmp_reason(version, q.type, q.code).value
    kind = HOP_DESTINATION if (proto == "udp" and reason == "port-unreach") else HOP_UNREACHABLE
    return TraceHop(p.ttl, q.sender, rtt, kind, reason)


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def _open_probe(address: str, port: int, proto: str, ttl: int, source: str | None) -> socket.socket:
    fam = _family(address)
    s = socket.socket(fam, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    try:
        s.setblocking(False)
        if fam == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, ttl)
            s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
        else:
            s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
            s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        if source:
            s.bind((source, 0))
        if proto == "tcp":
            # A SYN that dies on the way must not be retransmitted forever.
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_SYNCNT, 1)
            err = s.connect_ex((address, port))
            if err not in (0, errno.EINPROGRESS):
                raise OSError(err, errno.errorcode.get(err, str(err)))
        else:
            s.connect((address, port))
            s.send(_UDP_PAYLOAD)
    except BaseException:
        s.close()
        raise
    return s


def _read_error(s: socket.socket, fam: int) -> tuple[int, int, str | None] | None:
    """(ICMP type, code, sender) of the first ICMP error on the socket's error queue."""
    want = (socket.IPPROTO_IPV6, IPV6_RECVERR) if fam == socket.AF_INET6 else (socket.IPPROTO_IP, IP_RECVERR)
    for _ in range(4):
        try:
            _data, anc, _flags, _addr = s.recvmsg(64, 512, socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT)
        except OSError:  # the error queue is empty: no ICMP answer yet
            return None
        for level, ctype, cdata in anc:
            if (level, ctype) == want:
                ee = parse_sock_extended_err(cdata)
                if ee.is_icmp:
                    return ee.type, ee.code, ee.offender
    return None


def _judge(
    p: _Probe, address: str, proto: str, fam: int, now: float, readable: bool, errqueue: bool = True
) -> TraceHop | None:
    """What an event on a probe socket means, or None when it means nothing yet."""
    rtt = round((now - p.sent) * 1000.0, 3)
    version = 6 if fam == socket.AF_INET6 else 4
    icmp = _read_error(p.sock, fam) if errqueue else None
    if icmp is not None:
        typ, code, sender = icmp
        if typ == _TIME_EXCEEDED[version]:
            return TraceHop(p.ttl, sender, rtt, HOP_TIME_EXCEEDED, "time-exceeded")
        if typ == _UNREACH[version]:
            reason = icmp_reason(version, typ, code).value
            kind = HOP_DESTINATION if (proto == "udp" and reason == "port-unreach") else HOP_UNREACHABLE
            return TraceHop(p.ttl, sender, rtt, kind, reason)
        return None
    if proto == "tcp":
        err = p.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err == 0:
            return TraceHop(p.ttl, address, rtt, HOP_DESTINATION, "syn-ack")
        if err == errno.ECONNREFUSED:
            return TraceHop(p.ttl, address, rtt, HOP_DESTINATION, "conn-refused")
        if err == errno.ETIMEDOUT:
            return TraceHop(p.ttl, None, None, HOP_SILENT)
        return None
    if readable:
        try:
            p.sock.recv(2048)
        except OSError as exc:  # an answer, not a failure: refused is the destination, the rest says nothing
            if exc.errno == errno.ECONNREFUSED:
                return TraceHop(p.ttl, address, rtt, HOP_DESTINATION, "port-unreach")
            return None
        return TraceHop(p.ttl, address, rtt, HOP_DESTINATION, "udp-response")
    return None


def _drain_raw(
    raw: socket.socket, version: int, address: str, port: int, proto: str, by_port: dict[int, _Probe]
) -> list[_Probe]:
    """Read every queued ICMP error; give each matching, unanswered probe its hop."""
    l4 = 6 if proto == "tcp" else 17
    want = ipaddress.ip_address(address)
    answered: list[_Probe] = []
    while True:
        try:
            data, src = raw.recvfrom(2048)
        except (BlockingIOError, InterruptedError):
            return answered
        sender = str(ipaddress.ip_address(str(src[0]).split("%")[0]))
        q = parse_icmp_error(data, version, sender)
        if q is None or q.proto != l4 or q.dport != port or ipaddress.ip_address(q.dst) != want:
            continue
        p = by_port.get(q.sport)
        if p is not None and p.answer is None:
            p.answer = _hop_from_quote(q, p, proto, version, time.monotonic())
            answered.append(p)


def _round(
    address: str,
    port: int,
    proto: str,
    ttls: list[int],
    timeout: float,
    source: str | None,
    method: str = "recverr",
) -> dict[int, TraceHop]:
    """Probe every TTL in ``ttls`` at once; wait until all answered or ``timeout`` passed."""
    fam = _family(address)
    version = 6 if fam == socket.AF_INET6 else 4
    ep = select.epoll()
    probes: dict[int, _Probe] = {}
    raw = _open_raw(fam, method)
    try:
        if raw is not None:
            ep.register(raw.fileno(), select.EPOLLIN)
        for ttl in ttls:
            try:
                s = _open_probe(address, port, proto, ttl, source)
            except OSError as exc:
                # no route to it, or a source address this host lacks: the target is bad input
                unreachable = dict.fromkeys((errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL), InputError)
                raise map_os_error(exc, f"cannot trace {address}:{port}/{proto}", errnos=unreachable) from exc
            probes[s.fileno()] = _Probe(ttl, s, time.monotonic(), int(s.getsockname()[1]))
            mask = select.EPOLLERR | (select.EPOLLOUT if proto == "tcp" else select.EPOLLIN)
            ep.register(s.fileno(), mask)
        by_port = {p.sport: p for p in probes.values()}
        deadline = time.monotonic() + timeout
        pending = set(probes)
        while any(p.answer is None for p in probes.values()):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for fd, ev in ep.poll(left):
                if raw is not None and fd == raw.fileno():
                    for p in _drain_raw(raw, version, address, port, proto, by_port):
                        if p.sock.fileno() in pending:
                            pending.discard(p.sock.fileno())
                            ep.unregister(p.sock.fileno())
                    continue
                p = probes[fd]
                if fd not in pending:
                    continue
                # Level-triggered: every event is decided now (an answer, or nothing usable;
                # the raw listener may still answer for it).
                hop = _judge(
                    p, address, proto, fam, time.monotonic(), bool(ev & select.EPOLLIN), method != "raw"
                )
                if hop is not None and p.answer is None:
                    p.answer = hop
                pending.discard(fd)
                ep.unregister(fd)
            if raw is None and not pending:
                break
        return {p.ttl: p.answer for p in probes.values() if p.answer is not None}
    finally:
        for p in probes.values():
            p.sock.close()
        if raw is not None:
            raw.close()
        ep.close()


def _ends(hop: TraceHop) -> bool:
    return hop.kind in (HOP_DESTINATION, HOP_UNREACHABLE)


def trace_port(
    address: str,
    port: int,
    proto: str = "tcp",
    *,
    target: str | None = None,
    max_ttl: int = 30,
    timeout: float = 1.0,
    tries: int = 2,
    window: int = 8,
    gap: int = 3,
    source: str | None = None,
    method: str = "auto",
) -> TraceResult:
    """Trace the path to ``address:port/proto``; see the module docstring."""
    if method not in METHODS:
        raise InputError(f"invalid trace method {method!r}; valid ones are: {', '.join(METHODS)}")
    if proto not in ("tcp", "udp"):
        raise InputError(f"invalid protocol {proto!r}; valid ones are: tcp, udp")
    if not 1 <= max_ttl <= 255:
        raise InputError(f"invalid max TTL {max_ttl}; valid values are 1-255")
    if not 1 <= window <= 32:
        raise InputError(f"invalid window {window}; valid values are 1-32")
    answers: dict[int, TraceHop] = {}
    first = 1
    end_ttl: int | None = None
    while first <= max_ttl and end_ttl is None:
        ttls = list(range(first, min(max_ttl, first + window - 1) + 1))
        todo = ttls
        for _ in range(max(1, tries)):
            answers.update(_round(address, port, proto, todo, timeout, source, method))
            ends = [t for t in ttls if t in answers and _ends(answers[t])]
            limit = min(ends) if ends else ttls[-1] + 1  # nothing beyond the destination's answer
            todo = [t for t in ttls if t not in answers and t < limit]
            if not todo:
                break
        ends = sorted(t for t in answers if _ends(answers[t]))
        if ends:
            end_ttl = ends[0]
            break
        answered = [t for t in answers if answers[t].address is not None]
        last = max(answered) if answered else 0
        if ttls[-1] - last >= gap:
            break
        first = ttls[-1] + 1
    top = end_ttl if end_ttl is not None else max([0, *answers])
    # Show the silent TTLs after the last answer, up to where we gave up (bounded by gap).
    if end_ttl is None:
        top = min(max_ttl, max(top, 0) + gap)
    hops = tuple(answers.get(t, TraceHop(t, None, None, HOP_SILENT)) for t in range(1, top + 1))
    answered_hops = [h for h in hops if h.address is not None]
    last_hop = answered_hops[-1].address if answered_hops else None
    end = answers.get(end_ttl) if end_ttl is not None else None
    state, reason, reason_from, reached = _outcome(end, proto)
    return TraceResult(
        target=target or address,
        address=address,
        port=port,
        proto=proto,
        reached=reached,
        state=state,
        hops=hops,
        last_hop=last_hop,
        reason=reason,
        reason_from=reason_from,
        method=_method_used(method, _family(address)),
    )


def _method_used(method: str, fam: int) -> str:
    if method == "auto":
        return "recverr+raw" if os.geteuid() == 0 else "recverr"
    return method


def _outcome(end: TraceHop | None, proto: str) -> tuple[str, str, str | None, bool]:
    """(state, reason, reason_from, reached) from the hop that ended the trace."""
    if end is None:
        return ("open|filtered" if proto == "udp" else "filtered"), "no-response", None, False
    reason = end.reason or "no-response"
    if end.kind == HOP_DESTINATION:
        if reason in ("syn-ack", "udp-response"):
            return "open", reason, None, True
        return "closed", reason, end.address if reason == "port-unreach" else None, True
    return "filtered", reason, end.address, False
