"""What every scanner driver shares: probe bookkeeping, ICMP error-queue reading, results,
and splitting a scan over forked worker processes.

Python spends about as much time per probe as the kernel does, so on a multi-core machine
:func:`run_split` gives part of the work list to a forked worker; the worker sends its
verdicts back through a pipe (pickled tuples; shared Verdict objects are rebuilt once).
"""

from __future__ import annotations

import _socket
import errno
import os
import pickle
import random
import resource
import signal
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from portkit.engine.timing import CongestionWindow, TimingProfile
from portkit.model.probe import PortState, Reason, Verdict
from portkit.parse.sockerr import icmp_reason, parse_sock_extended_err, state_for

IP_RECVERR = 11
IPV6_RECVERR = 25
FD_MARGIN = 64  # files kept free for the rest of the process (pipes, the epoll fd, output)

Progress = Callable[[int, int], None]


OPEN_SYNACK = Verdict(PortState.OPEN, Reason.SYN_ACK)
CLOSED_REFUSED = Verdict(PortState.CLOSED, Reason.CONN_REFUSED)
FILTERED_SILENT = Verdict(PortState.FILTERED, Reason.NO_RESPONSE)

# Errors without an ICMP message on the queue: what the local kernel concluded.
_ERRNO_REASON = {
    errno.ECONNREFUSED: (PortState.CLOSED, Reason.CONN_REFUSED),
    errno.ENETUNREACH: (PortState.FILTERED, Reason.NET_UNREACH),
    errno.EHOSTUNREACH: (PortState.FILTERED, Reason.HOST_UNREACH),
    errno.ENOPROTOOPT: (PortState.FILTERED, Reason.PROTO_UNREACH),
    errno.ETIMEDOUT: (PortState.FILTERED, Reason.NO_RESPONSE),
    errno.EACCES: (PortState.FILTERED, Reason.ADMIN_PROHIBITED),  # our own OUTPUT firewall
    errno.EPERM: (PortState.FILTERED, Reason.ADMIN_PROHIBITED),
}


def sockaddr(address: str, port: int) -> tuple[str, int] | tuple[str, int, int, int]:
    """The connect() address of ``address`` (``fe80::1%eth0`` carries its scope id).

    Python's connect() ignores a zone written in the string of a 2-tuple and the kernel
    then refuses a link-local destination with EINVAL: the scope id must be in a 4-tuple.
    """
    if "%" not in address:
        return (address, port)
    bare, _, zone = address.partition("%")
    return (bare, port, 0, int(zone) if zone.isdigit() else socket.if_nametoindex(zone))


def raise_nofile_limit() -> int:
    """Raise the soft open-files limit to the hard limit; return the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):  # not allowed to raise it: scan within the soft limit
            pass
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def window_limit(profile_max: int, open_files: int, processes: int = 1) -> int:
    """The largest window that keeps every process below its open-files limit."""
    del processes  # each forked process has its own descriptor table and limit
    return max(1, min(profile_max, open_files - FD_MARGIN))


def fd_window(profile: TimingProfile) -> tuple[int, CongestionWindow]:
    """The window limit and congestion window of a scanner that holds one socket per probe
    in flight: both kept below this process's open-files limit (raised first)."""
    limit = window_limit(profile.max_window, raise_nofile_limit())
    return limit, CongestionWindow(min(profile.min_window, limit), limit, float(min(profile.initial_window, limit)))


def verdict_from_error(sock: _socket.socket, err: int, rtt_ms: float | None, proto: str = "tcp") -> Verdict:
    """Judge a failed probe: the ICMP on the error queue if any, else the errno."""
    icmp = read_icmp(sock)
    if icmp is not None:
        return icmp_verdict(icmp, proto, rtt_ms)
    if err == errno.ECONNREFUSED and rtt_ms is None:
        return CLOSED_REFUSED
    state, reason = _ERRNO_REASON.get(err, (PortState.FILTERED, Reason.ERROR))
    return Verdict(
        state, reason, None if reason is not Reason.ERROR else errno.errorcode.get(err, str(err)), rtt_ms
    )


IcmpInfo = tuple[int, int, int, str | None]  # (family 4|6, type, code, sender)


def icmp_verdict(icmp: IcmpInfo, proto: str, rtt_ms: float | None) -> Verdict:
    family, typ, code, sender = icmp
    reason = icmp_reason(family, typ, code)
    return Verdict(state_for(proto, reason), reason, sender, rtt_ms)


def icmp_from_ancillary(anc: list[tuple[int, int, bytes]]) -> IcmpInfo | None:
    """The ICMP error in the control messages of an MSG_ERRQUEUE read, if any."""
    for level, ctype, cdata in anc:
        if (level, ctype) in ((socket.IPPROTO_IP, IP_RECVERR), (socket.IPPROTO_IPV6, IPV6_RECVERR)):
            ee = parse_sock_extended_err(cdata)
            if ee.is_icmp:
                return ee.family, ee.type, ee.code, ee.offender
    return None


