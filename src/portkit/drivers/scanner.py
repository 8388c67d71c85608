"""The TCP connect scanner: non-blocking connect() calls, the connect kind of the one scan
loop (:mod:`portkit.drivers.scanloop`, a plain epoll loop).

Why not asyncio: a task (or even a future) per port costs more Python than the kernel
spends on the probe; measured here, a task per port took 10-15 s for 65,535 ports where
nmap -sT takes 2.8 s. This loop does per port: connect() (EINPROGRESS), connect() again,
which reports the outcome (0, ECONNREFUSED, ...) or EALREADY while the SYN is unanswered,
and an error-queue read when refused. A socket refused by a RST is reset by that second
connect() and reused for the next port, so socket(), setsockopt(IP_RECVERR) and close() are
paid only by the few probes that end otherwise (open, ICMP, timeout); epoll is used only for
probes still pending.

How a port is judged (nmap's vocabulary):

* the second connect() returns 0 (at once, or after EPOLLOUT) -> open / syn-ack
* ECONNREFUSED with an empty error queue -> closed / conn-refused (a RST)
* an ICMP error on the socket's error queue (IP_RECVERR) -> filtered, reason from its
  type/code (admin-prohibited, port-unreach, ...), ``reason_from`` its sender. Linux fills
  the queue for a socket in SYN_SENT; without it an admin-prohibited looks like
  EHOSTUNREACH and a port-unreachable like a RST. On a veth the ICMP can arrive while
  connect() still holds the socket lock: the kernel then only queues it (a "soft" error),
  the socket stays in SYN_SENT (connect() says EALREADY) and reports EPOLLERR, which is why
  the error queue is read on EPOLLERR even then.
* nothing before the timeout, after the allowed retransmissions -> filtered / no-response

A retransmission is a new socket and a new connect (the kernel's own SYN retries are
seconds apart); timeouts come from measured RTTs, parallelism from a congestion window
(:mod:`portkit.engine.timing`). The window never exceeds the open-files limit (raised soft
to hard first) minus a margin; if EMFILE still happens the window shrinks, and only a scan
that cannot open a single socket fails, with a clear ResourceLimit.
"""

from __future__ import annotations

import _socket
import dataclasses
import errno
import select
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from portkit.drivers.scanloop import BLOCKED, REPLIED, FdProbes, ScanLoop, SendHook
from portkit.drivers.scanner_common import (
    CLOSED_REFUSED,
    FILTERED_SILENT,
    IP_RECVERR,
    IPV6_RECVERR,
    Probe,
    Progress,
    ScanOutcome,
    fd_window,
    icmp_from_ancillary,
    icmp_verdict,
    read_icmp,
    run_split,
    sockaddr,
    verdict_from_error,
    work_items,
)
from portkit.engine.timing import RttEstimator, TimingProfile
from portkit.errors import ResourceLimit
from portkit.model.cancel import Cancel
from portkit.model.probe import PortState, Reason, Verdict

BATCH = 128  # probes launched between two epoll polls
POOL_MAX = 64  # reusable sockets kept (in practice one or two are in use)


@dataclass(slots=True)
class _Host:
    address: str
    family: int
    recverr_level: int = 0
    recverr_opt: int = 0
    scope: int = 0  # of a zoned link-local address (fe80::1%eth0); address is then bare

    def __post_init__(self) -> None:
        if "%" in self.address:
            _bare, _port, _flow, self.scope = sockaddr(self.address, 0)  # type: ignore[misc]
            self.address = _bare
        v6 = self.family == socket.AF_INET6
        self.recverr_level = socket.IPPROTO_IPV6 if v6 else socket.IPPROTO_IP
        self.recverr_opt = IPV6_RECVERR if v6 else IP_RECVERR


def _closed_verdict(rtt: float) -> Verdict:
    return Verdict(PortState.CLOSED, Reason.CONN_REFUSED, None, round(rtt * 1000, 3))


