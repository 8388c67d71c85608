"""The SYN ("half-open") scanner: hand-built SYNs on a raw socket, replies read raw.

Needs CAP_NET_RAW. One raw ``IPPROTO_TCP`` socket per address family sends SYNs from one
fixed source port and receives every TCP segment addressed to this host; one raw ICMP
(ICMPv6) socket receives destination-unreachable errors, whose quoted headers name the
probed port. No handshake is ever completed: the SYN-ACK of an open port reaches a port
on which nothing listens, so our own kernel answers it with a RST (the source port is
held by a bound, non-listening TCP socket so no other program can be given it).

* SYN-ACK -> open / syn-ack; RST -> closed / reset
* ICMP unreachable -> filtered with the code as reason, its sender in reason_from
* silence after the allowed retransmissions -> filtered / no-response

Replies are matched on source address, source port, our port and the acknowledgement
number (our random initial sequence + 1), so stray traffic cannot fake an answer.
Timing (timeouts, retransmission, congestion window) is :mod:`portkit.engine.timing`,
as for the connect scanner; without file descriptors per probe the window can be large.
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import random
import select
import socket
import struct
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from portkit.drivers.scanner_common import (
    FILTERED_SILENT,
    Progress,
    ScanOutcome,
    run_split,
    work_items,
)
from portkit.engine.timing import CongestionWindow, RetryPolicy, RttEstimator, SilenceTracker, TimingProfile
from portkit.errors import SystemRefused, map_os_error
from portkit.model.cancel import Cancel
from portkit.model.probe import PortState, Reason, Verdict
from portkit.parse.sockerr import icmp_reason

OPEN = Verdict(PortState.OPEN, Reason.SYN_ACK)
CLOSED_RESET = Verdict(PortState.CLOSED, Reason.RESET)
IPV6_CHECKSUM = 7
BATCH = 256


def _checksum_base(src: bytes, dst: bytes, sport: int, seq: int) -> int:
    """One's-complement sum of the pseudo-header and a SYN with dport 0 and checksum 0."""
    words: tuple[int, ...] = struct.unpack(f"!{len(src) // 2}H", src) + struct.unpack(
        f"!{len(dst) // 2}H", dst
    )
    words += struct.unpack("!10H", _syn_header(sport, 0, seq, 0))
    return sum(words) + socket.IPPROTO_TCP + 20


def _syn_header(sport: int, dport: int, seq: int, csum: int) -> bytes:
    # data offset 5 words, SYN, window 1024 (nmap's), no options
    return struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, 0x02, 1024, csum, 0)


SO_ATTACH_FILTER = 26
# A connected raw socket reports ICMP errors about its destination as socket errors (once).
_ICMP_ERRNOS = frozenset(
    {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENOPROTOOPT, errno.EACCES}
)


def attach_port_filter(sock: socket.socket, sport: int, v6: bool) -> bool:
    """Let only segments to our source port through (classic BPF), so a worker reads its
    own replies and not every TCP segment the host receives. False if the kernel refused."""
    if v6:  # raw IPv6 sockets filter from the transport header
        prog = [(0x28, 0, 0, 2), (0x15, 0, 1, sport), (0x06, 0, 0, 0xFFFF), (0x06, 0, 0, 0)]
    else:  # IPv4: skip the IP header (ldxb 4*([0]&0xf)), then ldh [x+2]
        prog = [(0xB1, 0, 0, 0), (0x48, 0, 0, 2), (0x15, 0, 1, sport), (0x06, 0, 0, 0xFFFF), (0x06, 0, 0, 0)]
    insns = b"".join(struct.pack("=HBBI", *ins) for ins in prog)
    buf = ctypes.create_string_buffer(insns)
    fprog = struct.pack("=HxxxxxxQ", len(prog), ctypes.addressof(buf))
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    except OSError:  # no BPF filter: the receive loop filters in Python instead
        return False
    return True


