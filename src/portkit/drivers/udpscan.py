"""The UDP scanner: one connected datagram socket per probe, the UDP kind of the one scan
loop (:mod:`portkit.drivers.scanloop`).

A UDP port says little: a reply proves it open (``udp-response``), an ICMP port-unreachable
proves it closed (``port-unreach``), other ICMP unreachables mean a filter (``filtered``)
and silence is ``open|filtered`` (``no-response``). Each probe carries the payload of the
port's protocol (:mod:`portkit.registry.udp_payloads`) so real services answer.

The socket is connected, so the kernel routes ICMP errors about it to it; IP_RECVERR
puts the type, code and sender on its error queue (EPOLLERR). Linux rate-limits the ICMP
errors a host sends (1 per second per destination by default), which is why UDP scans of
many closed ports are slow against real hosts; portkit's labs turn that limit off.
"""

from __future__ import annotations

import errno
import select
import socket
from collections.abc import Sequence

from portkit.drivers.scanloop import BLOCKED, LOCAL, FdProbes, ScanLoop
from portkit.drivers.scanner_common import (
    IP_RECVERR,
    IPV6_RECVERR,
    Probe,
    Progress,
    ScanOutcome,
    fd_window,
    icmp_verdict,
    read_icmp,
    sockaddr,
    work_items,
)
from portkit.engine.timing import RttEstimator, TimingProfile
from portkit.errors import ResourceLimit
from portkit.model.cancel import Cancel
from portkit.model.probe import PortState, Reason, Verdict
from portkit.registry.udp_payloads import udp_payload

OPEN_FILTERED = Verdict(PortState.OPEN_FILTERED, Reason.NO_RESPONSE)
BATCH = 64


class UdpKind(FdProbes):
    """The UDP scan's hooks for :class:`ScanLoop`: a connected datagram socket per probe."""

    batch = BATCH

    def __init__(self, loop: ScanLoop, addresses: list[str], *, record_rtt: bool) -> None:
        super().__init__(loop)
        self.addresses = addresses
        self.families = [socket.AF_INET6 if ":" in a else socket.AF_INET for a in addresses]
        self.record_rtt = record_rtt

    def send(self, item: int, tryno: int, now: float) -> Verdict | None:
        del now  # a probe's send time is taken after its send
        loop = self.loop
        hi, port = item >> 16, item & 0xFFFF
        fam = self.families[hi]
        try:
            s = socket.socket(fam, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE):
                raise
            if not self.inflight:
                raise ResourceLimit(
                    f"cannot open a UDP socket: {exc.strerror}", hint="the open-files limit is reached"
                ) from None
            cwnd = loop.cwnd
            cwnd.max_window = max(1, len(self.inflight) - 16)
            cwnd.cwnd = min(cwnd.cwnd, float(cwnd.max_window))
            return BLOCKED
        if fam == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
        else:
            s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        try:
            s.connect(sockaddr(self.addresses[hi], port))
            s.send(udp_payload(port))
        except OSError as exc:
            icmp = read_icmp(s)
            s.close()
            if icmp is not None:
                loop.judge(hi, port, icmp_verdict(icmp, "udp", None))
            elif exc.errno == errno.ENETUNREACH:
                loop.judge(hi, port, Verdict(PortState.FILTERED, Reason.NET_UNREACH))
            else:
                loop.judge(
                    hi, port, Verdict(PortState.FILTERED, Reason.ERROR, errno.errorcode.get(exc.errno or 0))
                )
            return LOCAL
        probe = Probe(s, hi, port, tryno, loop.clock(), loop.cwnd.replies, loop.silence.snapshot(hi))
        self.inflight[s.fileno()] = probe
        self.order.append(probe)
        self.ep.register(s.fileno(), select.EPOLLIN)
        return None

    def receive(self, wait: float) -> float:
        loop, inflight = self.loop, self.inflight
        events = self.ep.poll(wait, 1024)
        now = loop.clock()
        for fd, ev in events:
            probe = inflight.pop(fd)
            self.ep.unregister(fd)
            probe.done = True
            s = probe.sock
            rtt = now - probe.sent
            rtt_ms = round(rtt * 1000, 3) if self.record_rtt else None
            verdict: Verdict | None = None
            if ev & select.EPOLLERR:
                icmp = read_icmp(s)
                if icmp is not None:
                    verdict = icmp_verdict(icmp, "udp", rtt_ms)
            if verdict is None:
                try:
                    s.recv(65535)
                    verdict = Verdict(PortState.OPEN, Reason.UDP_RESPONSE, None, rtt_ms)
                except ConnectionRefusedError:
                    verdict = Verdict(PortState.CLOSED, Reason.PORT_UNREACH, None, rtt_ms)
                except OSError:
                    verdict = None
            s.close()
            if verdict is None:  # an error without an ICMP: probe the port again
                loop.retries.append(((probe.hi << 16) | probe.port, probe.tryno))
                continue
            loop.sample(probe.hi, probe.tryno, rtt)
            if probe.tryno and verdict.state is PortState.CLOSED:
                late = loop.outcome.late_closed
                late[probe.hi] = late.get(probe.hi, 0) + 1
            loop.replied(probe.hi, probe.port, verdict, probe.sent, probe.tryno > 0, now)
        return now


class UdpScanner:
    """Probe ``items`` (``host_index << 16 | port``) of ``addresses`` over UDP."""

    def __init__(
        self,
        addresses: Sequence[str],
        items: Sequence[int],
        profile: TimingProfile,
        *,
        on_progress: Progress | None = None,
        record_rtt: bool = False,
        cancel: Cancel | None = None,
    ) -> None:
        self.addresses = list(addresses)
        self.record_rtt = record_rtt
        # no LAN floor for UDP: answers come from applications (a resolver may take 100 ms), not the kernel
        rtts = [RttEstimator(profile.initial_rtt, profile.min_rtt, profile.max_rtt) for _ in addresses]
        self.limit, cwnd = fd_window(profile)
        self.loop = ScanLoop(
            items, profile, rtts, cwnd, silent=OPEN_FILTERED, on_progress=on_progress, cancel=cancel
        )

    def run(self) -> ScanOutcome:
        return self.loop.run(UdpKind(self.loop, self.addresses, record_rtt=self.record_rtt))


def udp_scan(
    addresses: Sequence[str],
    ports: Sequence[int],
    profile: TimingProfile,
    *,
    on_progress: Progress | None = None,
    randomize: bool = True,
    cancel: Cancel | None = None,
) -> ScanOutcome:
    items = work_items(len(addresses), ports, randomize=randomize)
    return UdpScanner(addresses, items, profile, on_progress=on_progress, cancel=cancel).run()