def read_icmp(sock: _socket.socket) -> IcmpInfo | None:
    """The first ICMP error queued on ``sock`` (non-ICMP entries are skipped), or None."""
    for _ in range(8):
        try:
            anc = sock.recvmsg(64, 512, socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT)[1]
        except OSError:  # EAGAIN: the queue is empty
            return None
        icmp = icmp_from_ancillary(anc)
        if icmp is not None:
            return icmp
    return None


@dataclass(slots=True)
class ScanOutcome:
    """Verdicts keyed by (host index, port); ports never probed (interrupt) are absent."""

    results: dict[tuple[int, int], Verdict] = field(default_factory=dict)
    interrupted: bool = False
    probes_sent: int = 0
    window_peak: int = 0
    # UDP: per host index, ports found closed only by a retransmission - the signature of a
    # host that rate-limits its ICMP errors (Linux: 1/s), whose silent ports may be closed
    late_closed: dict[int, int] = field(default_factory=dict)


class Probe:
    """One outstanding connect (slotted: attribute access is as fast as list indexing)."""

    __slots__ = ("done", "hi", "hsnap", "port", "replies", "sent", "sock", "tryno")

    def __init__(
        self, sock: _socket.socket, hi: int, port: int, tryno: int, sent: float, replies: int, hsnap: int
    ) -> None:
        self.hsnap = hsnap
        self.sock = sock
        self.hi = hi
        self.port = port
        self.tryno = tryno
        self.sent = sent
        self.replies = replies
        self.done = False


def _encode(outcome: ScanOutcome) -> bytes:
    rows = [
        (hi, port, v.state.value, v.reason.value, v.reason_from, v.rtt_ms)
        for (hi, port), v in outcome.results.items()
    ]
    return pickle.dumps((rows, outcome.interrupted, outcome.probes_sent, outcome.window_peak), protocol=5)


def _decode(blob: bytes, into: ScanOutcome) -> None:
    rows, interrupted, sent, peak = pickle.loads(blob)
    cache: dict[tuple[str, str], Verdict] = {}
    for hi, port, state, reason, sender, rtt in rows:
        if sender is None and rtt is None:
            v = cache.get((state, reason))
            if v is None:
                v = cache[(state, reason)] = Verdict(PortState(state), Reason(reason))
        else:
            v = Verdict(PortState(state), Reason(reason), sender, rtt)
        into.results[(hi, port)] = v
    into.interrupted = into.interrupted or interrupted
    into.probes_sent += sent
    into.window_peak = max(into.window_peak, peak)


def work_items(
    nhosts: int, ports: Sequence[int], *, randomize: bool = True, seed: int | None = None
) -> list[int]:
    """Every (host, port) pair as ``host << 16 | port``; shuffled like nmap's port order, so a
    block of dropped ports is spread over the scan instead of stalling the window."""
    items = [(hi << 16) | p for p in ports for hi in range(nhosts)]
    if randomize:
        random.Random(seed).shuffle(items)
    return items


Worker = Callable[[Sequence[int], "Progress | None"], ScanOutcome]


def run_split(
    worker: Worker, items: Sequence[int], processes: int, on_progress: Progress | None
) -> ScanOutcome:
    """Run ``worker`` over ``items`` in ``processes`` forked processes (this one included).

    Python spends more time per probe than the kernel does, so on a multi-core machine a
    second process nearly doubles the probe rate. Workers send their verdicts back through
    a pipe; a worker that dies leaves its ports out and marks the scan interrupted.
    """
    processes = max(1, min(processes, len(items) // 2048 or 1))
    if processes == 1:
        return worker(items, on_progress)
    children: list[tuple[int, int]] = []
    for k in range(1, processes):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: scan its share, send the verdicts, leave without cleanup
            code = 0
            try:
                os.close(r)
                part = worker(items[k::processes], None)
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not lose the results
                blob = _encode(part)
                with os.fdopen(w, "wb") as f:
                    f.write(blob)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(w)
        children.append((pid, r))
    total = len(items)

    def progress(done: int, _total: int) -> None:
        if on_progress is not None:
            on_progress(min(done * processes, total), total)

    try:
        outcome = worker(items[0::processes], progress)
    except BaseException:
        _stop_children(children)
        raise
    if outcome.interrupted:
        _stop_children(children)  # a Ctrl-C reached us (or the scan was cancelled): stop them too
    for pid, r in children:
        chunks: list[bytes] = []
        while True:
            try:
                chunk = os.read(r, 1 << 20)
            except InterruptedError:
                continue
            except KeyboardInterrupt:
                outcome.interrupted = True
                _stop_children(children)
                continue
            if not chunk:
                break
            chunks.append(chunk)
        os.close(r)
        os.waitpid(pid, 0)
        if chunks:
            _decode(b"".join(chunks), outcome)
        else:
            outcome.interrupted = True
    if on_progress is not None:
        on_progress(len(outcome.results), total)
    return outcome


def _stop_children(children: list[tuple[int, int]]) -> None:
    for pid, _r in children:
        try:
            os.kill(pid, signal.SIGINT)
        except ProcessLookupError:
            pass