def source_address(dst: str, family: int) -> str:
    """The address the kernel would send from to reach ``dst`` (no packet is sent)."""
    with socket.socket(family, socket.SOCK_DGRAM) as u:
        try:
            u.connect((dst, 9))
        except OSError as exc:
            # EACCES here is a broadcast address, EPERM a firewall: no privilege would help
            no_route = dict.fromkeys((errno.EACCES, errno.EPERM), SystemRefused)
            raise map_os_error(exc, f"no route to {dst}", errnos=no_route) from None
        return str(u.getsockname()[0])


def open_raw(family: int, proto: int) -> socket.socket:
    try:
        return socket.socket(family, socket.SOCK_RAW, proto)
    except PermissionError as exc:
        raise map_os_error(
            exc, "--syn needs raw sockets (root or CAP_NET_RAW)", hint="run as root, or drop --syn for a connect scan"
        ) from None


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


class SynScanner:
    """SYN-scan ``items`` (``host_index << 16 | port``) of ``addresses`` (one family)."""

    def __init__(
        self,
        addresses: Sequence[str],
        items: Sequence[int],
        profile: TimingProfile,
        *,
        on_progress: Progress | None = None,
        cancel: Cancel | None = None,
        record_rtt: bool = False,
    ) -> None:
        self.cancel = cancel
        self.record_rtt = record_rtt  # check reports each probe's round trip; scans need not
        if not addresses:
            raise ValueError("no addresses")
        self.v6 = ":" in addresses[0]
        self.family = socket.AF_INET6 if self.v6 else socket.AF_INET
        self.addresses = list(addresses)
        self.items = items
        self.profile = profile
        self.on_progress = on_progress
        self.rtt = [
            RttEstimator(profile.initial_rtt, profile.min_rtt, profile.max_rtt, profile.lan_min_rtt)
            for _ in addresses
        ]
        self.cwnd = CongestionWindow(profile.min_window, profile.max_window, float(profile.initial_window))
        self.retry = RetryPolicy(profile.max_retries)
        self.silence = SilenceTracker(len(addresses))
        self.outcome = ScanOutcome()
        self.seq = random.getrandbits(32)

    def run(self) -> ScanOutcome:
        fam = self.family
        tx = open_raw(fam, socket.IPPROTO_TCP)
        icmp = open_raw(fam, socket.IPPROTO_ICMPV6 if self.v6 else socket.IPPROTO_ICMP)
        srcs = [source_address(a, fam) for a in self.addresses]
        holder = socket.socket(fam, socket.SOCK_STREAM)
        try:
            holder.bind((srcs[0], 0))
            sport = int(holder.getsockname()[1])
            for s in (tx, icmp):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
                s.setblocking(False)
            tx.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            if self.v6:
                tx.setsockopt(socket.IPPROTO_IPV6, IPV6_CHECKSUM, 16)
            attach_port_filter(tx, sport, self.v6)
            try:
                self._loop(tx, icmp, srcs, sport)
            except KeyboardInterrupt:
                self.outcome.interrupted = True
        finally:
            holder.close()
            tx.close()
            icmp.close()
        return self.outcome

    def _loop(self, tx: socket.socket, icmp: socket.socket, srcs: list[str], sport: int) -> None:
        fam, v6 = self.family, self.v6
        items, total = self.items, len(self.items)
        results = self.outcome.results
        cwnd, retry, rtts = self.cwnd, self.retry, self.rtt
        seq = self.seq
        ack_expect = (seq + 1) & 0xFFFFFFFF
        packed = [socket.inet_pton(fam, a) for a in self.addresses]
        host_of_packed = {p: i for i, p in enumerate(packed)}
        host_of_text = {a: i for i, a in enumerate(self.addresses)}
        bases = [0] * len(packed)
        if not v6:
            bases = [
                _checksum_base(socket.inet_pton(fam, s), p, sport, seq)
                for s, p in zip(srcs, packed, strict=True)
            ]
        hdr = bytearray(_syn_header(sport, 0, seq, 0))
        pack_into = struct.pack_into
        dests = [(a, 0) for a in self.addresses]
        # One target (the usual case): connect the raw socket, so the kernel filters replies to
        # that source and send()/recv() skip parsing an address on every packet.
        single = len(self.addresses) == 1
        if single:
            tx.connect(dests[0])
        send = tx.send
        sendto = tx.sendto
        recv_plain = tx.recv_into
        recv_into = tx.recvfrom_into
        icmp_recv = icmp.recvfrom_into
        # Bookkeeping is per batch, not per probe (a tuple per SYN costs as much as the send):
        # inflight maps item -> the batch's send time (the same float object for the whole
        # batch, so a timed-out batch recognises its own probes by identity); tries holds the
        # try number of retransmitted items only; order holds the batches in send order.
        inflight: dict[int, float] = {}
        tries: dict[int, int] = {}
        order: deque[_Batch] = deque()
        silence = self.silence
        host_replies = silence.replies
        keep_rtt = self.record_rtt
        retries: deque[tuple[int, int]] = deque()  # (item, tryno)
        next_index = 0
        done = 0
        sent = 0
        mono = time.monotonic
        buf = bytearray(2048)
        ep = select.epoll()
        ep.register(tx.fileno(), select.EPOLLIN)
        ep.register(icmp.fileno(), select.EPOLLIN)
        rate_gap = 1.0 / self.profile.rate if self.profile.rate else 0.0
        next_send = 0.0
        last_progress = 0.0
        stale_errors = 0

        def answered(key: int, hi: int, verdict: Verdict, now: float) -> bool:
            nonlocal done
            sent_at = inflight.pop(key, None)
            if sent_at is None:
                return False  # a duplicate, or a late answer to a port already judged
            host_replies[hi] += 1
            tryno = tries.pop(key, 0) if tries else 0
            if tryno:
                retry.on_answer(tryno)
                cwnd.on_reply(sent_at, True, len(inflight), now)
            else:
                rtts[hi].sample(now - sent_at)
                cwnd.on_reply(sent_at, False, len(inflight), now)
            if keep_rtt:
                verdict = Verdict(verdict.state, verdict.reason, verdict.reason_from, _ms(now - sent_at))
            results[(hi, key & 0xFFFF)] = verdict
            done += 1
            return True

        try:
            while True:
                now = mono()
                room = min(cwnd.window - len(inflight), BATCH)
                if room > 0 and (retries or next_index < total):
                    if rate_gap:
                        if now < next_send:
                            room = 0
                        else:
                            room = min(room, 1 + int((now - next_send) / rate_gap))
                            next_send = max(next_send + room * rate_gap, now - 0.05)
                    group: list[int] = []
                    grp_append = group.append
                    while room > 0 and (retries or next_index < total):
                        room -= 1
                        if retries:
                            item, tryno = retries.popleft()
                            if tryno:
                                tries[item] = tryno
                        else:
                            item = items[next_index]
                            next_index += 1
                        hi, port = item >> 16, item & 0xFFFF
                        pack_into("!H", hdr, 2, port)
                        if not v6:
                            c = bases[hi] + port
                            c = (c & 0xFFFF) + (c >> 16)
                            c = (c & 0xFFFF) + (c >> 16)
                            pack_into("!H", hdr, 16, ~c & 0xFFFF)
                        try:
                            if single:
                                send(hdr)
                            else:
                                sendto(hdr, dests[hi])
                        except OSError as exc:
                            if exc.errno in (errno.ENOBUFS, errno.EAGAIN):
                                retries.appendleft((item, tries.pop(item, 0)))
                                break
                            if single and exc.errno in _ICMP_ERRNOS and stale_errors < 8:
                                # an earlier ICMP error, reported (and cleared) on this send: resend
                                stale_errors += 1
                                retries.appendleft((item, tries.pop(item, 0)))
                                room += 1
                                continue
                            stale_errors = 0
                            tries.pop(item, None)
                            # the local kernel refused (no route, our own firewall): judged at once
                            reason = Reason.NET_UNREACH if exc.errno == errno.ENETUNREACH else Reason.ERROR
                            sender = (
                                None if reason is not Reason.ERROR else errno.errorcode.get(exc.errno or 0)
                            )
                            results[(hi, port)] = Verdict(PortState.FILTERED, reason, sender)
                            done += 1
                            continue
                        stale_errors = 0
                        inflight[item] = now
                        grp_append(item)
                    if group:
                        sent += len(group)
                        order.append(_Batch(now, group, cwnd.replies, list(host_replies)))
                if len(inflight) > self.outcome.window_peak:
                    self.outcome.window_peak = len(inflight)
                if not inflight and not retries and next_index >= total:
                    again, final = silence.next_round()
                    for hi, item in final:
                        results[(hi, item & 0xFFFF)] = FILTERED_SILENT
                        done += 1
                    if not again:
                        break
                    retries.extend((item, 0) for _hi, item in again)
                    continue
                wait = 0.0
                if order:
                    head = order[0]
                    wait = max(0.0, head.sent + rtts[head.items[0] >> 16].timeout() - now)
                if len(inflight) < cwnd.window and (retries or next_index < total):
                    # more to send: now, or when the rate allows
                    wait = 0.0 if not rate_gap else max(0.0, min(wait if order else 1.0, next_send - now))
                if wait:
                    ep.poll(wait, 4)
                now = mono()
                # TCP replies
                quick = 0
                while True:
                    try:
                        if single:
                            n = recv_plain(buf)
                        else:
                            n, addr = recv_into(buf)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError as exc:
                        if exc.errno in _ICMP_ERRNOS:
                            continue  # an ICMP error reported on the connected socket: read on
                        raise
                    if v6:
                        off = 0
                        hi_opt = 0 if single else host_of_text.get(addr[0])
                    else:
                        off = (buf[0] & 15) * 4
                        hi_opt = 0 if single else host_of_packed.get(bytes(buf[12:16]))
                    if hi_opt is None or n < off + 14 or buf[off + 2] << 8 | buf[off + 3] != sport:
                        continue
                    if int.from_bytes(buf[off + 8 : off + 12], "big") != ack_expect:
                        continue
                    flags = buf[off + 13]
                    if flags & 0x04:
                        verdict = CLOSED_RESET
                    elif flags & 0x12 == 0x12:
                        verdict = OPEN
                    else:
                        continue
                    key = hi_opt << 16 | (buf[off] << 8 | buf[off + 1])
                    if tries and key in tries:
                        answered(key, hi_opt, verdict, now)
                        continue
                    sent_at = inflight.pop(key, None)
                    if sent_at is None:
                        continue  # a duplicate, or a late answer to a port already judged
                    host_replies[hi_opt] += 1
                    quick += 1  # first-try answers feed the window once per drain
                    if quick < 16 or not quick & 7:  # and only some RTTs: they are all alike
                        rtts[hi_opt].sample(now - sent_at)
                    if keep_rtt:
                        verdict = Verdict(verdict.state, verdict.reason, None, _ms(now - sent_at))
                    results[(hi_opt, key & 0xFFFF)] = verdict
                    done += 1
                if quick:
                    cwnd.on_replies(quick)
                # ICMP errors quoting one of our SYNs
                while True:
                    try:
                        n, addr = icmp_recv(buf)
                    except (BlockingIOError, InterruptedError):
                        break
                    parsed = _parse_icmp(buf, n, v6, sport)
                    if parsed is None:
                        continue
                    typ, code, dst, port = parsed
                    hi2 = host_of_packed.get(dst)
                    reason = icmp_reason(6 if v6 else 4, typ, code)
                    if hi2 is None or reason is Reason.ICMP_OTHER:
                        continue
                    answered(
                        hi2 << 16 | port,
                        hi2,
                        Verdict(PortState.FILTERED, reason, str(addr[0]).split("%")[0]),
                        now,
                    )
                # timeouts, a batch at a time
                while order:
                    head = order[0]
                    if now < head.sent + rtts[head.items[0] >> 16].timeout():
                        break
                    order.popleft()
                    t_sent = head.sent
                    for item in head.items:
                        if inflight.get(item) is not t_sent:
                            continue  # answered, or sent again in a later batch
                        del inflight[item]
                        hi = item >> 16
                        tryno = tries.pop(item, 0)
                        cwnd.on_timeout(t_sent, head.replies, len(inflight), now)
                        silence.on_timeout(hi, item, head.host_replies[hi])
                        if retry.should_retry(tryno):
                            retries.append((item, tryno + 1))
                        elif silence.conclude(hi, item):
                            results[(hi, item & 0xFFFF)] = FILTERED_SILENT
                            done += 1
                if self.cancel is not None and self.cancel.is_set():
                    self.outcome.interrupted = True
                    break
                if self.on_progress is not None and now - last_progress > 0.1:
                    last_progress = now
                    # suspects' tries are spent (see scanner.py): count them
                    self.on_progress(min(total, done + len(self.silence.suspects)), total)
        finally:
            self.outcome.probes_sent = sent
            ep.close()
            if self.on_progress is not None:
                self.on_progress(done, total)