class ConnectKind(FdProbes):
    """The connect scan's hooks for :class:`ScanLoop`: non-blocking connect() per probe."""

    batch = BATCH

    def __init__(self, loop: ScanLoop, hosts: list[_Host], limit: int, *, record_rtt: bool) -> None:
        super().__init__(loop)
        self.hosts = hosts
        self.limit = limit
        self.record_rtt = record_rtt
        # sockets whose connection attempt failed with a RST: reset, IP_RECVERR set, reusable
        self.pools: dict[int, list[_socket.socket]] = {socket.AF_INET: [], socket.AF_INET6: []}
        self.send: SendHook = self._send_hook()

    def _send_hook(self) -> SendHook:
        """send() as a closure: its locals are read faster than attributes, once per probe."""
        loop, hosts, pools = self.loop, self.hosts, self.pools
        inflight, order, ep_register = self.inflight, self.order, self.ep.register
        cwnd, retry, rtts, host_replies = loop.cwnd, loop.retry, loop.rtts, loop.host_replies
        # the C socket type: socket.socket's Python __init__/close wrappers cost ~5 us a probe
        new_sock = _socket.socket
        stream = socket.SOCK_STREAM | socket.SOCK_NONBLOCK
        einprogress, ealready, econnrefused = errno.EINPROGRESS, errno.EALREADY, errno.ECONNREFUSED
        epollout = select.EPOLLOUT
        errqueue_flags = socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT
        keep_rtt = self.record_rtt
        mono = loop.clock
        sent = 0

        def send(item: int, tryno: int, now: float) -> Verdict | None:
            nonlocal sent
            hi, port = item >> 16, item & 0xFFFF
            host = hosts[hi]
            pool = pools[host.family]
            reused_sock = pool.pop() if pool else None
            try:
                s = reused_sock if reused_sock is not None else new_sock(host.family, stream)
            except OSError as exc:
                if exc.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    raise
                if not inflight:
                    raise ResourceLimit(
                        f"cannot open a socket for {host.address}:{port}: {exc.strerror}",
                        hint=f"the open-files limit is {self.limit}; close other files or raise 'ulimit -Hn'",
                    ) from None
                # fewer files than we thought: shrink the window for good
                self.limit = max(1, len(inflight) - 16)
                cwnd.max_window = self.limit
                cwnd.cwnd = min(cwnd.cwnd, float(self.limit))
                return BLOCKED
            if reused_sock is not s:  # a new socket needs IP_RECVERR; a pooled one has it
                s.setsockopt(host.recverr_level, host.recverr_opt, 1)
            addr = (host.address, port) if not host.scope else (host.address, port, 0, host.scope)
            t0 = mono()
            e = s.connect_ex(addr)
            sent += 1
            if e == einprogress:
                # a second connect() reports the outcome (0, ECONNREFUSED, ...) or EALREADY
                # while the SYN is unanswered; after a failure it also resets the socket
                # so that it can be reused for the next port (no socket()/close() per port)
                e = s.connect_ex(addr)
                if e == ealready:
                    fd = s.fileno()
                    probe = Probe(s, hi, port, tryno, t0, cwnd.replies, host_replies[hi])
                    inflight[fd] = probe
                    order.append(probe)
                    ep_register(fd, epollout)
                    return None
            # answered within connect() itself (a LAN or loopback): a reply, RTT ~ now.
            # Every 4th such RTT is sampled: they are all alike, and sampling costs.
            rtt = mono() - t0
            if tryno == 0 and (sent < 64 or not sent & 3):
                rtts[hi].sample(rtt)
            verdict: Verdict
            if e == 0:
                verdict = Verdict(PortState.OPEN, Reason.SYN_ACK, None, round(rtt * 1000, 3))
                s.close()
            elif e == econnrefused:
                # the common case: a RST, unless an ICMP port-unreachable sits on the queue
                try:
                    anc = s.recvmsg(64, 512, errqueue_flags)[1]
                except BlockingIOError:
                    verdict = _closed_verdict(rtt) if keep_rtt else CLOSED_REFUSED
                    if len(pool) < POOL_MAX:
                        pool.append(s)  # reset by the second connect(): reusable
                    else:
                        s.close()
                else:
                    icmp = icmp_from_ancillary(anc)
                    rtt_ms = round(rtt * 1000, 3) if keep_rtt else None
                    verdict = _closed_verdict(rtt) if icmp is None else icmp_verdict(icmp, "tcp", rtt_ms)
                    s.close()
            else:
                verdict = verdict_from_error(s, e, round(rtt * 1000, 3) if keep_rtt else None)
                s.close()
            if tryno:
                retry.on_answer(tryno)
                loop.replied(hi, port, verdict, t0, True, t0)
                return REPLIED
            return verdict  # a first try: the loop feeds the window once per batch

        return send

    def receive(self, wait: float) -> float:
        loop, hosts, pools, inflight = self.loop, self.hosts, self.pools, self.inflight
        keep_rtt = self.record_rtt
        events = self.ep.poll(wait, 4096)
        now = loop.clock()
        for fd, ev in events:
            probe = inflight.pop(fd)
            s = probe.sock
            self.ep.unregister(fd)
            rtt = now - probe.sent
            loop.sample(probe.hi, probe.tryno, rtt)
            h = hosts[probe.hi]
            e = s.connect_ex((h.address, probe.port) if not h.scope else (h.address, probe.port, 0, h.scope))
            rtt_ms = round(rtt * 1000, 3) if keep_rtt else None
            verdict: Verdict
            if e == 0 or e == errno.EISCONN:
                verdict = Verdict(PortState.OPEN, Reason.SYN_ACK, None, round(rtt * 1000, 3))
                s.close()
            elif e == errno.EALREADY:
                # still SYN_SENT: EPOLLERR for an ICMP error the kernel only queued
                # (it arrived while connect() held the socket)
                icmp = read_icmp(s) if ev & select.EPOLLERR else None
                s.close()
                if icmp is None:  # nothing to judge yet: probe this port again
                    probe.done = True
                    loop.retries.appendleft((probe.hi << 16 | probe.port, probe.tryno))
                    continue
                verdict = icmp_verdict(icmp, "tcp", rtt_ms)
            else:
                icmp = read_icmp(s)
                if icmp is not None:
                    verdict = icmp_verdict(icmp, "tcp", rtt_ms)
                    s.close()
                else:
                    verdict = verdict_from_error(s, e, rtt_ms)
                    if e == errno.ECONNREFUSED and len(pools[s.family]) < POOL_MAX:
                        pools[s.family].append(s)
                    else:
                        s.close()
            probe.done = True
            loop.replied(probe.hi, probe.port, verdict, probe.sent, probe.tryno > 0, now)
        return now

    def close(self) -> None:
        super().close()
        for pool in self.pools.values():
            for sock in pool:
                sock.close()
            pool.clear()


