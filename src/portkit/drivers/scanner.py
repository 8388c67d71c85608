"""The TCP connect scanner: one plain epoll loop over non-blocking connect() calls.

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
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

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
from portkit.engine.timing import RetryPolicy, RttEstimator, SilenceTracker, TimingProfile
from portkit.errors import map_os_error
from portkit.model.cancel import Cancel
from portkit.model.probe import PortState, Reason, Verdict

BATCH = 128  # probes launched between two epoll polls
POOL_MAX = 64  # reusable sockets kept (in practice one or two are in use)


@dataclass(slots=True)
class _Host:
    address: str
    family: int
    rtt: RttEstimator
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
        self.cancel = cancel
        self.record_rtt = record_rtt
        self.hosts = [
            _Host(
                a,
                socket.AF_INET6 if ":" in a else socket.AF_INET,
                RttEstimator(profile.initial_rtt, profile.min_rtt, profile.max_rtt, profile.lan_min_rtt),
            )
            for a in addresses
        ]
        self.items = items
        self.profile = profile
        self.on_progress = on_progress
        self.limit, self.cwnd = fd_window(profile)
        self.retry = RetryPolicy(profile.max_retries)
        self.silence = SilenceTracker(len(self.hosts))
        self.outcome = ScanOutcome()

    def run(self) -> ScanOutcome:
        try:
            self._loop()
        except KeyboardInterrupt:
            self.outcome.interrupted = True
        return self.outcome

    def _loop(self) -> None:
        hosts = self.hosts
        items = self.items
        total = len(items)
        results = self.outcome.results
        cwnd = self.cwnd
        retry = self.retry
        profile = self.profile
        on_progress = self.on_progress
        ep = select.epoll()
        inflight: dict[int, Probe] = {}  # fd -> probe
        order: deque[Probe] = deque()  # probes in send order, for timeouts
        retries: deque[tuple[int, int, int]] = deque()  # (host index, port, tryno)
        next_index = 0
        mono = time.monotonic
        # the C socket type: socket.socket's Python __init__/close wrappers cost ~5 us a probe
        new_sock = _socket.socket
        stream = socket.SOCK_STREAM | socket.SOCK_NONBLOCK
        einprogress = errno.EINPROGRESS
        epollout, epollerr = select.EPOLLOUT, select.EPOLLERR
        rate_gap = 1.0 / profile.rate if profile.rate else 0.0
        next_send = 0.0
        done = 0
        last_progress = 0.0
        limit = self.limit
        sent = 0
        keep_rtt = self.record_rtt
        econnrefused = errno.ECONNREFUSED
        errqueue_flags = socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT
        verdict: Verdict
        silence = self.silence
        host_replies = silence.replies
        heard = silence.heard
        ealready, eisconn = errno.EALREADY, errno.EISCONN
        # sockets whose connection attempt failed with a RST: reset, IP_RECVERR set, reusable
        pools: dict[int, list[_socket.socket]] = {socket.AF_INET: [], socket.AF_INET6: []}

        def closed_verdict(rtt: float) -> Verdict:
            return Verdict(PortState.CLOSED, Reason.CONN_REFUSED, None, round(rtt * 1000, 3))

        try:
            while True:
                now = mono()
                # 1. launch probes while the window allows; at most BATCH before polling again,
                #    so that answers are read promptly and their RTTs are not inflated
                batch = BATCH
                window = cwnd.window
                quick = 0  # probes answered inside connect(): fed to the window once per batch
                while len(inflight) + quick < window and (retries or next_index < total) and batch:
                    batch -= 1
                    if rate_gap:
                        if now < next_send:
                            break
                        next_send = max(next_send + rate_gap, now - 0.05)
                    if retries:
                        hi, port, tryno = retries.popleft()
                    else:
                        item = items[next_index]
                        hi, port = item >> 16, item & 0xFFFF
                        tryno = 0
                        next_index += 1
                    host = hosts[hi]
                    pool = pools[host.family]
                    reused_sock = pool.pop() if pool else None
                    try:
                        s = reused_sock if reused_sock is not None else new_sock(host.family, stream)
                    except OSError as exc:
                        if exc.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                            raise
                        retries.appendleft((hi, port, tryno))
                        if not inflight:  # nothing to wait for: no socket will come free
                            raise map_os_error(
                                exc,
                                f"cannot open a socket for {host.address}:{port}",
                                hint=f"the open-files limit is {limit}; close other files or raise 'ulimit -Hn'",
                            ) from None
                        # fewer files than we thought: shrink the window for good
                        limit = max(1, len(inflight) - 16)
                        cwnd.max_window = limit
                        cwnd.cwnd = min(cwnd.cwnd, float(limit))
                        break
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
                            ep.register(fd, epollout)
                            continue
                    # answered within connect() itself (a LAN or loopback): a reply, RTT ~ now.
                    # Every 4th such RTT is sampled: they are all alike, and sampling costs.
                    rtt = mono() - t0
                    if tryno == 0 and (sent < 64 or not sent & 3):
                        host.rtt.sample(rtt)
                    if e == 0:
                        verdict = Verdict(PortState.OPEN, Reason.SYN_ACK, None, round(rtt * 1000, 3))
                        s.close()
                    elif e == econnrefused:
                        # the common case: a RST, unless an ICMP port-unreachable sits on the queue
                        try:
                            anc = s.recvmsg(64, 512, errqueue_flags)[1]
                        except BlockingIOError:
                            verdict = closed_verdict(rtt) if keep_rtt else CLOSED_REFUSED
                            if len(pool) < POOL_MAX:
                                pool.append(s)  # reset by the second connect(): reusable
                            else:
                                s.close()
                        else:
                            icmp = icmp_from_ancillary(anc)
                            rtt_ms = round(rtt * 1000, 3) if keep_rtt else None
                            verdict = (
                                closed_verdict(rtt) if icmp is None else icmp_verdict(icmp, "tcp", rtt_ms)
                            )
                            s.close()
                    else:
                        verdict = verdict_from_error(s, e, round(rtt * 1000, 3) if keep_rtt else None)
                        s.close()
                    if tryno:
                        retry.on_answer(tryno)
                        cwnd.on_reply(t0, True, len(inflight), t0)
                    else:
                        quick += 1
                    host_replies[hi] += 1
                    results[(hi, port)] = verdict
                    done += 1
                if quick:
                    cwnd.on_replies(quick)
                if len(inflight) > self.outcome.window_peak:
                    self.outcome.window_peak = len(inflight)
                if not inflight and not retries and next_index >= total:
                    again, final = silence.next_round()
                    for hi, item in final:
                        results[(hi, item & 0xFFFF)] = FILTERED_SILENT
                        done += 1
                    if not again:
                        break
                    retries.extend((hi, item & 0xFFFF, 0) for hi, item in again)
                    continue
                # 2. wait for answers, no longer than the oldest probe's deadline
                wait = 0.0
                if order:
                    head = order[0]
                    wait = max(0.0, head.sent + hosts[head.hi].rtt.timeout() - now)
                    if len(inflight) < cwnd.window and (retries or next_index < total):
                        wait = 0.0 if not rate_gap else max(0.0, min(wait, next_send - now))
                elif rate_gap:
                    wait = max(0.0, next_send - now)
                events = ep.poll(wait, 4096)
                now = mono()
                for fd, ev in events:
                    probe = inflight.pop(fd)
                    s = probe.sock
                    ep.unregister(fd)
                    rtt = now - probe.sent
                    if probe.tryno == 0:
                        hosts[probe.hi].rtt.sample(rtt)
                    else:
                        retry.on_answer(probe.tryno)
                    h = hosts[probe.hi]
                    e = s.connect_ex(
                        (h.address, probe.port) if not h.scope else (h.address, probe.port, 0, h.scope)
                    )
                    rtt_ms = round(rtt * 1000, 3) if keep_rtt else None
                    if e == 0 or e == eisconn:
                        verdict = Verdict(PortState.OPEN, Reason.SYN_ACK, None, round(rtt * 1000, 3))
                        s.close()
                    elif e == ealready:
                        # still SYN_SENT: EPOLLERR for an ICMP error the kernel only queued
                        # (it arrived while connect() held the socket)
                        icmp = read_icmp(s) if ev & epollerr else None
                        s.close()
                        if icmp is None:  # nothing to judge yet: probe this port again
                            probe.done = True
                            retries.appendleft((probe.hi, probe.port, probe.tryno))
                            continue
                        verdict = icmp_verdict(icmp, "tcp", rtt_ms)
                    else:
                        icmp = read_icmp(s)
                        if icmp is not None:
                            verdict = icmp_verdict(icmp, "tcp", rtt_ms)
                            s.close()
                        else:
                            verdict = verdict_from_error(s, e, rtt_ms)
                            if e == econnrefused and len(pools[s.family]) < POOL_MAX:
                                pools[s.family].append(s)
                            else:
                                s.close()
                    probe.done = True
                    host_replies[probe.hi] += 1
                    cwnd.on_reply(probe.sent, probe.tryno > 0, len(inflight), now)
                    results[(probe.hi, probe.port)] = verdict
                    done += 1
                # 3. time out overdue probes: retransmit, or conclude "filtered / no-response"
                while order:
                    probe = order[0]
                    if probe.done:
                        order.popleft()
                        continue
                    if now < probe.sent + hosts[probe.hi].rtt.timeout():
                        break
                    order.popleft()
                    s = probe.sock
                    fd = s.fileno()
                    del inflight[fd]
                    ep.unregister(fd)
                    s.close()
                    probe.done = True
                    cwnd.on_timeout(probe.sent, probe.replies, len(inflight), now)
                    item = probe.hi << 16 | probe.port
                    if host_replies[probe.hi] > probe.hsnap:
                        heard.add(item)
                    if retry.should_retry(probe.tryno):
                        retries.append((probe.hi, probe.port, probe.tryno + 1))
                    elif silence.conclude(probe.hi, item):
                        results[(probe.hi, probe.port)] = FILTERED_SILENT
                        done += 1
                if self.cancel is not None and self.cancel.is_set():
                    self.outcome.interrupted = True
                    break
                if on_progress is not None and now - last_progress > 0.1:
                    last_progress = now
                    # suspects (silent while their host was silent too) wait for a last
                    # round, but their tries are spent: count them, or a firewalled
                    # host's bar stands still for the whole scan
                    on_progress(min(total, done + len(silence.suspects)), total)
        finally:
            self.outcome.probes_sent = sent
            for probe in inflight.values():
                probe.sock.close()
            for pool in pools.values():
                for sock in pool:
                    sock.close()
            ep.close()
            if on_progress is not None:
                on_progress(done, total)


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