@dataclass(slots=True)
class _Batch:
    """SYNs sent together: one send time, and the reply counters when they left."""

    sent: float
    items: list[int]
    replies: int
    host_replies: list[int]


def _parse_icmp(buf: bytearray, n: int, v6: bool, sport: int) -> tuple[int, int, bytes, int] | None:
    """(type, code, probed address, probed port) of an ICMP error quoting our SYN, or None."""
    if v6:
        # raw ICMPv6 sockets deliver the ICMPv6 message: 8-byte header, then the quoted IPv6 packet
        if n < 8 + 40 + 4 or buf[0] not in (1, 4) or buf[8 + 6] != socket.IPPROTO_TCP:
            return None
        dst = bytes(buf[8 + 24 : 8 + 40])
        tcp = 48
        typ, code = buf[0], buf[1]
    else:
        ihl = (buf[0] & 15) * 4
        if n < ihl + 8 + 20 + 4 or buf[ihl] != 3:
            return None
        q = ihl + 8
        if buf[q + 9] != socket.IPPROTO_TCP:
            return None
        dst = bytes(buf[q + 16 : q + 20])
        tcp = q + (buf[q] & 15) * 4
        typ, code = buf[ihl], buf[ihl + 1]
        if n < tcp + 4:
            return None
    if buf[tcp] << 8 | buf[tcp + 1] != sport:
        return None
    return typ, code, dst, buf[tcp + 2] << 8 | buf[tcp + 3]