class ConnectScanner:
    """Probe ``items`` (``host_index << 16 | port``, in the order given) with non-blocking connects."""

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
        self.hosts = [_Host(a, socket.AF_INET6 if ":" in a else socket.AF_INET) for a in addresses]
        rtts = [
            RttEstimator(profile.initial_rtt, profile.min_rtt, profile.max_rtt, profile.lan_min_rtt)
            for _ in addresses
        ]
        self.limit, cwnd = fd_window(profile)
        self.record_rtt = record_rtt
        self.loop = ScanLoop(
            items, profile, rtts, cwnd, silent=FILTERED_SILENT, on_progress=on_progress, cancel=cancel
        )

    def run(self) -> ScanOutcome:
        return self.loop.run(ConnectKind(self.loop, self.hosts, self.limit, record_rtt=self.record_rtt))


def connect_scan(
    addresses: Sequence[str],
    ports: Sequence[int],
    profile: TimingProfile,
    *,
    processes: int = 1,
    on_progress: Progress | None = None,
    record_rtt: bool = False,
    randomize: bool = True,
    cancel: Cancel | None = None,
) -> ScanOutcome:
    """Connect-scan ``ports`` on ``addresses``, split over ``processes`` forked workers.

    Each worker has its own window, RTT estimate and open-files limit; with ``--rate``
    each gets its share of the rate.
    """
    items = work_items(len(addresses), ports, randomize=randomize)
    n = max(1, min(processes, len(items) // 2048 or 1))
    share = dataclasses.replace(profile, rate=profile.rate / n) if profile.rate else profile

    def worker(part: Sequence[int], progress: Progress | None) -> ScanOutcome:
        mine = progress is not None or n == 1
        return ConnectScanner(
            addresses,
            part,
            share,
            on_progress=progress,
            record_rtt=record_rtt,
            cancel=cancel if mine else None,
        ).run()

    return run_split(worker, items, n, on_progress)
