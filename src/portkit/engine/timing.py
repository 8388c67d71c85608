"""Scan timing: nmap's round-trip-time estimator and a congestion window. Pure, time passed in.

Theory of operation
-------------------
**Timeouts** follow nmap's ``timing.cc`` (itself RFC 6298): the first sample ``d`` sets
``srtt = d`` and ``rttvar = clamp(d, 5 ms, 2 s)``; later samples update
``srtt += (d - srtt)/8`` and ``rttvar += (|d - srtt| - rttvar)/4`` (both with the *old*
srtt, as nmap does). A probe's timeout is ``srtt + 4*rttvar`` clamped to
``[min_rtt, max_rtt]``; before any sample it is ``initial_rtt``. Samples above 8 s are
ignored (a late reply to a retransmitted probe says nothing about the path).

nmap's floor of 100 ms is made for the Internet. On a LAN (a namespace, a switch) round
trips are tens of microseconds, and waiting 100 ms per silently dropped port dominates a
scan. With ``lan_min_rtt`` set, the floor drops to it (25 ms by default) once 32 samples
show srtt + 4*rttvar under a quarter of it - still over 100x the measured round trip.

**Parallelism** is a congestion window (TCP-like, as nmap's ``ultra_timing_vals``): slow
start (+1 per answered probe, doubling per round trip) up to ``ssthresh``, then +1/cwnd
per answer. It backs off - halves, and ssthresh drops to half of what was in flight - on
evidence that probes are being lost rather than filtered:

* an answer to a *retransmitted* probe (the first copy was lost: that is congestion), or
* a probe that timed out while the host answered *nothing* since it was sent (the
  path or the host went quiet) - once: while the silence lasts (no answer since that
  back-off) further timeouts are a filtered stretch, not more loss, and the window grows
  back slowly (+1 per timeout, up to ``blind_window``). A target that has never
  answered anything is not backed off from at all (silence from the start is a firewall or
  an empty address, not congestion); its window grows slowly, to ``blind_window``.

A probe that times out while its neighbours, sent at the same time, were answered is the
signature of a firewall silently dropping that port: it costs its timeout and its
retransmissions but does not shrink the window. That is what keeps a scan fast when
thousands of ports are dropped (nmap treats each such timeout as a drop and crawls).
Like nmap, at most one back-off happens per round trip: only probes sent after the last
back-off count.

**Retransmissions** follow nmap's ``max_successful_tryno`` idea: a port is re-probed up
to ``min(max_retries, highest try that ever got an answer + 1)`` times, so a clean LAN
retransmits dropped ports once, a lossy path up to ``max_retries`` times.

**Silence is not filtering.** "filtered / no-response" is concluded only for a port whose
probes went unanswered while the same host answered *other* probes: the host was alive and
chose not to answer that port. A port whose every try timed out while the host answered
nothing at all (a host still bringing its address up, a link flapping, a brief outage) is a
suspect: :class:`SilenceTracker` hands it back for another round once the scan queue is
drained, if the host answered anything *after* that port went quiet (at most ``max_rounds``
rounds). A host that answers nothing more (firewalled, or down) costs no extra round.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["CongestionWindow", "RetryPolicy", "RttEstimator", "SilenceTracker", "TimingProfile"]

MAX_SAMPLE_S = 8.0
MIN_RTTVAR_S = 0.005
MAX_FIRST_RTTVAR_S = 2.0
LAN_SAMPLES = 32


@dataclass(frozen=True, slots=True)
class TimingProfile:
    """The knobs, nmap -T4 by default (initial 500 ms, max 1250 ms, 6 retries), min 100 ms."""

    initial_rtt: float = 0.5
    min_rtt: float = 0.1
    max_rtt: float = 1.25
    max_retries: int = 6
    lan_min_rtt: float | None = 0.025  # floor once measured RTTs show a LAN (see RttEstimator)
    initial_window: int = 64
    min_window: int = 16
    max_window: int = 4096
    rate: float | None = None  # probes per second; None = as fast as the window allows

    def __post_init__(self) -> None:
        if not 0 < self.min_rtt <= self.max_rtt:
            raise ValueError("timing: need 0 < min_rtt <= max_rtt")
        if not 1 <= self.min_window <= self.max_window:
            raise ValueError("timing: need 1 <= min_window <= max_window")
        if self.max_retries < 0:
            raise ValueError("timing: max_retries must be >= 0")


@dataclass(slots=True)
class RttEstimator:
    """Smoothed RTT and its variance; :meth:`timeout` is what a probe waits."""

    initial_rtt: float = 0.5
    min_rtt: float = 0.1
    max_rtt: float = 1.25
    lan_min_rtt: float | None = None
    srtt: float | None = None
    rttvar: float = 0.0
    samples: int = 0

    def sample(self, delta: float) -> bool:
        """Feed one measured round trip (seconds). Returns False when it was ignored."""
        if delta < 0 or delta > MAX_SAMPLE_S:
            return False
        if self.srtt is None:
            self.srtt = delta
            self.rttvar = min(max(delta, MIN_RTTVAR_S), MAX_FIRST_RTTVAR_S)
        else:
            diff = delta - self.srtt
            # nmap's sanity check: a sample far beyond anything seen is an outlier.
            if diff > 1.5 and diff > 3 * self.srtt + 2 * self.rttvar:
                return False
            self.srtt += diff / 8
            self.rttvar += (abs(diff) - self.rttvar) / 4
        self.samples += 1
        return True

    def floor(self) -> float:
        """``min_rtt``, or the lower ``lan_min_rtt`` once enough samples show a path whose
        srtt + 4*rttvar is below a quarter of that: a reply later than 4x the worst recent
        round trip is then vanishingly unlikely, and retransmission covers the rest."""
        if (
            self.lan_min_rtt is not None
            and self.srtt is not None
            and self.samples >= LAN_SAMPLES
            and self.srtt + 4 * self.rttvar < self.lan_min_rtt / 4
        ):
            return min(self.min_rtt, self.lan_min_rtt)
        return self.min_rtt

    def timeout(self) -> float:
        if self.srtt is None:
            return min(max(self.initial_rtt, self.min_rtt), self.max_rtt)
        return min(max(self.srtt + 4 * self.rttvar, self.floor()), self.max_rtt)


@dataclass(slots=True)
class CongestionWindow:
    """How many probes may be outstanding. Times are seconds on any monotonic clock."""

    min_window: int = 16
    max_window: int = 4096
    cwnd: float = 64.0
    ssthresh: float = 1e9
    replies: int = 0  # answered probes so far; probes remember it when sent
    last_backoff: float = float("-inf")
    backoffs: int = 0
    blind_window: int = 1024  # how far the window may grow while nothing ever answered
    silent_backoff_at: int = -1  # replies seen at the last back-off for silence

    def __post_init__(self) -> None:
        self.cwnd = float(min(max(self.cwnd, self.min_window), self.max_window))

    @property
    def window(self) -> int:
        return int(self.cwnd)

    def on_reply(self, sent_at: float, retransmitted: bool, in_flight: int, now: float) -> None:
        """A probe was answered (open, closed or an ICMP error: any sign of life)."""
        self.replies += 1
        if retransmitted:
            self._backoff(sent_at, in_flight, now)
            return
        if self.cwnd < self.ssthresh:
            self.cwnd += 1.0
        else:
            self.cwnd += 1.0 / self.cwnd
        if self.cwnd > self.max_window:
            self.cwnd = float(self.max_window)

    def on_replies(self, count: int) -> None:
        """``count`` first-try answers at once (a batch answered within connect())."""
        self.replies += count
        while count > 0 and self.cwnd < self.ssthresh:
            self.cwnd += 1.0
            count -= 1
        if count > 0:  # n steps of +1/w grow w to about sqrt(w^2 + 2n)
            self.cwnd = math.sqrt(self.cwnd * self.cwnd + 2 * count)
        if self.cwnd > self.max_window:
            self.cwnd = float(self.max_window)

    def on_timeout(self, sent_at: float, replies_at_send: int, in_flight: int, now: float) -> None:
        """A probe got no answer in time; back off only if the host was silent meanwhile."""
        if self.replies != replies_at_send:
            return  # others were answered while this one was not: a filtered port
        if self.replies == 0:
            # Nothing has ever answered: a firewall dropping everything (or no host there).
            # Silence from the start says nothing about congestion, and a small window would
            # make such a scan crawl (nmap: 212 s for 2,100 dropped ports); probe it a little
            # faster, as slow start would, up to blind_window.
            if self.cwnd < min(self.blind_window, self.max_window):
                self.cwnd += 1.0
            return
        if self.replies == self.silent_backoff_at:
            # still silent since the last back-off: a filtered stretch, not more loss; grow
            # back slowly (answers to retransmissions would reveal real loss)
            if self.cwnd < min(self.blind_window, self.max_window):
                self.cwnd += 1.0
            return
        if sent_at > self.last_backoff:
            self.silent_backoff_at = self.replies
        self._backoff(sent_at, in_flight, now)

    def _backoff(self, sent_at: float, in_flight: int, now: float) -> None:
        if sent_at <= self.last_backoff:
            return  # already reacted to losses from this round trip
        self.ssthresh = max(in_flight / 2, float(self.min_window))
        self.cwnd = max(self.cwnd / 2, float(self.min_window))
        self.last_backoff = now
        self.backoffs += 1


@dataclass(slots=True)
class RetryPolicy:
    """How many times an unanswered port is probed again (nmap's max_successful_tryno)."""

    max_retries: int = 6
    max_successful_try: int = 0

    def on_answer(self, tryno: int) -> None:
        if tryno > self.max_successful_try:
            self.max_successful_try = tryno

    def allowed_retries(self) -> int:
        return min(self.max_retries, self.max_successful_try + 1)

    def should_retry(self, tryno: int) -> bool:
        """``tryno`` is 0 for the first probe of a port."""
        return tryno < self.allowed_retries()


@dataclass(slots=True)
class SilenceTracker:
    """Which unanswered ports may be called filtered, and which deserve another round.

    Hosts are indexes; an item is any int naming a (host, port) probe.
    """

    hosts: int
    max_rounds: int = 2
    replies: list[int] = field(default_factory=list)
    heard: set[int] = field(default_factory=set)
    suspects: list[tuple[int, int, int]] = field(default_factory=list)  # (host, item, replies then)
    rounds: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.replies:
            self.replies = [0] * self.hosts

    def on_reply(self, host: int) -> None:
        self.replies[host] += 1

    def snapshot(self, host: int) -> int:
        """Taken when a probe is sent; compared when it times out."""
        return self.replies[host]

    def on_timeout(self, host: int, item: int, snapshot: int) -> None:
        if self.replies[host] > snapshot:
            self.heard.add(item)  # the host answered others while this port stayed silent

    def conclude(self, host: int, item: int) -> bool:
        """The last allowed try timed out: True = filtered now, False = suspect for later."""
        if item in self.heard or self.rounds.get(item, 0) >= self.max_rounds:
            return True
        self.suspects.append((host, item, self.replies[host]))
        return False

    def next_round(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """(items to probe again, items to conclude filtered) once the queue is drained."""
        again: list[tuple[int, int]] = []
        final: list[tuple[int, int]] = []
        for host, item, then in self.suspects:
            if self.replies[host] > then:
                # the host answered others after this port went quiet: it was away, not filtering
                self.rounds[item] = self.rounds.get(item, 0) + 1
                again.append((host, item))
            else:
                final.append((host, item))  # silent ever since: the host filters (or is gone)
        self.suspects = []
        return again, final