def syn_scan(
    addresses: Sequence[str],
    ports: Sequence[int],
    profile: TimingProfile,
    *,
    processes: int = 1,
    on_progress: Progress | None = None,
    randomize: bool = True,
    cancel: Cancel | None = None,
) -> ScanOutcome:
    """SYN-scan; IPv4 and IPv6 addresses are scanned one family after the other.

    With ``processes`` > 1 each forked worker sends from its own source port and reads
    only its own replies (a BPF filter on its raw socket).
    """
    out = ScanOutcome()
    groups = [[i for i, a in enumerate(addresses) if (":" in a) == v6] for v6 in (False, True)]
    done_before = 0
    total = len(addresses) * len(ports)
    for idx in groups:
        if not idx or out.interrupted:
            continue
        sub = [addresses[i] for i in idx]
        items = work_items(len(sub), ports, randomize=randomize)
        n = max(1, min(processes, len(items) // 2048 or 1))
        share = dataclasses.replace(profile, rate=profile.rate / n) if profile.rate else profile
        base = done_before

        def progress(done: int, _total: int, base: int = base) -> None:
            if on_progress is not None:
                on_progress(base + done, total)

        def worker(
            part: Sequence[int], prog: Progress | None, sub: list[str] = sub, share: TimingProfile = share
        ) -> ScanOutcome:
            return SynScanner(sub, part, share, on_progress=prog, cancel=cancel).run()

        res = run_split(worker, items, n, progress)
        for (hi, port), v in res.results.items():
            out.results[(idx[hi], port)] = v
        out.interrupted = res.interrupted
        out.probes_sent += res.probes_sent
        out.window_peak = max(out.window_peak, res.window_peak)
        done_before += len(sub) * len(ports)
    return out
