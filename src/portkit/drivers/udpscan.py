"""The UDP scanner: one connected datagram socket per probe, in the same epoll loop style.

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
import time
from collections import deque
from collections.abc import Sequence

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
from portkit.engine.timing import RetryPolicy, RttEstimator, SilenceTracker, TimingProfile
from portkit.errors import map_os_error
from portkit.model.cancel import Cancel
from portkit.model.probe import PortState, Reason, Verdict
from portkit.registry.udp_payloads import udp_payload

OPEN_FILTERED = Verdict(PortState.OPEN_FILTERED, Reason.NO_RESPONSE)
BATCH = 64


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
        self.cancel = cancel
        self.addresses = list(addresses)
        self.items = items
        self.profile = profile
        self.on_progress = on_progress
        self.record_rtt = record_rtt
        # no LAN floor for UDP: answers come from applications (a resolver may take 100 ms), not the kernel
        self.rtt = [RttEstimator(profile.initial_rtt, profile.min_rtt, profile.max_rtt) for _ in addresses]
        self.limit, self.cwnd = fd_window(profile)
        self.retry = RetryPolicy(profile.max_retries)
        self.silence = SilenceTracker(len(addresses))
        self.outcome = ScanOutcome()

    def run(self) -> ScanOutcome:
        try:
            self._loop()
        except KeyboardInterrupt:
            self.outcome.interrupted = True
        return self.outcome

    def _loop(self) -> None:
        items, total = self.items, len(self.items)
        results = self.outcome.results
        cwnd, retry = self.cwnd, self.retry
        ep = select.epoll()
        inflight: dict[int, Probe] = {}  # fd -> probe
        order: deque[Probe] = deque()
        retries: deque[tuple[int, int]] = deque()  # (item, tryno)
        next_index = done = sent = 0
        mono = time.monotonic
        rate_gap = 1.0 / self.profile.rate if self.profile.rate else 0.0
        next_send = last_progress = 0.0
        fams = [socket.AF_INET6 if ":" in a else socket.AF_INET for a in self.addresses]

        def judge(hi: int, port: int, verdict: Verdict) -> None:
            nonlocal done
            results[(hi, port)] = verdict
            done += 1

        try:
            while True:
                now = mono()
                batch = BATCH
                while len(inflight) < cwnd.window and (retries or next_index < total) and batch:
                    batch -= 1
                    if rate_gap:
                        if now < next_send:
                            break
                        next_send = max(next_send + rate_gap, now - 0.05)
                    if retries:
                        item, tryno = retries.popleft()
                    else:
                        item, tryno = items[next_index], 0
                        next_index += 1
                    hi, port = item >> 16, item & 0xFFFF
                    fam = fams[hi]
                    try:
                        s = socket.socket(fam, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
                    except OSError as exc:
                        if exc.errno not in (errno.EMFILE, errno.ENFILE):
                            raise
                        retries.appendleft((item, tryno))
                        if not inflight:  # nothing to wait for: no socket will come free
                            raise map_os_error(exc, "cannot open a UDP socket") from None
                        cwnd.max_window = max(1, len(inflight) - 16)
                        cwnd.cwnd = min(cwnd.cwnd, float(cwnd.max_window))
                        break
                    if fam == socket.AF_INET6:
                        s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
                    else:
                        s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
                    try:
                        s.connect(sockaddr(self.addresses[hi], port))
                        s.send(udp_payload(port))
                    except OSError as exc:  # an answer, not a failure: the ICMP error (or errno) is the verdict
                        icmp = read_icmp(s)
                        s.close()
                        if icmp is not None:
                            judge(hi, port, icmp_verdict(icmp, "udp", None))
                        elif exc.errno == errno.ENETUNREACH:
                            judge(hi, port, Verdict(PortState.FILTERED, Reason.NET_UNREACH))
                        else:
                            judge(
                                hi,
                                port,
                                Verdict(
                                    PortState.FILTERED, Reason.ERROR, errno.errorcode.get(exc.errno or 0)
                                ),
                            )
                        continue
                    sent += 1
                    probe = Probe(s, hi, port, tryno, mono(), cwnd.replies, self.silence.snapshot(hi))
                    inflight[s.fileno()] = probe
                    order.append(probe)
                    ep.register(s.fileno(), select.EPOLLIN)
                self.outcome.window_peak = max(self.outcome.window_peak, len(inflight))
                if not inflight and not retries and next_index >= total:
                    again, final = self.silence.next_round()
                    for hi, item in final:
                        judge(hi, item & 0xFFFF, OPEN_FILTERED)
                    if not again:
                        break
                    retries.extend((item, 0) for _hi, item in again)
                    continue
                wait = 0.0
                if order:
                    head = order[0]
                    wait = max(0.0, head.sent + self.rtt[head.hi].timeout() - now)
                if len(inflight) < cwnd.window and (retries or next_index < total):
                    # more to send: now, or when the rate allows
                    wait = 0.0 if not rate_gap else max(0.0, min(wait if order else 1.0, next_send - now))
                events = ep.poll(wait, 1024)
                now = mono()
                for fd, ev in events:
                    probe = inflight.pop(fd)
                    ep.unregister(fd)
                    probe.done = True
                    s2 = probe.sock
                    rtt = now - probe.sent
                    rtt_ms = round(rtt * 1000, 3) if self.record_rtt else None
                    verdict: Verdict | None = None
                    if ev & select.EPOLLERR:
                        icmp = read_icmp(s2)
                        if icmp is not None:
                            verdict = icmp_verdict(icmp, "udp", rtt_ms)
                    if verdict is None:
                        try:
                            s2.recv(65535)
                            verdict = Verdict(PortState.OPEN, Reason.UDP_RESPONSE, None, rtt_ms)
                        except ConnectionRefusedError:
                            verdict = Verdict(PortState.CLOSED, Reason.PORT_UNREACH, None, rtt_ms)
                        except OSError:  # no answer to judge: the retry or the timeout decides
                            verdict = None
                    s2.close()
                    if verdict is None:  # an error without an ICMP: probe the port again
                        retries.append(((probe.hi << 16) | probe.port, probe.tryno))
                        continue
                    if probe.tryno == 0:
                        self.rtt[probe.hi].sample(rtt)
                    else:
                        retry.on_answer(probe.tryno)
                        if verdict.state is PortState.CLOSED:
                            late = self.outcome.late_closed
                            late[probe.hi] = late.get(probe.hi, 0) + 1
                    cwnd.on_reply(probe.sent, probe.tryno > 0, len(inflight), now)
                    self.silence.on_reply(probe.hi)
                    judge(probe.hi, probe.port, verdict)
                while order:
                    probe = order[0]
                    if probe.done:
                        order.popleft()
                        continue
                    if now < probe.sent + self.rtt[probe.hi].timeout():
                        break
                    order.popleft()
                    fd = probe.sock.fileno()
                    del inflight[fd]
                    ep.unregister(fd)
                    probe.sock.close()
                    probe.done = True
                    cwnd.on_timeout(probe.sent, probe.replies, len(inflight), now)
                    item = (probe.hi << 16) | probe.port
                    self.silence.on_timeout(probe.hi, item, probe.hsnap)
                    if retry.should_retry(probe.tryno):
                        retries.append((item, probe.tryno + 1))
                    elif self.silence.conclude(probe.hi, item):
                        judge(probe.hi, probe.port, OPEN_FILTERED)
                if self.cancel is not None and self.cancel.is_set():
                    self.outcome.interrupted = True
                    break
                if self.on_progress is not None and now - last_progress > 0.1:
                    last_progress = now
                    # suspects' tries are spent (see scanner.py): count them
                    self.on_progress(min(total, done + len(self.silence.suspects)), total)
        finally:
            self.outcome.probes_sent = sent
            for probe in inflight.values():
                probe.sock.close()
            ep.close()
            if self.on_progress is not None:
                self.on_progress(done, total)


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
